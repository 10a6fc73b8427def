"""Choose each category's post-processing rule (threshold, smallest area, split) to maximise the competition metric on
validation images, and report the metric per category.

The metric is computed at the model's size (the probabilities' size; the true masks resized to it the way the model's
inputs were squished), from counts: for every image, category and candidate rule, the true positives at each IoU
threshold and the number of instances predicted. The rule of one category changes only its own counts, so the best
rule of each category given the others is exact and cheap; two rounds of this coordinate ascent, starting from the
default rule, settle. Memory is the counts only (images x categories x candidates x 10 small integers): the
probabilities of one image at a time.

Counting true positives as "pairs with IoU above the threshold" is exact when the instances of a category in one
image do not overlap (true for predictions, which are disjoint components, and for the competition's masks of one
category nearly always): above IoU 0.5 no instance can then pair with two.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from kaggle_kit.errors import UsageError
from kaggle_kit.imaterialist.metric import THRESHOLDS
from kaggle_kit.imaterialist.postprocess import DEFAULT_RULE, CategoryRule, PostProcessing, components, kept_labels

__all__ = ["RuleSearch", "DEFAULT_THRESHOLDS", "DEFAULT_MIN_AREAS"]

DEFAULT_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
DEFAULT_MIN_AREAS = (0.0, 0.0003, 0.001, 0.002, 0.005, 0.01, 0.02)  # share of the model-size image


class RuleSearch:
    """Collects metric counts image by image (``add``), then chooses the rules (``best``).

    `category_ids`: the stage-1 channel order. `default`: the rule to start from and to keep on ties.
    """

    def __init__(
        self,
        category_ids: Sequence[int],
        default: CategoryRule = DEFAULT_RULE,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        min_areas: Sequence[float] = DEFAULT_MIN_AREAS,
        splits: Sequence[str | None] = (None, "shape", "peaks"),
        max_instances: Sequence[int | None] = (None, 1, 2),
        exclusive: Sequence[int] = (),
    ):
        self.category_ids = [int(c) for c in category_ids]
        self.default = default
        self.exclusive = PostProcessing(self.category_ids, exclusive=exclusive)  # applied before counting
        grid = [CategoryRule(t, a, s, m) for s, t, a, m in
                itertools.product(splits, thresholds, min_areas, max_instances)]  # fmt: skip
        self.candidates = [default, *[r for r in grid if r != default]]  # index 0 is the default
        self._tp: list[np.ndarray] = []  # per image: (categories, candidates, IoU thresholds)
        self._predicted: list[np.ndarray] = []  # per image: (categories, candidates)
        self._truth: list[np.ndarray] = []  # per image: (categories,)

    def add(self, prob: np.ndarray, truth: Mapping[int, Sequence[np.ndarray]]) -> None:
        """Count one image: `prob` its (categories, H, W) probabilities, `truth` category id -> true instance masks
        at (H, W)."""
        n_cat, n_cand = len(self.category_ids), len(self.candidates)
        prob = self.exclusive.apply_exclusive(prob)
        tp = np.zeros((n_cat, n_cand, len(THRESHOLDS)), dtype=np.int16)
        predicted = np.zeros((n_cat, n_cand), dtype=np.int32)
        n_truth = np.zeros(n_cat, dtype=np.int32)
        lowest = min(r.threshold for r in self.candidates)
        n_pixels = prob.shape[1] * prob.shape[2]
        for channel, category in enumerate(self.category_ids):
            masks = list(truth.get(category, ()))
            n_truth[channel] = len(masks)
            if not masks and not (prob[channel] > lowest).any():
                continue
            by_labelling: dict[tuple[float, bool], list[int]] = {}
            for k, rule in enumerate(self.candidates):
                by_labelling.setdefault((rule.threshold, rule.split), []).append(k)
            for (threshold, split), ks in by_labelling.items():
                labels, sizes = components(prob[channel] > threshold, split, prob[channel])
                iou = _iou(labels, sizes, masks)  # (components, truths), row 0 the background
                for k in ks:
                    kept = kept_labels(sizes, self.candidates[k], n_pixels)
                    predicted[channel, k] = len(kept)
                    if masks and len(kept):
                        tp[channel, k] = (iou[kept][..., None] > THRESHOLDS).sum(axis=(0, 1))
        self._tp.append(tp)
        self._predicted.append(predicted)
        self._truth.append(n_truth)

    def __len__(self) -> int:
        return len(self._tp)

    def merged(self, other: RuleSearch) -> RuleSearch:
        """A search holding both searches' counted images (same candidates and exclusive categories): rules chosen
        on more images without predicting any of them again."""
        if other.category_ids != self.category_ids or other.candidates != self.candidates:
            raise UsageError("cannot merge searches over different categories or candidate rules")
        if other.exclusive.exclusive != self.exclusive.exclusive:
            raise UsageError("cannot merge searches with different exclusive categories")
        out = copy.copy(self)  # new count lists below; the rest is shared and never changed
        out._tp, out._predicted, out._truth = (self._tp + other._tp, self._predicted + other._predicted,
                                               self._truth + other._truth)  # fmt: skip
        return out

    def best(self, rounds: int = 2) -> tuple[PostProcessing, dict]:
        """The chosen rules, and a report: the metric on the counted images with the default rule and with the chosen
        ones, and per category (``category_scores``)."""
        if not self._tp:
            raise UsageError("no images counted: call add() first")
        tp, predicted, truth = np.stack(self._tp), np.stack(self._predicted), np.stack(self._truth)
        cats = np.arange(len(self.category_ids))
        choice = np.zeros(len(cats), dtype=int)
        before = _score(tp[:, cats, choice].sum(1), predicted[:, cats, choice].sum(1), truth.sum(1))
        for _ in range(rounds):
            for c in cats:
                rest_tp = tp[:, cats, choice].sum(1) - tp[:, c, choice[c]]  # (images, thresholds)
                rest_pred = predicted[:, cats, choice].sum(1) - predicted[:, c, choice[c]]
                tp_k = rest_tp[:, None, :] + tp[:, c]  # (images, candidates, thresholds)
                pred_k = rest_pred[:, None] + predicted[:, c]
                scores = _score(tp_k, pred_k, truth.sum(1)[:, None])
                choice[c] = 0 if scores[0] >= scores.max() - 1e-12 else int(np.argmax(scores))
        after = _score(tp[:, cats, choice].sum(1), predicted[:, cats, choice].sum(1), truth.sum(1))
        rules = {cat: self.candidates[k] for cat, k in zip(self.category_ids, choice, strict=True)}
        post = PostProcessing(self.category_ids, self.default, rules, self.exclusive.exclusive)
        report = {
            "images": len(self),
            "score_default": float(before),
            "score_tuned": float(after),
            "categories": self.category_scores(choice),
        }
        return post, report

    def evaluate(self, post: PostProcessing) -> dict:
        """The metric on the counted images with `post`'s rules (each must be one of the candidates): overall
        (`score`) and per category (``category_scores``)."""
        if post.category_ids != self.category_ids or post.exclusive != self.exclusive.exclusive:
            raise UsageError("post.category_ids or post.exclusive differ from this search's")
        try:
            choice = np.array([self.candidates.index(post.rule(c)) for c in self.category_ids])
        except ValueError:
            raise UsageError("a rule of `post` is not one of this search's candidates") from None
        tp, predicted, truth = np.stack(self._tp), np.stack(self._predicted), np.stack(self._truth)
        cats = np.arange(len(self.category_ids))
        score = _score(tp[:, cats, choice].sum(1), predicted[:, cats, choice].sum(1), truth.sum(1))
        return {"images": len(self), "score": float(score), "categories": self.category_scores(choice)}

    def category_scores(self, choice: np.ndarray | None = None) -> dict[int, dict]:
        """Per category with instances in the counted images or predicted there: the metric restricted to that
        category (mean over the images where it is true or predicted) and the number of images it is true in."""
        tp, predicted, truth = np.stack(self._tp), np.stack(self._predicted), np.stack(self._truth)
        choice = np.zeros(len(self.category_ids), dtype=int) if choice is None else choice
        out = {}
        for c, category in enumerate(self.category_ids):
            t, p, n = tp[:, c, choice[c]], predicted[:, c, choice[c]], truth[:, c]
            seen = (n > 0) | (p > 0)
            if seen.any():
                out[category] = {"score": float(_score(t[seen], p[seen], n[seen])), "images": int((n > 0).sum())}
        return out


def _iou(labels: np.ndarray, sizes: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """IoU of every labelled component (row k = label k) with every true mask (columns)."""
    iou = np.zeros((len(sizes), len(masks)))
    for j, mask in enumerate(masks):
        inter = np.bincount(labels[mask], minlength=len(sizes))
        union = sizes + mask.sum() - inter
        iou[:, j] = np.divide(inter, union, out=np.zeros(len(sizes)), where=union > 0)
    return iou


def _score(tp: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The metric's image mean from counts: tp (..., images?, thresholds) over tp + fp + fn, an empty image 1."""
    denominator = predicted[..., None] + truth[..., None] - tp
    per_threshold = np.divide(tp, denominator, out=np.ones(tp.shape), where=denominator > 0)
    if per_threshold.ndim == 3:  # (images, candidates, thresholds) -> per candidate
        return per_threshold.mean(axis=(0, 2))
    return per_threshold.mean()
