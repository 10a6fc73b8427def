"""Decode photos at the size the model needs: JPEG draft mode instead of a full decode followed by a resize.

A 5000x3500 JPEG costs about a second to decode in full; a model trained at 512 px needs an eighth of that. libjpeg
can decode at 1/2, 1/4 or 1/8 scale directly from the DCT coefficients (PIL's ``Image.draft``); `DraftImage` asks
for the smallest scale that still covers the target in both dimensions, so the resize that follows (fastai's
``Resize``) still only shrinks. PNGs and other formats, and JPEGs under twice the target, decode as before. The
pixels differ slightly from full decoding (DCT scaling filters differently), which is why it is a setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastai.data.block import TransformBlock
from fastai.data.transforms import IntToFloatTensor
from fastai.vision.core import PILImage
from PIL import Image

__all__ = ["DraftImage", "draft_image_block", "open_for_size"]


def open_for_size(path: str | os.PathLike, size: int | tuple[int, int] | None) -> Image.Image:
    """The RGB image at `path`, JPEGs decoded at the smallest DCT scale that is still at least `size` (w, h) px."""
    with Image.open(path) as image:
        if size and image.format == "JPEG":
            image.draft("RGB", (size, size) if isinstance(size, int) else tuple(size))
        return image.convert("RGB")  # loads, and detaches the pixels from the file


class DraftImage:
    """fastai type transform: a file path to a `PILImage`, decoded for a model input of `size` px (None: in full).

    Picklable (DataLoader workers, ``learn.export``); anything that is not a path goes to ``PILImage.create``.
    """

    def __init__(self, size: int | None):
        self.size = size

    def __call__(self, item: Any) -> PILImage:
        if isinstance(item, str | Path):
            return PILImage.create(open_for_size(item, self.size))
        return PILImage.create(item)

    def __repr__(self) -> str:
        return f"DraftImage(size={self.size})"


def draft_image_block(size: int | None) -> TransformBlock:
    """An ``ImageBlock`` whose images are decoded with `DraftImage(size)`; ``size=None`` is fastai's own."""
    return TransformBlock(type_tfms=DraftImage(size), batch_tfms=IntToFloatTensor)
