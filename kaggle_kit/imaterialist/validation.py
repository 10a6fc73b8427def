"""What the iMaterialist kernel does between training and the submission: the post-processing rules tuned to the
metric on half of stage 1's validation photos (``tune_postprocessing``), then the model scored on the other half
against a trivial baseline, with its pictures and report (``validation_report``).

Neither half was trained on; the score is not the one tuned (``rules.tune_rules``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kaggle_kit.atomic import atomic_write_json
from kaggle_kit.imaterialist.data import Labels
from kaggle_kit.imaterialist.masks import instance_masks
from kaggle_kit.imaterialist.metric import score_by_category, score_readings, trivial_baseline
from kaggle_kit.imaterialist.postprocess import CategoryRule
from kaggle_kit.imaterialist.report import category_chart, category_table, mask_overlays
from kaggle_kit.imaterialist.rules import TunedRules, garment_categories, tune_rules
from kaggle_kit.imaterialist.stage1 import predict_probabilities
from kaggle_kit.imaterialist.submission import COLUMNS
from kaggle_kit.predict.identity import model_digest
from kaggle_kit.predict.sinks import CsvSink
from kaggle_kit.predict.stream import stream_predict

__all__ = ["validation_halves", "tune_postprocessing", "validation_report", "REPORT_NAME"]

REPORT_NAME = "imaterialist-report.json"


def validation_halves(learn, most: int) -> tuple[list[str], list[str]]:
    """Stage 1's validation photos split in two (even and odd positions), at most `most` each: the first half tunes
    the rules, the second scores them."""
    ids = [Path(p).name for p in learn.dls.valid.items]
    return ids[::2][:most], ids[1::2][:most]


def tune_postprocessing(learn, train: pd.DataFrame, train_dir: Path, category_ids: list[int],
                        settings: Mapping[str, Any], tta: str | None) -> TunedRules:  # fmt: skip
    """The rules of stage 1's `learn` (at its final size): per-category threshold, smallest area and splitting,
    tuned on half of its validation photos (``validation_halves``; `settings`: "threshold", "min_area",
    "max_tune_images", "tune_postprocessing", "sizes") and scored on the other half. `tta`: "hflip" when the
    submission flips."""
    size = settings["sizes"][-1]

    def observe(ids: list[str]):  # (probabilities, true instances) at the model's size, one photo at a time
        by_image = dict(list(train[train["ImageId"].isin(ids)].groupby("ImageId")))
        for path, prob in predict_probabilities(learn, [train_dir / i for i in ids], flip=bool(tta)):
            yield prob, instance_masks(by_image[path.name], size, size)

    tune_ids, report_ids = validation_halves(learn, settings["max_tune_images"])
    default = CategoryRule(settings["threshold"], settings["min_area"])
    key = {"model": model_digest(learn.model), "tta": tta, "default": [default.threshold, default.min_area],
           "tune": settings["tune_postprocessing"]}  # fmt: skip  # rules are reused only for this model and settings
    garments = garment_categories(train, sorted(train["ImageId"].unique())[:300])
    return tune_rules(observe, tune_ids, report_ids, category_ids, default, garments, key,
                      settings["tune_postprocessing"])  # fmt: skip


def validation_report(fashion, rules: TunedRules, report_ids: list[str], train: pd.DataFrame, train_dir: Path,
                      labels: Labels, working: Path, scratch: Path, tta: str | None,
                      extra: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Score the saved model `fashion` (``FashionModel``) on the held-out validation photos `report_ids` (the second
    of ``validation_halves``) in both of the metric's readings, next to a trivial baseline (the most common category
    over the whole photo); draw the per-category chart and the masks of four photos; write the report
    (``imaterialist-report.json``, with `extra`) into `working` and return it. Predictions go to `scratch`."""
    sink = CsvSink(scratch / "validation_predictions.csv", fashion.submission_rows(rules.held_out), COLUMNS)
    stream_predict(fashion.stage1, [train_dir / i for i in report_ids], sink, tta=tta, progress=False,
                   restart=True)  # fmt: skip  # a new model: never resumed from an older one's rows
    truth = train[train["ImageId"].isin(report_ids)]
    predicted = pd.read_csv(sink.path, dtype=str, keep_default_na=False)
    baseline = trivial_baseline(truth, int(fashion.folder.settings["most_common"]))
    scores = {"model": score_readings(predicted, truth), "baseline": score_readings(baseline, truth)}
    categories = category_table(score_by_category(predicted, truth), score_by_category(baseline, truth), labels)
    category_chart(categories, working / "imaterialist-categories.png")
    overlays = mask_overlays([(train_dir / i, truth[truth["ImageId"] == i], predicted[predicted["ImageId"] == i])
                              for i in report_ids[:4]], labels, working / "imaterialist-masks.png")  # fmt: skip
    report = {
        "scores": scores,
        "postprocessing": rules.report,
        "categories": categories,
        "overlays": overlays,
        **{k: (np.round(v, 2).tolist() if isinstance(v, np.ndarray) else v) for k, v in extra.items()},
    }
    atomic_write_json(working / REPORT_NAME, report)
    return report
