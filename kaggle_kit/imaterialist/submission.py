"""From stage-1 probabilities to submission rows: instances at each image's original size, with stage-2 attributes.

Per image and category: threshold the probability map at the model's size, split it into instances and drop the
small ones (``postprocess.PostProcessing``: per-category rules, tuned on validation), and RLE-encode each as it
would be scaled to the original size (nearest, by index), straight from the model-size mask
(``rle_encode_resized``: no full-size array). Garments of categories that carry attributes get them from stage 2, on
a crop of the original image. Nothing is kept beyond the current chunk: the rows go to the CSV as they are made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from kaggle_kit.errors import UsageError
from kaggle_kit.imaterialist.data import format_class_id
from kaggle_kit.imaterialist.postprocess import CategoryRule, PostProcessing
from kaggle_kit.imaterialist.stage2 import crop_box, mask_box, photo_crops
from kaggle_kit.predict.identity import callable_identity
from kaggle_kit.vision.rle import nearest_index, rle_encode_resized

__all__ = ["SubmissionRows", "COLUMNS"]

log = logging.getLogger(__name__)

COLUMNS = ["ImageId", "EncodedPixels", "ClassId"]


class SubmissionRows:
    """The `to_rows(items, probs)` of a `CsvSink` writing the submission.

    `category_ids`: the stage-1 channel order. `attributes`: a callable from crops to attribute id lists (stage 2),
    applied to instances of `attribute_categories`. `threshold`: probability above which a pixel belongs to a
    category. `min_area`: smallest instance kept, as a share of the model-size image. `post`: per-category rules
    (``PostProcessing``, e.g. tuned on validation) instead of one `threshold` and `min_area`. `fallback_class`: the
    category of the row written for an image where nothing was found (every test image must appear). `crop_size`: the
    attribute model's input size; given, photos are decoded for crops in JPEG draft mode (``stage2.photo_crops``).
    """

    def __init__(
        self,
        category_ids: Sequence[int],
        attributes: Callable[[list[Image.Image]], list[list[int]]] | None,
        attribute_categories: Sequence[int] = (),
        threshold: float = 0.5,
        min_area: float = 0.002,
        fallback_class: int = 23,
        crop_size: int | None = None,
        post: PostProcessing | None = None,
    ):
        self.category_ids = list(category_ids)
        self.post = post or PostProcessing(self.category_ids, CategoryRule(threshold, min_area))
        if self.post.category_ids != self.category_ids:
            raise UsageError("post.category_ids must be the stage-1 channel order given as category_ids")
        self.attributes = attributes
        self.attribute_categories = set(attribute_categories)
        self.fallback_class = fallback_class
        self.crop_size = crop_size

    def signature(self) -> dict:
        """The settings that decide the rows (what identifies this writer when a submission resumes)."""
        return {
            "category_ids": self.category_ids,
            "attributes": callable_identity(self.attributes, "attributes"),
            "attribute_categories": sorted(self.attribute_categories),
            "post": self.post.signature(),
            "fallback_class": int(self.fallback_class),
            "crop_size": self.crop_size,
        }

    def __call__(self, items: Sequence[Path], probs: np.ndarray) -> list[tuple[str, str, str]]:
        rows = []
        for path, prob in zip(items, probs, strict=True):
            rows += self.image_rows(Path(path), prob)
        return rows

    def image_rows(self, path: Path, prob: np.ndarray) -> list[tuple[str, str, str]]:
        """The rows of one image (at least one)."""
        image_id = path.name
        if np.isnan(prob).all():  # unreadable image: still one row, so the submission is complete
            return [(image_id, "1 1", str(self.fallback_class))]
        with Image.open(path) as opened:  # the header only: the photo is decoded below if crops are needed
            width, height = opened.size
        found = []  # (category, RLE, box at the original size)
        for category, small in self.instances(prob):
            rle = rle_encode_resized(small, height, width)  # no full-size mask: work follows the runs written
            if rle:  # an instance too small to cover one pixel of a smaller photo writes nothing
                found.append((category, rle, _resized_box(mask_box(small), small.shape, height, width)))
        needs_attrs = [i for i, (c, _rle, _box) in enumerate(found) if c in self.attribute_categories]
        attrs: dict[int, list[int]] = {}
        if needs_attrs and self.attributes is not None:
            boxes = [crop_box(found[i][2], height, width) for i in needs_attrs]
            attrs = dict(zip(needs_attrs, self.attributes(photo_crops(path, boxes, self.crop_size)), strict=True))
        rows = [(image_id, rle, format_class_id(c, attrs.get(i, ()))) for i, (c, rle, _box) in enumerate(found)]
        return rows or [(image_id, "1 1", str(self.fallback_class))]

    def instances(self, prob: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(category id, model-size boolean mask) of each instance found in one image's probabilities, one by one."""
        return self.post.instances(prob)


def _resized_box(box: tuple[int, int, int, int], shape: tuple[int, int], height: int, width: int):
    """`mask_box` of the mask resized to (height, width) by `nearest_index`, from the small mask's box."""
    top, left, bottom, right = box
    rows, cols = nearest_index(shape[0], height), nearest_index(shape[1], width)
    first_row = np.searchsorted(rows, [top, bottom], side="left")
    first_col = np.searchsorted(cols, [left, right], side="left")
    return int(first_row[0]), int(first_col[0]), int(first_row[1]), int(first_col[1])
