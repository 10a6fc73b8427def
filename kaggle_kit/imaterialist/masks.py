"""Training masks for stage 1: every object's RLE decoded and stacked into one multi-label mask per image.

Overlapping objects (a sleeve on a top) keep both labels: channel c is 1 where category c is present. Masks are
made once per training size and cached outside working/ (they are not outputs), bit-packed: 46 channels of 224 x 224
pixels take 288 KB per image.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.torch_core import TensorBase

from kaggle_kit.vision.rle import nearest_index, rle_decode

__all__ = ["MultiLabelMask", "MaskCache", "dataset_cache_dir", "resize_nearest", "instance_masks"]


class MultiLabelMask(TensorBase):
    """A (categories, height, width) float mask: 1 where the category covers the pixel."""

    def show(self, ctx=None, **kwargs):
        """Draw over the image as fastai draws a segmentation mask (``show_batch``): each pixel coloured by the
        first category covering it, uncovered pixels clear."""
        from fastai.vision.core import show_image

        mask = torch.as_tensor(self).detach().cpu().float()
        labels = mask.argmax(0) + 1
        labels[mask.sum(0) == 0] = 0
        shown = labels.float().masked_fill(labels == 0, float("nan"))  # NaN: not drawn, the image shows through
        return show_image(shown, ctx=ctx, **{"cmap": "tab20", "alpha": 0.5, "vmin": 1, "vmax": mask.shape[0],
                                             **kwargs})  # fmt: skip


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array by index sampling (pixel centres), any scale."""
    rows, cols = nearest_index(mask.shape[0], height), nearest_index(mask.shape[1], width)
    return mask[rows[:, None], cols[None, :]]


def dataset_cache_dir(data: str | os.PathLike) -> Path:
    """Where masks and crops of the competition data in `data` are cached: a temp folder (never an output) named
    by the data's path and its train.csv's size and time, so another dataset never reads these files."""
    train_csv = (Path(data) / "train.csv").stat()
    key = f"{Path(data).resolve()}:{train_csv.st_size}:{train_csv.st_mtime_ns}"
    return Path(tempfile.gettempdir()) / "kaggle-kit-imaterialist" / hashlib.sha1(key.encode()).hexdigest()[:12]


class MaskCache:
    """Builds and loads the multi-label training masks of each image at `size` x `size` pixels.

    `train`: the validated train.csv frame; `category_ids`: the channel order. Called with an image path, returns its
    MultiLabelMask (this is the DataBlock's y getter; picklable for DataLoader workers).
    """

    def __init__(self, train: pd.DataFrame, category_ids: list[int], size: int, cache_dir: str | os.PathLike):
        self.size, self.category_ids = size, list(category_ids)
        self.cache_dir = Path(cache_dir) / f"masks-{size}"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._channel = {c: i for i, c in enumerate(self.category_ids)}
        self._rows = {k: list(zip(g["EncodedPixels"], g["Height"], g["Width"], g["category"], strict=True))
                      for k, g in train.groupby("ImageId")}  # fmt: skip

    def __call__(self, image_path: str | os.PathLike) -> MultiLabelMask:
        image_id = Path(image_path).name
        file = self.cache_dir / f"{image_id}.npy"
        n = len(self.category_ids)
        if file.exists():
            packed = np.load(file)
        else:
            packed = np.packbits(self.build(image_id), axis=None)
            tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp.npy")
            np.save(tmp, packed)
            os.replace(tmp, file)  # several DataLoader workers may build the same mask: last one wins, intact
        bits = np.unpackbits(packed, count=n * self.size * self.size).reshape(n, self.size, self.size)
        return MultiLabelMask(torch.from_numpy(bits.astype(np.float32)))

    def build(self, image_id: str) -> np.ndarray:
        """The (categories, size, size) uint8 mask of `image_id`, from its train.csv rows."""
        mask = np.zeros((len(self.category_ids), self.size, self.size), dtype=np.uint8)
        for rle, height, width, category in self._rows.get(image_id, []):
            small = resize_nearest(rle_decode(rle, (height, width)), self.size, self.size)
            mask[self._channel[category]] |= small
        return mask


def instance_masks(rows: pd.DataFrame, height: int, width: int) -> dict[int, list[np.ndarray]]:
    """Category id -> the true instance masks of one image's train.csv `rows`, resized to (height, width) the way
    the model's input is squished (nearest, by index)."""
    out: dict[int, list[np.ndarray]] = {}
    for rle, h, w, category in zip(rows["EncodedPixels"], rows["Height"], rows["Width"], rows["category"], strict=True):
        out.setdefault(int(category), []).append(resize_nearest(rle_decode(rle, (h, w)), height, width).astype(bool))
    return out
