"""The competition's metric, computed locally: mean over images of the mean over IoU thresholds 0.50..0.95 (step
0.05) of TP / (TP + FP + FN), objects matched one-to-one only within the same class.

Two modes, because which one the leaderboard used is not certain: the competition's text matches on "ClassId",
which can be read as the category alone or as the full "category_attribute_..." string.
  mode="category": objects match when their categories are equal (attributes ignored);
  mode="full": objects match when category and the full set of attributes are equal.

Two averages within an image, because published validation numbers use both:
  average="image" (the competition's text): TP, FP and FN are pooled over all classes of the image;
  average="class" (how the 2019 winner validated, amirassov/kaggle-imaterialist src/metric.py): each class that is
  true or predicted in the image scores its own mean over IoU thresholds (a predicted class absent from the truth
  scores 0), and the image scores the mean over its classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kaggle_kit.errors import UsageError
from kaggle_kit.vision.rle import rle_decode

__all__ = ["score_submission", "score_readings", "score_by_category", "image_score", "trivial_baseline", "THRESHOLDS"]

THRESHOLDS = np.arange(0.5, 0.951, 0.05)
MODES, AVERAGES = ("category", "full"), ("image", "class")


def score_submission(
    submission: pd.DataFrame, solution: pd.DataFrame, mode: str = "category", average: str = "image"
) -> float:
    """Score `submission` (ImageId, EncodedPixels, ClassId) against `solution` (the same plus Height, Width), in
    [0, 1]. `mode` and `average`: which reading of the metric (see the module's text).

    Images of the solution missing from the submission score 0 unless they have no objects; submission rows for
    images not in the solution are ignored. Empty EncodedPixels rows mean "no object".
    """
    if average not in AVERAGES:
        raise UsageError(f"average={average!r}; expected 'image' or 'class'")
    scores = [_image_score(c, average) for c in _image_counts(submission, solution, mode)]
    return float(np.mean(scores)) if scores else 0.0


def score_readings(submission: pd.DataFrame, solution: pd.DataFrame) -> dict[str, float]:
    """`score_submission` in all four readings, each mask decoded once per mode: {"category": ..., "full": ...,
    "category/class": ..., "full/class": ...} (a key without "/class" averages per image)."""
    out = {}
    for mode in MODES:
        counts = list(_image_counts(submission, solution, mode))
        for average in AVERAGES:
            scores = [_image_score(c, average) for c in counts]
            out[mode if average == "image" else f"{mode}/class"] = float(np.mean(scores)) if scores else 0.0
    return out


def trivial_baseline(solution: pd.DataFrame, class_id: str | int | None = None) -> pd.DataFrame:
    """The submission a model must beat: each image of `solution` wholly one garment of `class_id` (default: the
    most common category of `solution`), in the competition's columns."""
    if class_id is None:
        class_id = solution["ClassId"].astype(str).str.split("_").str[0].mode()[0]
    sizes = solution.groupby("ImageId")[["Height", "Width"]].first()
    return pd.DataFrame([(i, f"1 {h * w}", str(class_id)) for i, (h, w) in sizes.iterrows()],
                        columns=["ImageId", "EncodedPixels", "ClassId"])  # fmt: skip


def score_by_category(submission: pd.DataFrame, solution: pd.DataFrame) -> dict[int, dict]:
    """The metric of each category alone (category mode): per category id, its mean over the images where it is
    true or predicted (`score`) and the number of solution images it is true in (`images`). Where a model fails."""
    per_category: dict[int, list[float]] = {}
    present: dict[int, int] = {}
    for counts in _image_counts(submission, solution, "category"):
        for key, count in counts.items():
            per_category.setdefault(int(key), []).append(_ratio(count))
            present[int(key)] = present.get(int(key), 0) + int(count[2] > 0)
    return {c: {"score": float(np.mean(v)), "images": present[c]} for c, v in sorted(per_category.items())}


def image_score(pred: list[tuple[str, np.ndarray]], truth: list[tuple[str, np.ndarray]]) -> float:
    """The metric for one image: lists of (class key, boolean mask)."""
    return _ratio(_total(_class_counts(pred, truth).values()))


def _image_score(counts: dict, average: str) -> float:
    """One image's score from its class counts: pooled over classes ("image") or the mean of each class's ("class")."""
    if average == "image" or not counts:  # no classes at all: an empty image, 1 either way
        return _ratio(_total(counts.values()))
    return float(np.mean([_ratio(c) for c in counts.values()]))


def _total(counts) -> tuple[np.ndarray, int, int] | None:
    """The sum of (true positives per IoU threshold, predicted, true) over classes; None for no classes."""
    counts = list(counts)
    if not counts:
        return None
    return sum(c[0] for c in counts), sum(c[1] for c in counts), sum(c[2] for c in counts)


def _ratio(counts) -> float:
    """Mean over IoU thresholds of TP / (TP + FP + FN); nothing predicted and nothing true is 1."""
    if counts is None:  # no classes: an empty image
        return 1.0
    tp, predicted, true = counts
    return float(np.mean(tp / (predicted + true - tp))) if predicted + true else 1.0


def _image_counts(submission: pd.DataFrame, solution: pd.DataFrame, mode: str):
    """Per solution image: class key -> (true positives per IoU threshold, predicted, true)."""
    if mode not in ("category", "full"):
        raise UsageError(f"mode={mode!r}; expected 'category' or 'full'")
    predicted = {k: g for k, g in submission.groupby("ImageId")}
    for image_id, truth in solution.groupby("ImageId"):
        shape = (int(truth["Height"].iloc[0]), int(truth["Width"].iloc[0]))
        pred = predicted.get(image_id, submission.iloc[0:0])
        yield _class_counts(_objects(pred, shape, mode), _objects(truth, shape, mode))


def _class_counts(pred, truth) -> dict[str, tuple[np.ndarray, int, int]]:
    classes = {c for c, _ in pred} | {c for c, _ in truth}
    out = {}
    for c in classes:
        iou = _iou_matrix([m for k, m in pred if k == c], [m for k, m in truth if k == c])
        tp = np.array([_match(iou, t) for t in THRESHOLDS], dtype=float)
        out[c] = (tp, iou.shape[0], iou.shape[1])
    return out


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
