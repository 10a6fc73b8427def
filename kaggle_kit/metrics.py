"""Competition metrics on arrays, and as fastai metrics: F-beta at a threshold (Planet: F2 at 0.2), per-class
threshold search, top-k error (Zalo landmarks: top-3), mean F1 (iMaterialist 2018), accuracy at a threshold.

Arrays are (items, classes) probabilities and 0/1 targets (multi-label), or (items, classes) scores and integer
class ids (top-k). F-beta and mean F1 average over samples, as those competitions did.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "fbeta_score",
    "search_thresholds",
    "top_k_error",
    "mean_f1",
    "accuracy_thresh",
    "fbeta_metric",
    "top_k_error_metric",
]


def fbeta_score(
    probs: np.ndarray, targets: np.ndarray, beta: float = 2.0, threshold: float | np.ndarray = 0.2
) -> float:
    """Sample-averaged F-beta of multi-label predictions `probs` >= `threshold` (a number or one per class)."""
    pred = np.asarray(probs) >= np.asarray(threshold)
    truth = np.asarray(targets) > 0.5
    tp = (pred & truth).sum(axis=1)
    precision_den, recall_den = pred.sum(axis=1), truth.sum(axis=1)
    b2 = beta * beta
    den = b2 * recall_den + precision_den
    score = np.where(den > 0, (1 + b2) * tp / np.maximum(den, 1), 0.0)
    return float(score.mean())


def mean_f1(probs: np.ndarray, targets: np.ndarray, threshold: float | np.ndarray = 0.5) -> float:
    """Sample-averaged F1 (iMaterialist-fashion 2018's metric)."""
    return fbeta_score(probs, targets, beta=1.0, threshold=threshold)


def search_thresholds(
    probs: np.ndarray,
    targets: np.ndarray,
    beta: float = 2.0,
    grid: Sequence[float] | None = None,
    start: float = 0.2,
    rounds: int = 2,
) -> np.ndarray:
    """One threshold per class maximising sample-averaged F-beta on validation predictions.

    Coordinate ascent: starting from `start` everywhere, each class's threshold in turn takes the grid value that
    maximises the overall score, for `rounds` passes.
    """
    grid = np.arange(0.02, 0.99, 0.02) if grid is None else np.asarray(grid)
    thresholds = np.full(np.asarray(probs).shape[1], start, dtype=float)
    for _ in range(rounds):
        for c in range(len(thresholds)):
            scores = []
            for t in grid:
                thresholds[c] = t
                scores.append(fbeta_score(probs, targets, beta, thresholds))
            thresholds[c] = grid[int(np.argmax(scores))]
    return thresholds


def top_k_error(scores: np.ndarray, labels: np.ndarray, k: int = 3) -> float:
    """Share of items whose true class is not among the `k` highest scores."""
    top = np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]
    return float(1.0 - (top == np.asarray(labels)[:, None]).any(axis=1).mean())


def accuracy_thresh(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """Element-wise accuracy of multi-label predictions at `threshold` (fastai's accuracy_multi on probabilities)."""
    return float(((np.asarray(probs) >= threshold) == (np.asarray(targets) > 0.5)).mean())


def fbeta_metric(beta: float = 2.0, threshold: float = 0.2):
    """`fbeta_score` as a fastai metric for a multi-label learner (sigmoid applied to the model's outputs)."""
    from fastai.metrics import AccumMetric, ActivationType

    def fbeta(preds, targs):
        return fbeta_score(preds.cpu().numpy(), targs.cpu().numpy(), beta, threshold)

    fbeta.__name__ = f"f{beta:g}_at_{threshold:g}"
    return AccumMetric(fbeta, activation=ActivationType.Sigmoid, flatten=False)


def top_k_error_metric(k: int = 3):
    """`top_k_error` as a fastai metric for a single-label learner."""
    from fastai.metrics import AccumMetric

    def topk(preds, targs):
        return top_k_error(preds.cpu().numpy(), targs.cpu().numpy(), k)

    topk.__name__ = f"top_{k}_error"
    return AccumMetric(topk, flatten=False)
