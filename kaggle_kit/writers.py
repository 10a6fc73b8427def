"""Submission rows for `stream_predict`'s CsvSink, as the seed competitions want them; every item exactly once.

    sink = kk.CsvSink("submission.csv", tags_rows(vocab, thresholds), ["image_name", "tags"])
    sink = kk.CsvSink("submission.csv", top_k_rows(vocab, k=3), ["id", "predicted"])

Items are file paths (their stem is the id unless `item_id` says otherwise); unreadable items (placeholder
predictions) still get a row with an empty answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["tags_rows", "top_k_rows", "file_stem"]


def file_stem(item: Any) -> str:
    """The default item id: a path's file name without its extension."""
    return Path(str(item)).stem


def tags_rows(
    vocab: Sequence[str], thresholds: float | Sequence[float] = 0.2, item_id: Callable[[Any], str] = file_stem
) -> Callable:
    """Multi-label rows: (id, space-separated tags whose probability reaches its class threshold)."""
    limits = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(vocab),))

    def to_rows(items, probs: np.ndarray) -> list[tuple[str, str]]:
        rows = []
        for item, p in zip(items, probs, strict=True):
            tags = [] if np.isnan(p).all() else [vocab[c] for c in np.flatnonzero(p >= limits)]
            rows.append((item_id(item), " ".join(tags)))
        return rows

    return to_rows


def top_k_rows(vocab: Sequence[str], k: int = 3, item_id: Callable[[Any], str] = file_stem) -> Callable:
    """Single-label rows: (id, the `k` most likely classes, most confident first, space-separated)."""

    def to_rows(items, probs: np.ndarray) -> list[tuple[str, str]]:
        rows = []
        for item, p in zip(items, probs, strict=True):
            best = [] if np.isnan(p).all() else np.argsort(-p, kind="stable")[:k]
            rows.append((item_id(item), " ".join(str(vocab[c]) for c in best)))
        return rows

    return to_rows
