"""Benchmark: iMaterialist submission rows from model-size probabilities, today's path against the previous one.

The previous path upscaled every instance to a full-size boolean mask (nearest, by index) and RLE-encoded every
pixel of it; ``SubmissionRows`` now encodes each instance straight from its model-size mask (``rle_encode_resized``),
so its work follows the runs written, not the photo's pixel count. One image, 8 garments, 46 channels at 512 px, at
three photo sizes; both paths in the same run, their strings compared.

    .venv/bin/python benchmarks/submission_rows.py
"""

from __future__ import annotations

import platform
import tempfile
import timeit
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from kaggle_kit.imaterialist.masks import resize_nearest
from kaggle_kit.imaterialist.stage2 import mask_box
from kaggle_kit.imaterialist.submission import SubmissionRows
from kaggle_kit.vision.rle import rle_encode

MODEL_SIZE, CHANNELS, GARMENTS = 512, 46, 8


def probabilities(rng: np.random.Generator) -> np.ndarray:
    """46 channels at 512 px: 8 garment-like blobs (ellipses with a sleeve) in random channels, soft edges."""
    prob = np.zeros((CHANNELS, MODEL_SIZE, MODEL_SIZE), dtype=np.float32)
    yy, xx = np.mgrid[0:MODEL_SIZE, 0:MODEL_SIZE]
    for channel in rng.choice(CHANNELS, GARMENTS, replace=False):
        cy, cx = rng.uniform(0.25, 0.75, 2) * MODEL_SIZE
        ry, rx = rng.uniform(0.05, 0.25, 2) * MODEL_SIZE
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        blob[int(cy) : int(cy + ry), int(max(0, cx - rx * 1.3)) : int(max(1, cx - rx * 0.9))] = True
        prob[channel] = ndimage.gaussian_filter(blob.astype(np.float32), 2)
    return prob


def previous_rows(writer: SubmissionRows, path: Path, prob: np.ndarray) -> list[tuple[str, str, str]]:
    """The previous path: each instance upscaled to the photo's size, then encoded (and boxed) pixel by pixel."""
    with Image.open(path) as opened:
        width, height = opened.size
    rows = []
    for channel, category in enumerate(writer.category_ids):
        labels, n = ndimage.label(prob[channel] > writer.post.default.threshold)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        for label in range(1, n + 1):
            if sizes[label] >= writer.post.default.min_area * MODEL_SIZE * MODEL_SIZE:
                mask = resize_nearest(labels == label, height, width)
                mask_box(mask)
                rows.append((path.name, rle_encode(mask), str(category)))
    return rows


def best(fn, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def main() -> None:
    rng = np.random.default_rng(0)
    prob = probabilities(rng)
    writer = SubmissionRows(list(range(CHANNELS)), None, threshold=0.5, min_area=0.0005)
    print(f"Machine: {platform.machine()}, numpy {np.__version__}; one image, {GARMENTS} garments, "
          f"{CHANNELS} channels at {MODEL_SIZE} px\n")  # fmt: skip
    print("| photo | previous path | SubmissionRows | speed-up | rows | same strings |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for height, width in ((1000, 700), (3000, 2000), (5000, 3500)):
            path = Path(tmp) / f"{width}x{height}.jpg"
            Image.new("RGB", (width, height)).save(path)  # only the header is read
            new, old = writer.image_rows(path, prob), previous_rows(writer, path, prob)
            t_old = best(lambda p=path: previous_rows(writer, p, prob), repeat=3)
            t_new = best(lambda p=path: writer.image_rows(p, prob))
            print(f"| {width}x{height} | {t_old * 1e3:.0f} ms | {t_new * 1e3:.1f} ms | {t_old / t_new:.1f}x | "
                  f"{len(new)} | {new == old} |")  # fmt: skip


if __name__ == "__main__":
    main()
