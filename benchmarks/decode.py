"""Benchmark: decoding a photo for a 512-px model, JPEG draft mode (kaggle_kit.vision.images) against a full decode.

Both paths end in the same 512x512 resize; the table gives their times in one run and how far the pixels differ
(mean absolute difference, 0-255). PNG and small JPEGs are decoded in full either way.

    .venv/bin/python benchmarks/decode.py
"""

from __future__ import annotations

import platform
import tempfile
import timeit
from pathlib import Path

import numpy as np
from PIL import Image

from kaggle_kit.vision.images import open_for_size

TARGET = 512


def photo(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Smooth colour fields with detail: a JPEG of it compresses like a photo, not like noise or a flat image."""
    coarse = (rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.BILINEAR)


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"Machine: {platform.machine()}; decode + resize to {TARGET}x{TARGET}\n")
    print("| photo | full decode | draft decode | speed-up | mean abs pixel difference |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for width, height, fmt in ((5000, 3500, "JPEG"), (2000, 3000, "JPEG"), (700, 1000, "JPEG"),
                                   (2000, 3000, "PNG")):  # fmt: skip
            path = Path(tmp) / f"{width}x{height}.{fmt.lower()}"
            photo(width, height, rng).save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))

            def full(p=path):
                with Image.open(p) as image:
                    return image.convert("RGB").resize((TARGET, TARGET), Image.BILINEAR)

            def draft(p=path):
                return open_for_size(p, TARGET).resize((TARGET, TARGET), Image.BILINEAR)

            t_full = min(timeit.repeat(full, number=1, repeat=5))
            t_draft = min(timeit.repeat(draft, number=1, repeat=5))
            diff = np.abs(np.asarray(full(), dtype=float) - np.asarray(draft(), dtype=float)).mean()
            print(f"| {width}x{height} {fmt} | {t_full * 1e3:.0f} ms | {t_draft * 1e3:.0f} ms | "
                  f"{t_full / t_draft:.1f}x | {diff:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
