"""Pictures of a classifier's validation, drawn from the predictions the submission uses (TTA included), as the
seeds read them: per-tag precision and recall with each tag's support and threshold (multi-label), the confusion
matrix in counts and in shares of each true class (single-label), and a batch of training images as the model sees
them. Every picture is a PNG written atomically; nothing here trains or predicts.
"""

from __future__ import annotations

import io
import logging
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kaggle_kit.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = [
    "top_losses_picture",
    "fit_titles",
    "tag_chart",
    "tag_table",
    "confusion_chart",
    "batch_picture",
    "save_figure",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 90) -> Path:
    """Write a matplotlib figure as PNG atomically, cropped to what is drawn (no label cut off), and close it."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def tag_chart(
    probs: np.ndarray,
    targets: np.ndarray,
    thresholds: np.ndarray | float,
    vocab: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """Per-tag precision and recall of `probs` >= `thresholds` against 0/1 `targets` ((items, tags) arrays), one row
    per tag labelled with its support (validation items that have it) and its threshold. A tag without bars says
    why (no validation item has it, or it was never predicted)."""
    plt = _pyplot()
    rows_data = tag_table(probs, targets, thresholds)
    rows = np.arange(len(vocab))[::-1]  # first tag on top
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(vocab)))
    ax.barh(rows + 0.2, [r["precision"] for r in rows_data], height=0.4, color="tab:blue", label="precision")
    ax.barh(rows - 0.2, [r["recall"] for r in rows_data], height=0.4, color="tab:orange", label="recall")
    for row, r in zip(rows, rows_data, strict=True):
        if r["why_no_bars"]:
            ax.text(0.01, row, r["why_no_bars"], va="center", fontsize=7, color="dimgray")
    support, thresholds = [r["support"] for r in rows_data], [r["threshold"] for r in rows_data]
    labels = [f"{tag}  (n={s}, t={t:.2f})" for tag, s, t in zip(vocab, support, thresholds, strict=True)]
    ax.set(yticks=rows, yticklabels=labels, xlim=(0, 1), xlabel="share")
    ax.set_title(title or f"per tag on {len(probs)} validation items", fontsize=9, pad=20)  # the legend sits under it
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize=8, frameon=False)  # above: over no bar
    return save_figure(fig, path)


def tag_table(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | float) -> list[dict]:
    """Per tag: `support` (items that have it), `predicted` (items given it), `precision`, `recall`, `threshold`, and
    `why_no_bars` when both are 0 ("no validation item has it", "never predicted", "no true tag found"; else "")."""
    probs, truth = np.asarray(probs), np.asarray(targets) > 0.5
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (probs.shape[1],))
    predicted = probs >= thresholds
    tp = (predicted & truth).sum(axis=0)
    support, n_predicted = truth.sum(axis=0), predicted.sum(axis=0)
    out = []
    for c in range(probs.shape[1]):
        precision, recall = tp[c] / max(n_predicted[c], 1), tp[c] / max(support[c], 1)
        why = ("no validation item has it" if support[c] == 0 and n_predicted[c] == 0 else "never predicted"
               if n_predicted[c] == 0 else "no true tag found" if tp[c] == 0 else "")  # fmt: skip
        out.append({"support": int(support[c]), "predicted": int(n_predicted[c]), "precision": float(precision),
                    "recall": float(recall), "threshold": float(thresholds[c]), "why_no_bars": why})  # fmt: skip
    return out


def confusion_chart(predicted: np.ndarray, labels: np.ndarray, vocab: Sequence[str], path: str | os.PathLike) -> Path:
    """The confusion matrix of class ids `predicted` against true `labels`, side by side in counts and in shares of
    each true class (rows sum to 1), each cell written in."""
    plt = _pyplot()
    n = len(vocab)
    counts = np.zeros((n, n), dtype=int)
    np.add.at(counts, (np.asarray(labels, dtype=int), np.asarray(predicted, dtype=int)), 1)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = 2.2 + 0.45 * n
    fig, axes = plt.subplots(1, 2, figsize=(2 * side, side))
    for ax, values, title, fmt in ((axes[0], counts, "counts", "{:d}"), (axes[1], shares, "share of each actual class",
                                                                         "{:.2f}")):  # fmt: skip
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.6 else "black")  # fmt: skip
        ax.set_xticks(range(n), vocab, rotation=90, fontsize=7)
        ax.set_yticks(range(n), vocab, fontsize=7)
        ax.set(xlabel="predicted", ylabel="actual")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"confusion matrix on {int(counts.sum())} validation items", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def batch_picture(dls, path: str | os.PathLike, max_n: int = 9) -> Path | None:
    """One batch of training images with their labels, as fastai's ``show_batch`` draws them (augmentations
    included): the first thing the seeds look at. A picture must never cost a run: if fastai cannot draw this kind
    of batch, a warning says so and None is returned."""
    plt = _pyplot()
    try:
        dls.show_batch(max_n=max_n, figsize=(7, 7))
    except Exception as exc:  # noqa: BLE001 - any drawing failure is the picture's, not the kernel's
        plt.close("all")
        log.warning("could not draw %s: %s: %s", path, type(exc).__name__, exc)
        return None
    return save_figure(fit_titles(plt.gcf()), path)


def top_losses_picture(interp, path: str | os.PathLike, k: int = 9) -> Path:
    """fastai's ``plot_top_losses`` (the `k` validation images with the highest loss, titled prediction / actual /
    loss / probability) written to `path`, its titles wrapped so long labels (a multi-label row's tags) never
    overlap the next image."""
    plt = _pyplot()
    interp.plot_top_losses(k, figsize=(9, 9.5))
    return save_figure(fit_titles(plt.gcf()), path, dpi=80)


def fit_titles(fig, width: int = 28, fontsize: int = 8):
    """Wrap every axes title of `fig` at `width` characters and lay the figure out again, so titles neither overlap
    their neighbours nor leave a blank band between rows of images; returns `fig`."""
    for ax in fig.axes:
        title = ax.get_title()
        if title:
            ax.set_title("\n".join(textwrap.wrap(title, width, break_on_hyphens=False)), fontsize=fontsize)
    fig.tight_layout()
    return fig
