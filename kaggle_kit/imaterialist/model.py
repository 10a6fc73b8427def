"""The trained iMaterialist model as one verified folder (``imaterialist-model/``), and prediction from it.

`FashionModel.save` writes what a submission needs and nothing else: both stages' final weights, every setting
that shapes prediction (sizes, encoder, decoder, crop size, TTA, draft decoding), the category and attribute ids
and names, the tuned post-processing rules and the attribute thresholds, under one manifest of SHA-256 digests
(``kaggle_kit.modelfolder``). `FashionModel.load` verifies it and rebuilds both models without any training data,
so a later kernel (a new test set, an inference-only kernel with the model attached as a dataset) predicts the same
submission byte for byte, with no training and no tuning.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.vision.all import CategoryBlock, DataBlock, IndexSplitter, create_vision_model

from kaggle_kit.imaterialist.postprocess import PostProcessing
from kaggle_kit.imaterialist.rules import TunedRules
from kaggle_kit.imaterialist.stage1 import image_pipeline, stage1_learner
from kaggle_kit.imaterialist.stage2 import AttributePredictor
from kaggle_kit.imaterialist.submission import COLUMNS, SubmissionRows
from kaggle_kit.modelfolder import (
    MANIFEST_NAME,
    ModelFolder,
    ModelFolderError,
    is_count,
    is_flag,
    is_text,
    load_weights,
)
from kaggle_kit.predict.identity import model_digest
from kaggle_kit.predict.sinks import CsvSink
from kaggle_kit.predict.stream import PredictSummary, stream_predict
from kaggle_kit.train.weights import architecture

__all__ = ["prediction_settings", "FashionModel", "MODEL_DIR", "KIND"]

MODEL_DIR = "imaterialist-model"
KIND = "imaterialist"
_WEIGHTS = ("stage1.pth", "stage2.pth")
_RULES = "rules.json"
# the settings of a training run that decide its predictions (the rest only decide how it trains)
PREDICTION_SETTINGS = ("encoder", "encoder_cut", "last_cross", "decoder", "sizes", "stage2_encoder", "crop_size",
                       "flip_tta", "draft_decode", "bs")  # fmt: skip

_IDS = (lambda v: isinstance(v, list) and v and all(type(x) is int for x in v), "a non-empty list of whole numbers")
_SETTING_RULES = {  # what FashionModel.load accepts from a manifest: one line naming the first that is not
    "encoder": (is_text, "an architecture name"),
    "encoder_cut": (lambda v: v is None or type(v) is int, "a whole number or null"),
    "last_cross": (is_flag, "true or false"),
    "decoder": (lambda v: v in ("fastai", "light"), '"fastai" or "light"'),
    "sizes": (lambda v: isinstance(v, list) and v and all(is_count(x) for x in v), "a list of pixel sizes"),
    "stage2_encoder": (is_text, "an architecture name"),
    "crop_size": (is_count, "a positive whole number of pixels"),
    "flip_tta": (is_flag, "true or false"),
    "draft_decode": (is_flag, "true or false"),
    "bs": (is_count, "a positive whole number"),
    "category_ids": _IDS,
    "attribute_ids": (lambda v: isinstance(v, list) and all(type(x) is int for x in v), "a list of whole numbers"),
    "thresholds": (lambda v: isinstance(v, list) and all(type(t) in (int, float) for t in v), "a list of numbers"),
    "stage1_digest": (is_text, "a digest"),
}  # fmt: skip


def prediction_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The kernel settings a found model must have been trained with to be predicted from (`trained_model`'s
    `expected`): those that shape the predictions; the batch size only batches them."""
    return {k: settings[k] for k in PREDICTION_SETTINGS if k != "bs"}


