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

from kaggle_kit.predict.identity import callable_identity

__all__ = ["tags_rows", "top_k_rows", "TagsRows", "TopKRows", "file_stem"]


def file_stem(item: Any) -> str:
    """The default item id: a path's file name without its extension."""
    return Path(str(item)).stem


class TagsRows:
    """Multi-label rows: (id, space-separated tags whose probability reaches its class threshold).

    Identified across processes by its settings (``signature()``): a resume with other thresholds is refused.
    """

    def __init__(self, vocab: Sequence[str], thresholds: float | Sequence[float] = 0.2,
                 item_id: Callable[[Any], str] = file_stem):  # fmt: skip
        self.vocab = [str(v) for v in vocab]
        self.limits = np.broadcast_to(np.asarray(thresholds, dtype=float), (len(self.vocab),)).copy()
        self.item_id = item_id

    def signature(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "thresholds": [float(t) for t in self.limits],
                "item_id": callable_identity(self.item_id, "item_id")}  # fmt: skip

    def __call__(self, items, probs: np.ndarray) -> list[tuple[str, str]]:
        rows = []
        for item, p in zip(items, probs, strict=True):
            tags = [] if np.isnan(p).all() else [self.vocab[c] for c in np.flatnonzero(p >= self.limits)]
            rows.append((self.item_id(item), " ".join(tags)))
        return rows


class TopKRows:
    """Single-label rows: (id, the `k` most likely classes, most confident first, space-separated).

    Identified across processes by its settings (``signature()``): a resume with another `k` is refused.
    """

    def __init__(self, vocab: Sequence[str], k: int = 3, item_id: Callable[[Any], str] = file_stem):
        self.vocab = [str(v) for v in vocab]
        self.k = int(k)
        self.item_id = item_id

    def signature(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "k": self.k, "item_id": callable_identity(self.item_id, "item_id")}

    def __call__(self, items, probs: np.ndarray) -> list[tuple[str, str]]:
        rows = []
        for item, p in zip(items, probs, strict=True):
            best = [] if np.isnan(p).all() else np.argsort(-p, kind="stable")[: self.k]
            rows.append((self.item_id(item), " ".join(self.vocab[c] for c in best)))
        return rows


def tags_rows(
    vocab: Sequence[str], thresholds: float | Sequence[float] = 0.2, item_id: Callable[[Any], str] = file_stem
) -> TagsRows:
    """Multi-label rows for a CsvSink: see `TagsRows`."""
    return TagsRows(vocab, thresholds, item_id)


def top_k_rows(vocab: Sequence[str], k: int = 3, item_id: Callable[[Any], str] = file_stem) -> TopKRows:
    """Single-label rows for a CsvSink: see `TopKRows`."""
    return TopKRows(vocab, k, item_id)
