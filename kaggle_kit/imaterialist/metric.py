"""The competition's metric, computed locally: mean over images of the mean over IoU thresholds 0.50..0.95 (step
0.05) of TP / (TP + FP + FN), objects matched one-to-one only within the same class.

Two modes, because which one the leaderboard used is not certain: the competition's text matches on "ClassId",
which can be read as the category alone or as the full "category_attribute_..." string.
  mode="category": objects match when their categories are equal (attributes ignored);
  mode="full": objects match when category and the full set of attributes are equal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kaggle_kit.rle import rle_decode

__all__ = ["score_submission", "image_score", "THRESHOLDS"]

THRESHOLDS = np.arange(0.5, 0.951, 0.05)


def score_submission(submission: pd.DataFrame, solution: pd.DataFrame, mode: str = "category") -> float:
    """Score `submission` (ImageId, EncodedPixels, ClassId) against `solution` (the same plus Height, Width).

    Images of the solution missing from the submission score 0 unless they have no objects; submission rows for
    images not in the solution are ignored. Empty EncodedPixels rows mean "no object".
    """
    if mode not in ("category", "full"):
        raise ValueError(f"mode={mode!r}; expected 'category' or 'full'")
    predicted = {k: g for k, g in submission.groupby("ImageId")}
    scores = []
    for image_id, truth in solution.groupby("ImageId"):
        shape = (int(truth["Height"].iloc[0]), int(truth["Width"].iloc[0]))
        pred = predicted.get(image_id, submission.iloc[0:0])
        scores.append(image_score(_objects(pred, shape, mode), _objects(truth, shape, mode)))
    return float(np.mean(scores)) if scores else 0.0


def image_score(pred: list[tuple[str, np.ndarray]], truth: list[tuple[str, np.ndarray]]) -> float:
    """The metric for one image: lists of (class key, boolean mask)."""
    if not pred and not truth:
        return 1.0
    classes = {c for c, _ in pred} | {c for c, _ in truth}
    ious = {c: _iou_matrix([m for k, m in pred if k == c], [m for k, m in truth if k == c]) for c in classes}
    total = 0.0
    for t in THRESHOLDS:
        tp = fp = fn = 0
        for iou in ious.values():
            matched = _match(iou, t)
            tp += matched
            fp += iou.shape[0] - matched
            fn += iou.shape[1] - matched
        total += tp / (tp + fp + fn)
    return total / len(THRESHOLDS)


def _objects(frame: pd.DataFrame, shape: tuple[int, int], mode: str) -> list[tuple[str, np.ndarray]]:
    out = []
    for rle, class_id in zip(frame["EncodedPixels"], frame["ClassId"], strict=True):
        if not isinstance(rle, str) or not rle.strip():
            continue
        parts = str(class_id).split("_")
        key = parts[0] if mode == "category" else "_".join([parts[0], *sorted(parts[1:], key=int)])
        out.append((key, rle_decode(rle, shape)))
    return out


def _iou_matrix(pred: list[np.ndarray], truth: list[np.ndarray]) -> np.ndarray:
    iou = np.zeros((len(pred), len(truth)))
    for i, p in enumerate(pred):
        for j, g in enumerate(truth):
            union = np.logical_or(p, g).sum()
            iou[i, j] = np.logical_and(p, g).sum() / union if union else 0.0
    return iou


def _match(iou: np.ndarray, threshold: float) -> int:
    """Greedy one-to-one matching by descending IoU; counts pairs above the threshold."""
    if iou.size == 0:
        return 0
    pairs = sorted(((iou[i, j], i, j) for i, j in zip(*np.nonzero(iou > threshold), strict=True)), reverse=True)
    used_p, used_t, matched = set(), set(), 0
    for _value, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matched += 1
    return matched