@dataclass
class FashionModel:
    """A loaded iMaterialist model: the stage-1 learner (at its final size), the stage-2 model and everything the
    submission rows need. Build it with `load`; a training kernel writes it with `save`."""

    folder: ModelFolder
    stage1: Any  # a fastai Learner, for stream_predict
    stage2: torch.nn.Module
    rules: TunedRules

    @staticmethod
    def save(path: str | os.PathLike, learn, learn2, settings: dict[str, Any], *, category_ids: Sequence[int],
             attribute_categories: Sequence[int], thresholds: np.ndarray, most_common: int, rules: TunedRules,
             names: dict[str, dict[int, str]] | None = None) -> ModelFolder:  # fmt: skip
        """Write the model of a finished training run into `path` (the manifest last)."""
        chosen = {k: settings[k] for k in PREDICTION_SETTINGS}
        chosen.update(category_ids=[int(c) for c in category_ids], attribute_ids=[int(v) for v in learn2.dls.vocab],
                      attribute_categories=[int(c) for c in attribute_categories],
                      thresholds=[float(t) for t in np.asarray(thresholds)], most_common=int(most_common),
                      stage1_digest=model_digest(learn.model), names=names or {})  # fmt: skip
        files = {"stage1.pth": _state_bytes(learn.model), "stage2.pth": _state_bytes(learn2.model)}
        files[_RULES] = rules.to_json().encode()
        return ModelFolder.write(path, KIND, files, chosen)

    @classmethod
    def load(cls, path: str | os.PathLike, test_files: Sequence[Path]) -> FashionModel:
        """The model in the folder `path`, verified, its learners rebuilt around `test_files` (what it will predict;
        no training data is read). Raises ``ModelFolderError`` naming the file that does not belong."""
        folder = ModelFolder.load(path, KIND)
        folder.check_settings(_SETTING_RULES)
        s = folder.settings
        if len(s["thresholds"]) != len(s["attribute_ids"]):
            raise ModelFolderError(f"{folder.path / MANIFEST_NAME}: one threshold per attribute is needed "
                                   f"({len(s['attribute_ids'])})", "thresholds")  # fmt: skip
        rules = TunedRules.from_json(folder.file(_RULES).read_text(), str(folder.file(_RULES)))
        if rules.key.get("model") != s.get("stage1_digest"):
            raise ModelFolderError(f"{folder.file(_RULES)}: rules tuned for another model than stage1.pth",
                                   str(folder.file(_RULES)))  # fmt: skip
        learn = _stage1(folder, s, list(test_files))
        model2 = create_vision_model(architecture(s["stage2_encoder"], None)[0], len(s["attribute_ids"]),
                                     pretrained=False)  # fmt: skip
        _load_state(model2, folder.file("stage2.pth"))
        if model_digest(learn.model) != s["stage1_digest"]:
            raise ModelFolderError(f"{folder.file('stage1.pth')} does not rebuild the model it was saved from",
                                   str(folder.file("stage1.pth")))  # fmt: skip
        return cls(folder, learn, model2.eval(), rules)

    @property
    def tta(self) -> str | None:
        """The TTA the model's submission uses."""
        return "hflip" if self.folder.settings["flip_tta"] else None

    def submission_rows(self, post: PostProcessing | None = None) -> SubmissionRows:
        """The submission's `to_rows`: stage-1 instances under the tuned rules (`post`: other rules, e.g. the
        held-out ones for a validation score), attributes from stage 2."""
        s = self.folder.settings
        attributes = AttributePredictor(self.stage2, s["attribute_ids"], np.asarray(s["thresholds"]), s["crop_size"])
        return SubmissionRows(s["category_ids"], attributes, s["attribute_categories"], fallback_class=s["most_common"],
                              crop_size=s["crop_size"] if s["draft_decode"] else None,
                              post=post or self.rules.submission)  # fmt: skip

    def predict(self, test_files: Sequence[Path], path: str | os.PathLike = "submission.csv", **kwargs
                ) -> PredictSummary:  # fmt: skip
        """Stream the submission for `test_files` into `path` (kwargs go to ``stream_predict``)."""
        sink = CsvSink(path, self.submission_rows(), COLUMNS)
        return stream_predict(self.stage1, list(test_files), sink, tta=self.tta, **kwargs)


def _stage1(folder: ModelFolder, s: dict[str, Any], test_files: list[Path]):
    """The stage-1 learner rebuilt as training built it (at the first size, then moved to the last one)."""
    if not test_files:
        raise ModelFolderError("no test images to predict", None)
    learn = stage1_learner(_image_dls(test_files, s["sizes"][0], s), len(s["category_ids"]), s["encoder"], None,
                           cut=s["encoder_cut"], last_cross=s["last_cross"], decoder=s["decoder"])  # fmt: skip
    learn.dls = _image_dls(test_files, s["sizes"][-1], s)
    _load_state(learn.model, folder.file("stage1.pth"))
    learn.model.eval()
    return learn


def _image_dls(files: list[Path], size: int, s: dict[str, Any]):
    """DataLoaders whose test pipeline is training's (``image_pipeline``); the labels are placeholders, never read."""
    images, item_tfms, batch_tfms = image_pipeline(size, s["draft_decode"])
    block = DataBlock(blocks=(images, CategoryBlock), get_y=lambda _: "image", splitter=IndexSplitter([]),
                      item_tfms=item_tfms, batch_tfms=batch_tfms)  # fmt: skip
    return block.dataloaders(files, bs=max(1, min(int(s["bs"]), len(files))), num_workers=0)


def _state_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def _load_state(model: torch.nn.Module, path: Path) -> None:
    load_weights(model, path)  # a damaged file, another architecture's shapes: one line naming the file
