"""The classification kernel's data: what it trains on (``training_items``), and its DataBlock, defined once:
training builds its DataLoaders from it, and a saved model rebuilds its prediction pipeline from it, so the two
cannot drift apart (decoding, size, label type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kaggle_kit.vision.images import draft_image_block

__all__ = ["classification_block", "training_items", "image_files"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def classification_block(
    settings: Mapping[str, Any],
    *,
    get_x: Callable | None = None,
    get_y: Callable | None = None,
    splitter: Callable | None = None,
    vocab: Sequence[str] | None = None,
    batch_tfms: Any = None,
):
    """A fastai ``DataBlock`` for the classification kernel's settings: images decoded at the DCT scale nearest
    `settings["size"]` when `settings["draft_decode"]` (``vision.images``), resized to that size (pixels), and labelled
    by one category or, with `settings["multi_label"]`, a set of tags (`vocab`: the labels' order, when known).
    `get_x`, `get_y`, `splitter`, `batch_tfms`: fastai's, as training or prediction needs them (augmentation while
    training; normalisation of a pretrained body when predicting)."""
    from fastai.vision.all import CategoryBlock, DataBlock, MultiCategoryBlock, Resize

    size = int(settings["size"])
    images = draft_image_block(size if settings["draft_decode"] else None)
    labels = MultiCategoryBlock(vocab=vocab) if settings["multi_label"] else CategoryBlock(vocab=vocab)
    return DataBlock(blocks=(images, labels), get_x=get_x, get_y=get_y, splitter=splitter, item_tfms=Resize(size),
                     batch_tfms=batch_tfms)  # fmt: skip


def training_items(data: Path, settings: Mapping[str, Any], scratch: Path):
    """What the classification kernel trains on, from the input folder `data`: (items, get_x, get_y, clean-up
    report). `settings["layout"]` "folders" reads ``train_dir/<label>/*`` (the label is the folder); "csv" reads
    `settings["csv"]`'s `image_column` (+ `image_suffix`, under `train_dir`) and `label_column` (tags split by
    `label_delim` when multi-label). Images the clean-up finds unusable (zero bytes, undecodable, too large) are left
    out, since inputs are read-only on Kaggle; PIL converts the others while loading. The clean-up's report goes to
    `scratch` (not an output)."""
    import pandas as pd
    from fastai.vision.all import ColReader, parent_label

    from kaggle_kit.vision.clean import clean_images

    train_dir = data / settings["train_dir"]
    report = clean_images(train_dir, dry_run=True, report_path=scratch / "train-report.json", progress=False)
    unusable = report.unusable()
    if settings["layout"] == "folders":
        items = [p for p in sorted(train_dir.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p not in unusable]
        return items, None, parent_label, report
    frame = pd.read_csv(data / settings["csv"], dtype=str, keep_default_na=False)
    frame["path"] = [train_dir / (name + settings["image_suffix"]) for name in frame[settings["image_column"]]]
    items = frame[~frame["path"].isin(unusable)].reset_index(drop=True)
    delim = settings["label_delim"] if settings["multi_label"] else None
    return items, ColReader("path"), ColReader(settings["label_column"], label_delim=delim), report


def image_files(folder: Path) -> list[Path]:
    """The images under `folder` (any depth; .jpg, .jpeg, .png in any case), sorted: a test set."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
