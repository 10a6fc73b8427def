"""Small synthetic image sets whose labels a tiny model can learn in seconds: for tests, the demo and benchmarks.

Each image is a coloured square (red or blue, big or small) on dark noise; its mask marks the square's pixels
with 1 (red) or 2 (blue). Names carry the labels: ``<index>_<colour>_<big|small>.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["make_colour_squares", "make_class_folders", "COLOURS", "label_of"]

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def label_of(path: str | os.PathLike) -> str:
    """The colour label encoded in a synthetic image's name."""
    return Path(path).name.split("_")[1]


def make_colour_squares(
    folder: str | os.PathLike, n: int, size: int = 32, seed: int = 0, masks: bool = True
) -> list[Path]:
    """Write `n` PNGs of `size` x `size` pixels into `folder` (and their masks into folder/masks); return the paths.

    The same `seed` gives byte-identical files.
    """
    from PIL import Image

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if masks:
        (folder / "masks").mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        colour = ["red", "blue"][i % 2]
        big = bool(rng.integers(2))
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        side = size * 3 // 4 if big else max(1, size // 3)
        y, x = rng.integers(0, size - side + 1, 2)
        img[y : y + side, x : x + side] = COLOURS[colour]
        path = folder / f"{i:05d}_{colour}_{'big' if big else 'small'}.png"
        Image.fromarray(img).save(path)
        if masks:
            mask = np.zeros((size, size), dtype=np.uint8)
            mask[y : y + side, x : x + side] = 1 if colour == "red" else 2
            Image.fromarray(mask).save(folder / "masks" / path.name)
        paths.append(path)
    return paths


def make_class_folders(dest: str | os.PathLike, n_train: int, n_test: int, seed: int = 0) -> list[Path]:
    """A classification dataset as Kagglers get it, for the classification kernels: ``dest/train/<colour>/*.png``
    (`n_train` images, labelled by their folder) and ``dest/test/*.png`` (`n_test`, unlabelled); returns the test
    images. The same `seed` gives byte-identical files."""
    dest = Path(dest)
    for path in make_colour_squares(dest / "train", n_train, seed=seed + 1, masks=False):
        target = dest / "train" / label_of(path) / path.name
        target.parent.mkdir(exist_ok=True)
        path.rename(target)
    return make_colour_squares(dest / "test", n_test, seed=seed + 2, masks=False)
