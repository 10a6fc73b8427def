"""What fastai and scikit-learn lack for the seeds' multi-label competitions: one threshold per class, searched on
validation to maximise sample-averaged F-beta (Planet: F2). Scoring itself is scikit-learn's (``fbeta_score`` with
``average="samples"``), and during training fastai's ``FBetaMulti`` / ``top_k_accuracy``.

Arrays are (items, classes) probabilities and 0/1 targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fbeta_score", "search_thresholds", "middle_of_best", "multi_label_validation", "single_label_validation"]


def fbeta_score(
    probs: np.ndarray, targets: np.ndarray, beta: float = 2.0, threshold: float | np.ndarray = 0.2
) -> float:
    """Sample-averaged F-beta of multi-label predictions `probs` >= `threshold` (a number or one per class);
    scikit-learn's ``fbeta_score(average="samples", zero_division=0)``."""
    from sklearn.metrics import fbeta_score as sklearn_fbeta

    pred = np.asarray(probs) >= np.asarray(threshold)
    truth = np.asarray(targets) > 0.5
    return float(sklearn_fbeta(truth, pred, beta=beta, average="samples", zero_division=0))


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
    maximises the overall score, for `rounds` passes. Where the best score holds over a stretch of the grid (a class
    whose validation items all sit far from the boundary), the threshold is the middle of the longest such stretch,
    not its lowest value: the safest place for test items the validation set did not show. Score it on images it was
    not tuned on.
    """
    grid = np.arange(0.02, 0.99, 0.02) if grid is None else np.asarray(grid)
    probs, truth = np.asarray(probs), np.asarray(targets) > 0.5
    thresholds = np.full(probs.shape[1], start, dtype=float)
    b2 = beta * beta
    for _ in range(rounds):
        for c in range(len(thresholds)):
            scores = [_fbeta_counts(probs, truth, b2, thresholds, c, t) for t in grid]
            thresholds[c] = middle_of_best(grid, np.asarray(scores))
    return thresholds


def middle_of_best(grid: np.ndarray, scores: np.ndarray, tolerance: float = 1e-9) -> float:
    """The middle of the longest contiguous stretch of `grid` where `scores` is within `tolerance` of its maximum
    (the first such stretch on a tie), as a grid value (the lower of the two middle ones for an even stretch): every
    value returned scored the maximum."""
    best = scores >= scores.max() - tolerance
    runs, start = [], None
    for i, good in enumerate([*best, False]):
        if good and start is None:
            start = i
        elif not good and start is not None:
            runs.append((i - start, -start))
            start = None
    length, negative_start = max(runs)
    first, last = -negative_start, -negative_start + length - 1
    return float(grid[(first + last) // 2])


def multi_label_validation(
    probs: np.ndarray, targets: np.ndarray, beta: float = 2.0, start: float = 0.2
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-class thresholds tuned on the even-numbered validation items and scored on the odd ones (so the score is
    not the one tuned), next to the flat `start` threshold and a baseline that gives every item the tags most
    items have. Returns (thresholds, scores): the better of the tuned and the flat thresholds on the held-out items
    (a small validation set can tune worse than it starts), with `thresholds_used` saying which ("tuned" or
    "start") and `f_beta` its held-out score."""
    probs, targets = np.asarray(probs), np.asarray(targets)
    tune = np.arange(len(probs)) % 2 == 0
    held = ~tune
    tuned = search_thresholds(probs[tune], targets[tune], beta, start=start)
    common = (targets[tune].mean(axis=0) > 0.5).astype(float)
    at_tuned = fbeta_score(probs[held], targets[held], beta, tuned)
    at_start = fbeta_score(probs[held], targets[held], beta, start)
    used = "tuned" if at_tuned >= at_start else "start"
    thresholds = tuned if used == "tuned" else np.full(probs.shape[1], float(start))
    return thresholds, {
        "f_beta": max(at_tuned, at_start),
        "thresholds_used": used,
        "f_beta_tuned": at_tuned,
        "f_beta_at_start_threshold": at_start,
        "f_beta_baseline": fbeta_score(np.tile(common, (int(held.sum()), 1)), targets[held], beta, 0.5),
        "tuned_on": int(tune.sum()),
        "scored_on": int(held.sum()),
    }


def single_label_validation(probs: np.ndarray, labels: np.ndarray, k: int = 3) -> dict[str, float]:
    """Accuracy, top-`k` error and the accuracy of always answering the most common class (the baseline)."""
    probs, labels = np.asarray(probs), np.asarray(labels).astype(int)
    top_k = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return {
        "accuracy": float((probs.argmax(1) == labels).mean()),
        f"top_{k}_error": 1 - float((top_k == labels[:, None]).any(axis=1).mean()),
        "baseline_accuracy": float(np.bincount(labels, minlength=probs.shape[1]).max() / len(labels)),
    }


def _fbeta_counts(probs, truth, b2, thresholds, c, t) -> float:
    """Sample-averaged F-beta with class `c` at threshold `t` (the search's inner loop: numpy, no copies of probs)."""
    pred = probs >= thresholds
    pred[:, c] = probs[:, c] >= t
    tp = (pred & truth).sum(axis=1)
    den = b2 * truth.sum(axis=1) + pred.sum(axis=1)
    return float(np.where(den > 0, (1 + b2) * tp / np.maximum(den, 1), 0.0).mean())
