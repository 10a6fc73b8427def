"""The classification kernel's validation: the validation images predicted as the submission is (same TTA), scored
next to a baseline, the multi-label thresholds tuned on one half and scored on the other, and fastai's pictures of
what the model gets wrong. Written into the kernel's working dir; ``classification-report.json`` is the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_kit.atomic import atomic_write_bytes, atomic_write_json
from kaggle_kit.predict.sinks import ArraySink
from kaggle_kit.predict.stream import stream_predict
from kaggle_kit.vision.charts import confusion_chart, tag_chart, top_losses_picture
from kaggle_kit.vision.metrics import multi_label_validation, single_label_validation

__all__ = ["validate", "REPORT_NAME"]

REPORT_NAME = "classification-report.json"


def validate(learn, data: Path, settings: Mapping[str, Any], working: Path, scratch: Path,
             extra: Mapping[str, Any]) -> tuple[np.ndarray | None, dict[str, Any]]:  # fmt: skip
    """Score the trained `learn` on its validation items, predicted with `settings["tta"]` as the submission is.
    Single-label: accuracy, top-k error and the most-common-class baseline, with ``confusion_matrix.png`` and
    ``top_losses.png``. Multi-label: F-beta (`settings["beta"]`) with per-tag thresholds tuned on half the items
    starting from `settings["threshold"]` (the better of tuned and starting on the other half), with
    ``tag_precision_recall.png``. Writes ``validation-predictions.npy`` and the report (with `extra`) into
    `working`; returns (the thresholds, None for single-label; the scores)."""
    tta = settings["tta"] or []
    sink = ArraySink(scratch / "validation.npy")
    stream_predict(learn, learn.dls.valid.items, sink, tta=tta, progress=False, restart=True)
    probs = np.load(sink.path)
    atomic_write_bytes(working / "validation-predictions.npy", sink.path.read_bytes())  # for ensembles, checks
    items = learn.dls.valid.items
    names = [str(Path(p).relative_to(data)) for p in (items if isinstance(items, list) else items["path"])]
    targets = np.stack([np.asarray(t) for t in learn.dls.valid_ds.tls[1]])  # the encoded labels, no image decoded
    vocab = list(learn.dls.vocab)
    if settings["multi_label"]:
        thresholds, scores = multi_label_validation(probs, targets, settings["beta"], settings["threshold"])
        held = np.arange(len(probs)) % 2 == 1
        title = f"per tag on {int(held.sum())} held-out validation items (thresholds tuned on the others)"
        tag_chart(probs[held], targets[held], thresholds, vocab, working / "tag_precision_recall.png", title=title)
    else:
        from fastai.interpret import ClassificationInterpretation

        thresholds, labels = None, targets.astype(int)
        scores = single_label_validation(probs, labels, min(settings["top_k"], len(vocab)))
        confusion_chart(probs.argmax(axis=1), labels, vocab, working / "confusion_matrix.png")
        interp = ClassificationInterpretation.from_learner(learn)  # fastai's own: the images it got most wrong
        top_losses_picture(interp, working / "top_losses.png", min(9, len(labels)))
    rounded = None if thresholds is None else np.round(thresholds, 2).tolist()
    atomic_write_json(working / REPORT_NAME, {"validation": scores, "thresholds": rounded, "tta": tta,
                                              "validation_items": names, "vocab": vocab, **extra})  # fmt: skip
    return thresholds, scores
