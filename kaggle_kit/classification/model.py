"""The trained image classifier as one verified folder (``classifier-model/``), and prediction from it.

`ClassifierModel.save` writes what the classification kernel's submission needs: the final weights, the settings
that shape prediction (architecture, image size, TTA, draft decoding, whether the body was pretrained, so that the
same normalisation is applied), the vocabulary, the tuned per-tag thresholds (multi-label) and the submission's
columns, under one manifest of SHA-256 digests (``kaggle_kit.modelfolder``). `ClassifierModel.load` verifies it and
rebuilds the learner without any training data, so a later kernel predicts the same submission byte for byte.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastai.learner import Learner

from kaggle_kit.classification.data import classification_block
from kaggle_kit.errors import UsageError
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
from kaggle_kit.predict.writers import tags_rows, top_k_rows
from kaggle_kit.train.weights import architecture

__all__ = ["prediction_settings", "ClassifierModel", "MODEL_DIR", "KIND"]

MODEL_DIR = "classifier-model"
KIND = "classification"
# the kernel settings that decide its predictions (the rest only decide how it trains)
PREDICTION_SETTINGS = ("arch", "size", "multi_label", "tta", "draft_decode", "top_k", "id_column", "answer_column",
                       "bs")  # fmt: skip

_SETTING_RULES = {  # what ClassifierModel.load accepts from a manifest: one line naming the first that is not
    "arch": (is_text, "an architecture name"),
    "size": (is_count, "a positive whole number of pixels"),
    "multi_label": (is_flag, "true or false"),
    "tta": (lambda v: v is None or (isinstance(v, list) and all(isinstance(t, str) for t in v)), "a list of flips"),
    "draft_decode": (is_flag, "true or false"),
    "top_k": (is_count, "a positive whole number"),
    "id_column": (is_text, "a column name"),
    "answer_column": (lambda v: v is None or is_text(v), "a column name or null"),
    "bs": (is_count, "a positive whole number"),
    "vocab": (lambda v: isinstance(v, list) and v and all(isinstance(x, str) for x in v), "a non-empty list of labels"),
    "pretrained": (is_flag, "true or false"),
    "thresholds": (lambda v: v is None or (isinstance(v, list) and all(type(t) in (int, float) for t in v)),
                   "a list of numbers or null"),
    "digest": (is_text, "a digest"),
}  # fmt: skip


def prediction_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The kernel settings a found model must have been trained with to be predicted from (`trained_model`'s
    `expected`): those that shape the predictions; the batch size only batches them."""
    return {k: settings[k] for k in PREDICTION_SETTINGS if k != "bs"}


@dataclass
class ClassifierModel:
    """A loaded classifier: its verified `folder` and a fastai `learn` ready for ``stream_predict``."""

    folder: ModelFolder
    learn: Learner

    @staticmethod
    def save(path: str | os.PathLike, learn: Learner, settings: dict[str, Any], *, pretrained: bool,
             thresholds: Sequence[float] | None = None) -> ModelFolder:  # fmt: skip
        """Write the model of a finished training run into `path` (the manifest last). `pretrained`: the body came
        from a weights file (fastai then normalised the images with ImageNet statistics)."""
        chosen = {k: settings[k] for k in PREDICTION_SETTINGS}
        chosen.update(vocab=[str(v) for v in learn.dls.vocab], pretrained=bool(pretrained),
                      thresholds=None if thresholds is None else [float(t) for t in thresholds],
                      digest=model_digest(learn.model))  # fmt: skip
        buffer = io.BytesIO()
        torch.save(learn.model.state_dict(), buffer)
        return ModelFolder.write(path, KIND, {"model.pth": buffer.getvalue()}, chosen)

    @classmethod
    def load(cls, path: str | os.PathLike, test_files: Sequence[Path]) -> ClassifierModel:
        """The model in the folder `path`, verified, its learner rebuilt around `test_files` (no training data is
        read). Raises ``ModelFolderError`` naming the file that does not belong."""
        folder = ModelFolder.load(path, KIND)
        folder.check_settings(_SETTING_RULES)
        s = folder.settings
        if s["multi_label"] and len(s["thresholds"] or []) != len(s["vocab"]):
            raise ModelFolderError(f"{folder.path / MANIFEST_NAME}: a multi-label model needs one threshold per tag "
                                   f"({len(s['vocab'])})", "thresholds")  # fmt: skip
        if not test_files:
            raise UsageError("no test images to predict: the test folder holds no .jpg, .jpeg or .png", None)
        learn = _learner(list(test_files), s)
        weights = folder.file("model.pth")
        load_weights(learn.model, weights)
        if model_digest(learn.model) != s["digest"]:
            raise ModelFolderError(f"{weights} does not rebuild the model it was saved from", str(weights))
        learn.model.eval()
        return cls(folder, learn)

    def rows(self):
        """The submission's `to_rows`: the top-k labels, or the tags over their tuned thresholds."""
        s = self.folder.settings
        if s["multi_label"]:
            return tags_rows(s["vocab"], s["thresholds"])
        return top_k_rows(s["vocab"], s["top_k"])

    @property
    def columns(self) -> list[str]:
        """The submission's header: the id column, then the answer's."""
        s = self.folder.settings
        return [s["id_column"], s["answer_column"] or ("tags" if s["multi_label"] else "predicted")]

    def predict(self, test_files: Sequence[Path], path: str | os.PathLike = "submission.csv", **kwargs
                ) -> PredictSummary:  # fmt: skip
        """Stream the submission for `test_files` into `path` with the model's TTA (kwargs: ``stream_predict``'s)."""
        sink = CsvSink(path, self.rows(), self.columns)
        return stream_predict(self.learn, list(test_files), sink, tta=self.folder.settings["tta"] or [], **kwargs)


def _learner(files: list[Path], s: dict[str, Any]) -> Learner:
    """The classifier as training built it, around DataLoaders whose test pipeline is training's; the labels are
    placeholders, never read."""
    from fastai.vision.all import IndexSplitter, Normalize, imagenet_stats, vision_learner

    vocab = s["vocab"]
    placeholder = (lambda _: [vocab[0]]) if s["multi_label"] else (lambda _: vocab[0])
    normalize = [Normalize.from_stats(*imagenet_stats)] if s["pretrained"] else None  # what fastai adds when training
    block = classification_block(s, vocab=vocab, get_y=placeholder, splitter=IndexSplitter([]), batch_tfms=normalize)
    dls = block.dataloaders(files, bs=max(1, min(int(s["bs"]), len(files))), num_workers=0)
    build, _ = architecture(s["arch"], None)
    return vision_learner(dls, build, pretrained=False, n_out=len(vocab))
