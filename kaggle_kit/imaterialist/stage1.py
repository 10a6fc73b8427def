"""Stage 1: a fastai unet that predicts, for every pixel, which garment categories cover it (one sigmoid each).

Per-pixel multi-label rather than one class per pixel (seed 002's choice): parts overlap garments (a sleeve is also
top), and a softmax would have to drop one of them. Trained with progressive resizing (e.g. 224 -> 512 px).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from fastai.data.block import DataBlock, TransformBlock
from fastai.data.transforms import Normalize, RandomSplitter
from fastai.learner import Learner
from fastai.torch_core import params
from fastai.vision.augment import RandTransform, Resize, ResizeMethod
from fastai.vision.core import imagenet_stats
from fastai.vision.learner import _default_meta, create_body, model_meta, unet_learner
from PIL import Image

from kaggle_kit.errors import UsageError
from kaggle_kit.imaterialist.light_unet import LightUnet
from kaggle_kit.imaterialist.masks import MaskCache, MultiLabelMask
from kaggle_kit.train.guard import TrainingError
from kaggle_kit.train.weights import architecture
from kaggle_kit.vision.images import draft_image_block

__all__ = [
    "stage1_dataloaders",
    "stage1_learner",
    "image_pipeline",
    "MultiLabelSegLoss",
    "positive_weights",
    "predict_probabilities",
    "fit_progressive",
    "TrainingCrop",
]


DECODERS = ("fastai", "light")


class MultiLabelSegLoss:
    """Per-pixel binary cross-entropy plus a soft Dice term per category channel.

    Garments cover a small share of the pixels of 46 mostly empty channels: cross-entropy alone settles on "nothing
    anywhere"; the Dice term rewards overlap with the objects that are there. Options for small objects:
    `dice="image"` takes Dice per image and channel where the category is present (a shoe counts as much as the dress
    beside it; "batch" pools the batch's pixels per channel, where big garments dominate); `focal_gamma` > 0 turns
    cross-entropy into the focal loss (easy background pixels count less); `pos_weight`: one weight per channel
    for positive pixels (see ``positive_weights``). Sigmoid activation; decodes at `thresh`.
    """

    def __init__(
        self,
        thresh: float = 0.5,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        dice: str = "batch",
        focal_gamma: float = 0.0,
        pos_weight: Sequence[float] | None = None,
    ):
        if dice not in ("batch", "image"):
            raise UsageError(f"dice={dice!r}; expected 'batch' or 'image'")
        self.thresh, self.dice_weight, self.smooth, self.dice = thresh, dice_weight, smooth, dice
        self.focal_gamma = focal_gamma
        self.pos_weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float(), target.float()
        weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)[:, None, None]
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=weight,
                                                                   reduction="none")  # fmt: skip
        probs = torch.sigmoid(logits)
        if self.focal_gamma:
            p_true = probs * target + (1 - probs) * (1 - target)
            bce = bce * (1 - p_true).pow(self.focal_gamma)
        dims = (0, 2, 3) if self.dice == "batch" else (2, 3)
        inter, total = (probs * target).sum(dims), probs.sum(dims) + target.sum(dims)
        present = target.sum(dims) > 0
        dice = 1 - (2 * inter + self.smooth) / (total + self.smooth)
        dice = dice[present].mean() if present.any() else dice.mean() * 0
        return bce.mean() + self.dice_weight * dice

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    def decodes(self, x: torch.Tensor) -> torch.Tensor:
        return x > self.thresh


def positive_weights(train: pd.DataFrame, category_ids: Sequence[int], cap: float = 30.0) -> list[float]:
    """Per category channel, a weight for its positive pixels: sqrt(negative / positive) pixel share over the
    training images (from the RLE run lengths, nothing decoded), between 1 and `cap`; 1 for absent categories."""
    covered = dict.fromkeys(category_ids, 0.0)
    pixels = float((train.groupby("ImageId")[["Height", "Width"]].first().prod(axis=1)).sum())
    for rle, category in zip(train["EncodedPixels"], train["category"], strict=True):
        covered[int(category)] = covered.get(int(category), 0.0) + sum(map(int, rle.split()[1::2]))
    out = []
    for category in category_ids:
        share = covered[category] / pixels if pixels else 0.0
        out.append(float(min(cap, max(1.0, ((1 - share) / share) ** 0.5))) if share > 0 else 1.0)
    return out


class TrainingCrop(RandTransform):
    """A random `size` x `size` window of the resized image and its mask, in training only; validation and test
    images stay whole (the unet is fully convolutional). Trains at a higher resolution for the cost of `size`:
    small parts get more pixels, each step sees part of the photo."""

    split_idx, order = 0, 2  # training only; after Resize (order 1)

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def before_call(self, b, split_idx: int) -> None:
        super().before_call(b, split_idx)
        width, height = b[0].size
        self.left = random.randint(0, max(0, width - self.size))
        self.top = random.randint(0, max(0, height - self.size))

    def encodes(self, x: Image.Image):  # no return annotation: fastai would cast PILImage to a plain Image
        return x.crop((self.left, self.top, self.left + self.size, self.top + self.size))

    def encodes(self, x: MultiLabelMask):  # noqa: F811 (fastai dispatches on the annotation)
        return x[..., self.top : self.top + self.size, self.left : self.left + self.size]


def stage1_dataloaders(
    image_dir: Path,
    train: pd.DataFrame,
    category_ids: Sequence[int],
    size: int,
    bs: int,
    cache_dir: str | os.PathLike,
    valid_pct: float = 0.2,
    seed: int = 42,
    num_workers: int = 0,
    image_ids: Sequence[str] | None = None,
    draft: bool = False,
    train_crop: int | None = None,
):
    """DataLoaders of (image, MultiLabelMask) at `size` px, images squished like their masks.

    `train_crop`: train on random `train_crop` px windows of the `size` px images (``TrainingCrop``; None or a
    crop at least `size`: whole images); validation and test stay whole at `size`.
    `draft`: decode JPEGs at the smallest DCT scale that still covers `size` (``kaggle_kit.vision.images``), for
    training and for every test DataLoader made from these; False (the default) decodes in full.
    """
    ids = sorted(train["ImageId"].unique()) if image_ids is None else list(image_ids)
    masks = MaskCache(train, category_ids, size, cache_dir)
    images, item_tfms, batch_tfms = image_pipeline(size, draft)
    crop = [TrainingCrop(train_crop)] if train_crop and train_crop < size else []
    block = DataBlock(blocks=(images, TransformBlock(type_tfms=[masks])), get_x=lambda i: image_dir / i,
                      get_y=lambda i: image_dir / i, splitter=RandomSplitter(valid_pct, seed=seed),
                      item_tfms=item_tfms + crop, batch_tfms=batch_tfms)  # fmt: skip
    return block.dataloaders(ids, bs=bs, num_workers=num_workers)


def image_pipeline(size: int, draft: bool) -> tuple[Any, list, list]:
    """Stage 1's images as the model sees them: (ImageBlock, item transforms, batch transforms), JPEGs decoded at the
    DCT scale nearest `size` px when `draft`, squished to `size`, normalised with ImageNet statistics. The one
    definition that training's DataLoaders and a model folder's test DataLoaders share."""
    return (draft_image_block(size if draft else None), [Resize(size, method=ResizeMethod.Squish)],
            [Normalize.from_stats(*imagenet_stats)])  # fmt: skip


def stage1_learner(
    dls,
    n_categories: int,
    arch: str = "resnet34",
    weights: str | os.PathLike | None = None,
    loss: MultiLabelSegLoss | None = None,
    cut: int | None = None,
    last_cross: bool = True,
    decoder: str = "fastai",
):
    """The unet: `n_categories` sigmoid channels, encoder `arch` (random, or pretrained from a local `weights` file:
    then frozen, see ``architecture``), `loss` (default ``MultiLabelSegLoss()``). `cut` and `last_cross` are
    fastai's: `cut=-3` ends a resnet encoder after its third stage and `last_cross=False` drops the full-resolution
    block; together 3.9x less compute per image (resnet18 at 128 px), what makes a CPU run of minutes possible.
    `decoder`: "fastai" (fastai's ``DynamicUnet``) or "light" (``LightUnet``: the same encoder, a decoder with a
    fifth of the compute; `last_cross` does not apply)."""
    if decoder not in DECODERS:
        raise UsageError(f"decoder={decoder!r}; expected one of {DECODERS}")
    build, pretrained = architecture(arch, weights)
    loss = loss or MultiLabelSegLoss()
    if decoder == "fastai":
        return unet_learner(dls, build, pretrained=pretrained, n_out=n_categories, loss_func=loss, cut=cut,
                            last_cross=last_cross)  # fmt: skip
    meta = model_meta.get(build, _default_meta)
    encoder = create_body(build(weights=meta.get("weights", "DEFAULT") if pretrained else None), 3, pretrained,
                          meta["cut"] if cut is None else cut)  # fmt: skip
    learn = Learner(dls, LightUnet(encoder, n_categories), loss_func=loss, splitter=_light_unet_groups)
    if pretrained:
        learn.freeze()
    return learn


def fit_progressive(
    learn: Learner,
    dls_at: Callable[[int], object],
    sizes: Sequence[int],
    epochs: Sequence[int],
    lrs: Sequence[float],
    deadline,
    *,
    pretrained: bool = False,
    freeze_epochs: int = 1,
) -> bool:
    """Stage 1's training with progressive resizing: for each size (pixels), ``learn.dls = dls_at(size)`` and one
    ``fit_one_cycle(epochs[i], lrs[i])``. `pretrained`: the encoder is frozen for `freeze_epochs` at the first size,
    then unfrozen and trained with discriminative learning rates (``slice(lr / 10, lr)``). `deadline`: the
    ``kk.Deadline`` in ``learn.cbs``; the same calls in the same order on every run is what lets it resume.
    Returns False when the deadline stopped training (checkpointed: run again to resume). A ``TrainingError``
    names the size."""
    for i, (size, n_epochs, lr) in enumerate(zip(sizes, epochs, lrs, strict=True)):
        learn.dls = dls_at(size)
        fits = [(freeze_epochs, lr)] if pretrained and i == 0 and freeze_epochs else []
        fits.append((n_epochs, slice(lr / 10, lr) if pretrained else lr))
        for j, (n, rate) in enumerate(fits):
            if pretrained and j == len(fits) - 1:
                learn.unfreeze()
            try:
                learn.fit_one_cycle(n, rate)
            except TrainingError as exc:
                raise TrainingError(f"stage 1 at {size} px: {exc.message}", exc.value) from exc
            if deadline.stopped:
                return False
    return True


def _light_unet_groups(model: LightUnet) -> list:
    """Parameter groups as fastai's unet splits them: the encoder (frozen while pretrained), then the rest."""
    return [params(model.encoder), params(model.decoder) + params(model.head)]


def predict_probabilities(learn, files: Sequence[Path], flip: bool = False):
    """(file, (categories, size, size) float32 probabilities) for each of `files`, in order, one batch in memory at
    a time. `flip`: average with the prediction on the horizontally flipped image (flipped back)."""
    dl = learn.dls.test_dl(list(files), num_workers=0)
    model = learn.model.eval()
    files = iter(files)
    with torch.inference_mode():
        for batch in dl:
            x = batch[0]
            probs = torch.sigmoid(model(x))
            if flip:
                probs = (probs + torch.sigmoid(model(x.flip(-1))).flip(-1)) / 2
            for prob in probs.float().cpu().numpy():
                yield next(files), prob
