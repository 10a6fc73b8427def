"""Stage 2: a multi-label attribute classifier on each garment's crop (its mask's bounding box plus a margin).

Trained from the ground-truth masks of garments whose category carries attributes in train.csv; one threshold per
attribute is tuned on the validation crops (the one that maximises that attribute's F1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.data.block import DataBlock, MultiCategoryBlock
from fastai.data.transforms import ColReader, IndexSplitter, Normalize, RandomSplitter
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import imagenet_stats
from fastai.vision.data import ImageBlock
from fastai.vision.learner import vision_learner
from PIL import Image

from kaggle_kit.atomic import atomic_open
from kaggle_kit.predict.identity import array_digest, model_digest
from kaggle_kit.train.weights import architecture
from kaggle_kit.vision.metrics import middle_of_best
from kaggle_kit.vision.rle import rle_decode

__all__ = [
    "mask_box", "crop_box", "photo_crops", "build_crops", "stage2_learner", "tune_thresholds", "AttributePredictor",
]  # fmt: skip

MARGIN = 0.1


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of a mask's pixels, bottom/right exclusive; None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def crop_box(box: tuple[int, int, int, int], height: int, width: int, margin: float = MARGIN):
    """`box` grown by `margin` of its size on every side, clipped to the image; PIL order (left, top, right, bottom)."""
    top, left, bottom, right = box
    dy, dx = (bottom - top) * margin, (right - left) * margin
    return (max(0, int(left - dx)), max(0, int(top - dy)), min(width, int(np.ceil(right + dx))),
            min(height, int(np.ceil(bottom + dy))))  # fmt: skip


def photo_crops(
    path: str | os.PathLike, boxes: Sequence[tuple[int, int, int, int]], size: int | None
) -> list[Image.Image]:
    """The `boxes` (PIL order, in the photo's own pixels) cut from the photo at `path`, in RGB.

    With `size`, a JPEG is decoded in draft mode at the smallest DCT scale that keeps every crop at least `size` px
    on each side (the crops are resized to `size` next), and the boxes are scaled to it; None decodes in full.
    """
    with Image.open(path) as opened:
        width, height = opened.size
        if size and boxes and opened.format == "JPEG":
            need_w = max(width * size / max(1, right - left) for left, _top, right, _bottom in boxes)
            need_h = max(height * size / max(1, bottom - top) for _left, top, _right, bottom in boxes)
            opened.draft("RGB", (min(width, int(np.ceil(need_w))), min(height, int(np.ceil(need_h)))))
        image = opened.convert("RGB")
    sx, sy = image.width / width, image.height / height
    crops = []
    for left, top, right, bottom in boxes:
        x0, y0 = int(left * sx), int(top * sy)
        crops.append(
            image.crop((x0, y0, max(x0 + 1, int(np.ceil(right * sx))), max(y0 + 1, int(np.ceil(bottom * sy)))))
        )
    return crops


def build_crops(
    train: pd.DataFrame,
    image_dir: Path,
    size: int,
    cache_dir: str | os.PathLike,
    categories: Sequence[int],
    draft: bool = False,
) -> pd.DataFrame:
    """Save one crop per garment of `categories` (size x size JPEG, outside working/) and return
    (crop path, space-separated attribute ids, ImageId) rows. A photo is decoded only for crops not cached yet, in
    draft mode if `draft` (see `photo_crops`)."""
    out_dir = Path(cache_dir) / (f"crops-{size}" + ("-draft" if draft else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    chosen = train[train["category"].isin(list(categories))]
    for image_id, group in chosen.groupby("ImageId"):
        missing = {}  # crop path -> box, for the crops to make now
        for k, row in enumerate(group.itertuples()):
            path = out_dir / f"{Path(image_id).stem}-{k:03d}.jpg"
            if not path.exists():
                box = mask_box(rle_decode(row.EncodedPixels, (row.Height, row.Width)))
                if box is None:
                    continue
                missing[path] = crop_box(box, row.Height, row.Width)
            rows.append((str(path), " ".join(str(a) for a in row.attributes), image_id))
        if missing:
            crops = photo_crops(image_dir / image_id, list(missing.values()), size if draft else None)
            for path, crop in zip(missing, crops, strict=True):
                with atomic_open(path) as f:  # a kill mid-save must not leave a half crop that exists() accepts
                    crop.resize((size, size)).save(f, format="JPEG", quality=95)
    return pd.DataFrame(rows, columns=["crop", "attributes", "ImageId"])


def stage2_learner(
    crops: pd.DataFrame,
    attribute_ids: Sequence[int],
    size: int,
    bs: int,
    arch: str = "resnet18",
    weights: str | os.PathLike | None = None,
    valid_pct: float = 0.2,
    seed: int = 42,
    valid_images: Sequence[str] | None = None,
):
    """A vision_learner over garment crops; its vocabulary is `attribute_ids` (as strings), in that order.
    `valid_images`: validate on the crops of these photos (stage 1's validation photos, so that no score on them
    comes from a model that trained on them); default a random `valid_pct` of the crops."""
    vocab = [str(a) for a in attribute_ids]
    held = set(valid_images or ())
    if not crops["ImageId"].isin(held).any() or crops["ImageId"].isin(held).all():
        splitter = RandomSplitter(valid_pct, seed=seed)  # nothing (or everything) to hold out by photo
    else:
        splitter = IndexSplitter(np.flatnonzero(crops["ImageId"].isin(held).to_numpy()))
    block = DataBlock(blocks=(ImageBlock, MultiCategoryBlock(vocab=vocab)), get_x=ColReader("crop"),
                      get_y=ColReader("attributes", label_delim=" "), splitter=splitter,
                      item_tfms=Resize(size, method=ResizeMethod.Squish),
                      batch_tfms=Normalize.from_stats(*imagenet_stats))  # fmt: skip
    dls = block.dataloaders(crops, bs=bs, num_workers=0)
    build, pretrained = architecture(arch, weights)
    return vision_learner(dls, build, pretrained=pretrained)  # pretrained: frozen body (fine_tune unfreezes)


def tune_thresholds(probs: np.ndarray, targets: np.ndarray, grid: Sequence[float] | None = None) -> np.ndarray:
    """Per-attribute threshold maximising F1 on validation (`probs`, `targets`: (n, attributes)); 0.5 where an
    attribute never occurs in validation; the middle of the best stretch where F1 is flat (``middle_of_best``)."""
    grid = np.arange(0.05, 0.96, 0.05) if grid is None else np.asarray(grid)
    best = np.full(probs.shape[1], 0.5)
    for a in range(probs.shape[1]):
        truth = targets[:, a] > 0.5
        if not truth.any():
            continue
        f1 = []
        for t in grid:
            pred = probs[:, a] >= t
            tp = (pred & truth).sum()
            f1.append(2 * tp / max(1, pred.sum() + truth.sum()))
        best[a] = middle_of_best(grid, np.asarray(f1))
    return best


class AttributePredictor:
    """Predicts attribute ids for garment crops with a trained stage-2 `model` (its outputs in the order of `vocab`,
    attribute ids; `thresholds` per attribute; crops resized to `size` px), outside fastai's loop: it runs in the
    submission writer's thread while stage 1 predicts the next chunk."""

    def __init__(self, model: torch.nn.Module, vocab: Sequence[int | str], thresholds: np.ndarray, size: int):
        self.model = model.eval()
        self.vocab = [int(v) for v in vocab]
        self.thresholds, self.size = np.asarray(thresholds), size
        self.device = next(self.model.parameters()).device
        self.mean = torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1)
        self.std = torch.tensor(imagenet_stats[1]).view(1, 3, 1, 1)

    def signature(self) -> dict:
        """What decides the attributes: the model's weights, the thresholds, the crop size and the vocabulary."""
        return {"model": model_digest(self.model), "thresholds": array_digest(self.thresholds), "size": self.size,
                "vocab": self.vocab}  # fmt: skip

    def __call__(self, crops: list[Image.Image]) -> list[list[int]]:
        if not crops:
            return []
        arrays = [np.asarray(c.convert("RGB").resize((self.size, self.size)), dtype=np.float32) for c in crops]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
        x = ((x - self.mean) / self.std).to(self.device)
        with torch.no_grad():
            probs = torch.sigmoid(self.model(x)).float().cpu().numpy()
        return [[self.vocab[a] for a in np.flatnonzero(p >= self.thresholds)] for p in probs]
