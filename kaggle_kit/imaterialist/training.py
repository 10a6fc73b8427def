"""The training kernel's two models built from its settings: one definition for the kernel, the demo and the tests.

``FashionData.read`` reads and validates the competition's files before any long work; ``segmenter`` builds stage 1
(its loss, its unet and the DataLoaders at each progressive size) and ``attribute_learner`` stage 2 (garment crops
held out by stage 1's validation photos); ``attribute_thresholds`` tunes stage 2's per-attribute thresholds on them.
The settings are the kernel's SETTINGS (``kernels/imaterialist-fashion-2019``), by the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kaggle_kit.imaterialist.data import Labels, read_labels, read_train_csv
from kaggle_kit.imaterialist.masks import dataset_cache_dir
from kaggle_kit.imaterialist.stage1 import MultiLabelSegLoss, positive_weights, stage1_dataloaders, stage1_learner
from kaggle_kit.imaterialist.stage2 import build_crops, stage2_learner, tune_thresholds
from kaggle_kit.limits import available_cpus
from kaggle_kit.train.precision import mixed_precision

__all__ = ["FashionData", "segmenter", "attribute_learner", "attribute_thresholds"]


@dataclass
class FashionData:
    """The competition's training data as the kernel trains on it: `folder` (the attached input), its `labels`,
    the `train` rows of the chosen `image_ids` and the `cache` folder for masks and crops (outside working/: not
    outputs)."""

    folder: Path
    labels: Labels
    train: pd.DataFrame
    image_ids: list[str]
    cache: Path

    @classmethod
    def read(cls, folder: Path, max_images: int | None = None) -> FashionData:
        """Read label_descriptions.json and train.csv of `folder` (one-line errors), keeping the first `max_images`
        training photos by name (None: all)."""
        labels = read_labels(folder / "label_descriptions.json")
        train = read_train_csv(folder / "train.csv", labels)
        image_ids = sorted(train["ImageId"].unique())[:max_images]
        return cls(folder, labels, train[train["ImageId"].isin(image_ids)], image_ids, dataset_cache_dir(folder))

    @property
    def category_ids(self) -> list[int]:
        return self.labels.category_ids

    @property
    def names(self) -> dict[str, dict[int, str]]:
        """Category and attribute names by id, for the model folder's reports."""
        return {"categories": self.labels.categories, "attributes": self.labels.attributes}

    @property
    def most_common(self) -> int:
        """The most common category id: the trivial baseline's guess."""
        return int(self.train["category"].mode()[0])


def segmenter(data: FashionData, settings: Mapping[str, Any], weights: Path | None) -> tuple[Any, Callable]:
    """Stage 1's fastai learner at the first size, and ``dls_at(size)``: its DataLoaders at any size (the same
    split at every size). Settings: "encoder", "encoder_cut", "last_cross", "decoder", "sizes", "bs", "num_workers"
    (None: one per CPU core), "valid_pct", "seed", "draft_decode", "train_crop", "dice", "focal_gamma",
    "positive_weights", "fp16" (mixed precision on a CUDA GPU, ``mixed_precision``). `weights`: the encoder's
    torchvision checkpoint (None: random init)."""
    workers = available_cpus() if settings["num_workers"] is None else settings["num_workers"]

    def dls_at(size: int):
        return stage1_dataloaders(data.folder / "train", data.train, data.category_ids, size, settings["bs"],
                                  data.cache, valid_pct=settings["valid_pct"], seed=settings["seed"],
                                  num_workers=workers, image_ids=data.image_ids,
                                  draft=settings["draft_decode"], train_crop=settings["train_crop"])  # fmt: skip

    pos_weight = positive_weights(data.train, data.category_ids) if settings["positive_weights"] else None
    loss = MultiLabelSegLoss(dice=settings["dice"], focal_gamma=settings["focal_gamma"], pos_weight=pos_weight)
    learn = stage1_learner(dls_at(settings["sizes"][0]), len(data.category_ids), settings["encoder"], weights,
                           loss=loss, cut=settings["encoder_cut"], last_cross=settings["last_cross"],
                           decoder=settings["decoder"])  # fmt: skip
    mixed_precision(learn, settings.get("fp16", True))
    return learn, dls_at


def attribute_learner(data: FashionData, settings: Mapping[str, Any], valid_images: list[str],
                      weights: Path | None) -> tuple[Any, list[int]]:  # fmt: skip
    """Stage 2's fastai learner on the crops of garments whose category has attributes (cached), validated on the
    crops of `valid_images` (stage 1's validation photos: no score comes from a model that trained on them), and
    those categories. Settings: "crop_size", "stage2_bs", "stage2_encoder", "seed", "draft_decode", "fp16"."""
    train = data.train
    categories = sorted(train.loc[train["attributes"].map(len) > 0, "category"].unique().tolist())
    crops = build_crops(train, data.folder / "train", settings["crop_size"], data.cache, categories,
                        draft=settings["draft_decode"])  # fmt: skip
    learn2 = stage2_learner(crops, data.labels.attribute_ids, settings["crop_size"], settings["stage2_bs"],
                            settings["stage2_encoder"], weights, seed=settings["seed"],
                            valid_images=valid_images)  # fmt: skip
    mixed_precision(learn2, settings.get("fp16", True))
    return learn2, categories


def attribute_thresholds(learn2) -> np.ndarray:
    """Per-attribute thresholds of a trained stage 2, tuned on its validation crops (``tune_thresholds``)."""
    with learn2.no_bar():
        probs, targets = learn2.get_preds(ds_idx=1)
    return tune_thresholds(probs.numpy(), targets.numpy())
