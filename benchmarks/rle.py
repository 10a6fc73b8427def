"""Benchmark: kk.rle_encode / kk.rle_decode against the classic Kaggle snippets, on garment-like masks.

The classic encoder copies the mask into column order, pads it, then looks for changes; the classic decoder paints
each run in a Python loop. Masks: ellipses and boxes at iMaterialist-like sizes (the images are often several
thousand pixels a side).

    .venv/bin/python benchmarks/rle.py
"""

from __future__ import annotations

import platform
import timeit

import numpy as np

from kaggle_kit.vision.rle import rle_decode, rle_encode


def classic_encode(mask):
    pixels = mask.T.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def classic_decode(rle, shape):
    s = rle.split()
    starts, lengths = (np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2]))
    starts -= 1
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, starts + lengths, strict=True):
        img[lo:hi] = 1
    return img.reshape(shape[1], shape[0]).T


def garment(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    ry, rx = rng.uniform(0.15, 0.35) * height, rng.uniform(0.15, 0.35) * width
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    mask[int(cy) : int(cy + ry), int(cx - rx * 1.2) : int(cx - rx * 0.8)] = True  # a sleeve-like box
    return mask


def best(fn, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"Machine: {platform.machine()}, numpy {np.__version__}\n")
    print("| mask | classic encode | kk.rle_encode | speed-up | classic decode | kk.rle_decode | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for height, width in ((512, 512), (1500, 1000), (3000, 2000), (5000, 3500)):
        mask = garment(height, width, rng)
        mask_u8 = mask.astype(np.uint8)
        rle = rle_encode(mask)
        assert rle == classic_encode(mask_u8)
        assert np.array_equal(rle_decode(rle, mask.shape), classic_decode(rle, mask.shape).astype(bool))
        ce, ke = best(lambda m=mask_u8: classic_encode(m)), best(lambda m=mask: rle_encode(m))
        cd = best(lambda r=rle, s=mask.shape: classic_decode(r, s))
        kd = best(lambda r=rle, s=mask.shape: rle_decode(r, s))
        print(
            f"| {height}x{width}, {len(rle.split()) // 2} runs | {ce * 1e3:.2f} ms | {ke * 1e3:.2f} ms | "
            f"{ce / ke:.1f}x | {cd * 1e3:.2f} ms | {kd * 1e3:.2f} ms | {cd / kd:.1f}x |"
        )


if __name__ == "__main__":
    main()
