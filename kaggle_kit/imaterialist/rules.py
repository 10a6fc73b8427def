"""The post-processing one trained model gets: tuned to the metric on validation images, kept with the model.

``tune_rules`` runs the two rule searches (categories independent, and whole garments exclusive per pixel), keeps
the better, scores it against the untuned rule on the validation images the tuning did not see, and chooses the
submission's rules again on all of them (``RuleSearch.merged``: nothing is predicted twice). The rules travel inside
the model folder (``imaterialist.model.FashionModel``), written and read through ``TunedRules``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kaggle_kit.imaterialist.data import DataError
from kaggle_kit.imaterialist.masks import instance_masks
from kaggle_kit.imaterialist.postprocess import CategoryRule, PostProcessing, exclusive_categories
from kaggle_kit.imaterialist.tuning import RuleSearch

__all__ = ["TunedRules", "tune_rules", "garment_categories"]

log = logging.getLogger(__name__)

# (probabilities at the model's size, the true instances per category at that size) of each validation image
Observe = Callable[[Sequence[str]], Iterable[tuple[np.ndarray, dict[int, list[np.ndarray]]]]]


@dataclass
class TunedRules:
    """The rules of one model (`key`: its digest and the settings that shape the rules): `held_out` (tuned on half
    the validation images, scored on the other half), `submission` (chosen again on all of them), and `report`
    (images tuned and scored on, the untuned and tuned scores on the held-out half)."""

    key: dict[str, Any]
    held_out: PostProcessing
    submission: PostProcessing
    report: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The rules as the model folder keeps them (``imaterialist.model``)."""
        return json.dumps({"key": self.key, "rules": self.held_out.as_dict(), "final_rules": self.submission.as_dict(),
                           "report": self.report}, indent=2, sort_keys=True) + "\n"  # fmt: skip

    @classmethod
    def from_json(cls, text: str, where: str) -> TunedRules:
        """Rules written by `to_json`; anything else is a ``DataError`` naming `where`."""
        try:
            raw = json.loads(text)
            return cls(dict(raw["key"]), PostProcessing.from_dict(raw["rules"]),
                       PostProcessing.from_dict(raw["final_rules"]), dict(raw.get("report", {})))  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{where} is not a set of tuned rules ({type(exc).__name__}: {exc})", where) from None


def garment_categories(train: pd.DataFrame, image_ids: Sequence[str], size: int = 64) -> list[int]:
    """The categories that never share pixels in the training masks of `image_ids` (whole garments, not parts)."""
    sample = train[train["ImageId"].isin(image_ids)]
    return exclusive_categories(
        {c: np.any(m, axis=0) for c, m in instance_masks(objects, size, size).items()}
        for _i, objects in sample.groupby("ImageId")
    )


def tune_rules(
    observe: Observe,
    tune_ids: Sequence[str],
    report_ids: Sequence[str],
    category_ids: Sequence[int],
    default: CategoryRule,
    garments: Sequence[int],
    key: dict[str, Any],
    tune: bool = True,
) -> TunedRules:
    """Choose the rules on `tune_ids` (`tune`=False, or no images: the `default` rule everywhere), score them and the
    untuned rule on `report_ids`, and choose the submission's on both. `garments`: categories that may be made
    exclusive per pixel (``garment_categories``)."""
    untuned = PostProcessing(category_ids, default)
    post, chosen_search = untuned, None
    if tune and tune_ids:
        searches = [RuleSearch(category_ids, default), RuleSearch(category_ids, default, exclusive=garments)]
        _count(observe, tune_ids, searches)
        results = [search.best() for search in searches]
        chosen = max(range(len(searches)), key=lambda k: results[k][1]["score_tuned"])
        post, chosen_search = results[chosen][0], searches[chosen]
        log.info("post-processing tuned on %d validation images (model size): metric %.4f -> %.4f (categories "
                 "independent), %.4f (exclusive: %s)", len(tune_ids), results[0][1]["score_default"],
                 results[0][1]["score_tuned"], results[1][1]["score_tuned"], list(garments))  # fmt: skip
    held_out = [RuleSearch(category_ids, default), RuleSearch(category_ids, default, exclusive=post.exclusive)]
    _count(observe, report_ids, held_out)  # untuned vs tuned on images the tuning did not see
    final = post
    if chosen_search is not None and report_ids:
        final = chosen_search.merged(held_out[1]).best()[0]
    report = {"tuned_on": len(tune_ids), "scored_on": len(report_ids),
              "untuned_model_size": held_out[0].evaluate(untuned)["score"] if report_ids else None,
              "tuned_model_size": held_out[1].evaluate(post)["score"] if report_ids else None,
              "rules": post.as_dict(), "submission_rules": final.as_dict()}  # fmt: skip
    return TunedRules(key, post, final, report)


def _count(observe: Observe, ids: Sequence[str], searches: Sequence[RuleSearch]) -> None:
    if not ids:
        return
    for prob, truth in observe(ids):
        for search in searches:
            search.add(prob, truth)
