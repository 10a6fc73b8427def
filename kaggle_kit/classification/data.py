"""The classification DataBlock, defined once: training builds its DataLoaders from it, and a saved model rebuilds
its prediction pipeline from it, so the two cannot drift apart (decoding, size, label type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kaggle_kit.vision.images import draft_image_block

__all__ = ["classification_block"]


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
