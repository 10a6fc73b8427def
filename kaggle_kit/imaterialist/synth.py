"""A synthetic dataset in exactly the iMaterialist-fashion-2019 format, learnable by a small model in minutes.

Garments have a category learnable from shape (a top with sleeves, pants, a skirt, a shoe) and attributes learnable
from colour and texture (a colour attribute always; "striped" or "dotted" sometimes). Parts overlap their garment as
in the real data: the top's sleeves and neckline, pockets on tops and pants. Written: label_descriptions.json (all 46
categories, `n_attributes` generic attributes), train.csv, train/*.jpg, test/*.jpg, sample_submission.csv, and, for
local scoring only (the real competition has no such file), synthetic_test_solution.csv.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from kaggle_kit.errors import UsageError
from kaggle_kit.imaterialist.realistic import draw_realistic, photo_size
from kaggle_kit.vision.rle import rle_encode

__all__ = ["make_dataset", "CATEGORY_NAMES", "SOLUTION_NAME", "PROFILES"]

CATEGORY_NAMES = [
    "shirt, blouse", "top, t-shirt, sweatshirt", "sweater", "cardigan", "jacket", "vest", "pants", "shorts", "skirt",
    "coat", "dress", "jumpsuit", "cape", "glasses", "hat", "headband, head covering, hair accessory", "tie", "glove",
    "watch", "belt", "leg warmer", "tights, stockings", "sock", "shoe", "bag, wallet", "scarf", "umbrella", "hood",
    "collar", "lapel", "epaulette", "sleeve", "pocket", "neckline", "buckle", "zipper", "applique", "bead", "bow",
    "flower", "fringe", "ribbon", "rivet", "ruffle", "sequin", "tassel",
]  # fmt: skip
_SUPER = (["upperbody"] * 6 + ["lowerbody"] * 3 + ["wholebody"] * 4 + ["head"] * 3 + ["neck"] + ["arms and hands"] * 2
          + ["waist"] + ["legs and feet"] * 4 + ["others", "neck", "others"] + ["garment parts"] * 7 + ["closures"] * 2
          + ["decorations"] * 10)  # fmt: skip
SOLUTION_NAME = "synthetic_test_solution.csv"
PROFILES = {"easy": (96, 160), "realistic": (100, 3000)}  # name -> default (min_size, max_size), pixels
TOP, PANTS, SKIRT, SHOE, SLEEVE, POCKET, NECKLINE = 1, 6, 8, 23, 31, 32, 33
COLOURS = {0: (200, 40, 40), 1: (40, 60, 200), 2: (40, 160, 60)}  # attribute id -> RGB
STRIPED, DOTTED = 3, 4


def make_dataset(
    dest: str | os.PathLike,
    n_train: int = 120,
    n_test: int = 30,
    min_size: int | None = None,
    max_size: int | None = None,
    n_attributes: int = 92,
    seed: int = 0,
    profile: str = "easy",
) -> Path:
    """Write a synthetic competition folder at `dest` and return it; the same `seed` gives the same files.

    `profile`: "easy" (this module's garments: 4.5 objects per image, median 2.8% of the image; sides random in
    [min_size, max_size] pixels, default 96-160) or "realistic" (``kaggle_kit.imaterialist.realistic``: dressed
    people, ~9 objects per image, mostly small parts, touching and occluded instances; long side log-uniform in
    [min_size, max_size], default 100-3000 pixels).
    """
    if profile not in PROFILES:
        raise UsageError(f"profile={profile!r}; expected one of {', '.join(PROFILES)}")
    min_size = min_size or PROFILES[profile][0]
    max_size = max_size or max(PROFILES[profile][1], min_size)
    dest = Path(dest)
    rng = np.random.default_rng(seed)
    (dest / "train").mkdir(parents=True, exist_ok=True)
    (dest / "test").mkdir(exist_ok=True)
    _write_labels(dest / "label_descriptions.json", n_attributes)
    for split, n, csv_name in (("train", n_train, "train.csv"), ("test", n_test, SOLUTION_NAME)):
        with open(dest / csv_name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["ImageId", "EncodedPixels", "Height", "Width", "ClassId"])
            for i in range(n):
                image_id = f"{split}{i:05d}{rng.integers(16**8):08x}.jpg"
                if profile == "realistic":
                    image, objects = draw_realistic(rng, *photo_size(rng, min_size, max_size), COLOURS)
                else:
                    image, objects = _draw_image(
                        rng, int(rng.integers(min_size, max_size + 1)), int(rng.integers(min_size, max_size + 1))
                    )
                _save_jpeg(image, dest / split / image_id)
                for mask, class_id in objects:
                    writer.writerow([image_id, rle_encode(mask), mask.shape[0], mask.shape[1], class_id])
    test_ids = sorted(p.name for p in (dest / "test").glob("*.jpg"))
    with open(dest / "sample_submission.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "EncodedPixels", "ClassId"])
        writer.writerows([image_id, "1 1", "23"] for image_id in test_ids)
    return dest


def _write_labels(path: Path, n_attributes: int) -> None:
    names = {0: "red (colour)", 1: "blue (colour)", 2: "green (colour)", STRIPED: "striped (textile pattern)",
             DOTTED: "dotted (textile pattern)"}  # fmt: skip
    labels = {
        "info": {"year": 2019, "version": "synthetic", "description": "kaggle_kit synthetic iMaterialist-2019"},
        "categories": [{"id": i, "name": n, "supercategory": _SUPER[i], "level": 1 if i < 27 else 2}
                       for i, n in enumerate(CATEGORY_NAMES)],
        "attributes": [{"id": i, "name": names.get(i, f"attribute {i:02d}"), "supercategory": "synthetic",
                        "level": 1} for i in range(n_attributes)],
    }  # fmt: skip
    path.write_text(json.dumps(labels, indent=1))


def _draw_image(rng: np.random.Generator, height: int, width: int):
    image = rng.integers(150, 235, (height, width, 3)).astype(np.uint8)
    n_garments = int(rng.integers(1, 4))
    slot_w = width / n_garments
    kinds = rng.choice([TOP, PANTS, SKIRT, SHOE], size=n_garments)
    objects = []
    yy, xx = np.mgrid[0:height, 0:width]
    for k, kind in enumerate(kinds):
        x0 = int(k * slot_w + rng.uniform(0.05, 0.15) * slot_w)
        x1 = int((k + 1) * slot_w - rng.uniform(0.05, 0.15) * slot_w)
        y0, y1 = int(rng.uniform(0.05, 0.2) * height), int(rng.uniform(0.8, 0.95) * height)
        colour = int(rng.integers(0, 3))
        texture = int(rng.choice([-1, STRIPED, DOTTED]))
        garment, parts = _shape(kind, yy, xx, x0, x1, y0, y1, rng)
        _paint(image, garment, COLOURS[colour], texture, yy, xx)
        attrs = [colour] + ([texture] if texture >= 0 else [])
        objects.append((garment, "_".join(map(str, [int(kind), *sorted(attrs)])) if kind != SHOE else str(SHOE)))
        for part_kind, part in parts:
            if part_kind == POCKET:
                image[part] = (image[part] * 0.6).astype(np.uint8)  # a darker patch: visible, learnable
            elif part_kind == NECKLINE:
                image[part] = (235, 225, 200)
            objects.append((part, str(part_kind)))
    return image, objects


def _shape(kind, yy, xx, x0, x1, y0, y1, rng):
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    parts = []
    if kind == TOP:  # a body with a sleeve on each side (the sleeves are part of the top and objects of their own)
        body = (xx >= x0 + w * 0.25) & (xx < x1 - w * 0.25) & (yy >= y0) & (yy < y0 + h * 0.7)
        left = (xx >= x0) & (xx < x0 + w * 0.25) & (yy >= y0) & (yy < y0 + h * 0.35)
        right = (xx >= x1 - w * 0.25) & (xx < x1) & (yy >= y0) & (yy < y0 + h * 0.35)
        garment = body | left | right
        parts += [(SLEEVE, left), (SLEEVE, right)]
        neck = ((xx - cx) ** 2 / max(1.0, (w * 0.12) ** 2) + (yy - y0) ** 2 / max(1.0, (h * 0.08) ** 2)) <= 1
        parts.append((NECKLINE, neck & garment))
        if rng.random() < 0.5:
            parts.append((POCKET, _box(yy, xx, y0 + h * 0.4, cx + w * 0.05, h * 0.12, w * 0.12) & body))
    elif kind == PANTS:  # two legs joined at the waist
        waist = (xx >= x0 + w * 0.15) & (xx < x1 - w * 0.15) & (yy >= y0) & (yy < y0 + h * 0.25)
        legs = (yy >= y0) & (yy < y1) & (((xx >= x0 + w * 0.15) & (xx < cx - w * 0.05)) |
                                         ((xx >= cx + w * 0.05) & (xx < x1 - w * 0.15)))  # fmt: skip
        garment = waist | legs
        if rng.random() < 0.5:
            parts.append((POCKET, _box(yy, xx, y0 + h * 0.1, x0 + w * 0.2, h * 0.1, w * 0.15) & garment))
    elif kind == SKIRT:  # a trapezoid, narrow at the waist
        t = (yy - y0) / max(1, h * 0.7)
        half = w * (0.2 + 0.3 * t)
        garment = (yy >= y0) & (yy < y0 + h * 0.7) & (np.abs(xx - cx) <= half)
    else:  # a shoe: a flat ellipse near the bottom
        garment = ((xx - cx) ** 2 / max(1.0, (w * 0.45) ** 2) + (yy - (y1 - h * 0.12)) ** 2 / max(1.0, (h * 0.1) ** 2)
                   ) <= 1  # fmt: skip
    return garment, [(k, p) for k, p in parts if p.any()]


def _box(yy, xx, top, left, height, width):
    return (yy >= top) & (yy < top + height) & (xx >= left) & (xx < left + width)


def _paint(image, mask, rgb, texture, yy, xx):
    colour = np.array(rgb, dtype=np.float32)
    shade = np.ones(mask.shape, dtype=np.float32)
    if texture == STRIPED:
        shade = np.where((yy // 4) % 2 == 0, 1.0, 0.55)
    elif texture == DOTTED:
        shade = np.where(((yy % 8) - 4) ** 2 + ((xx % 8) - 4) ** 2 <= 4, 0.45, 1.0)
    image[mask] = (colour[None, :] * shade[mask][:, None]).astype(np.uint8)


def _save_jpeg(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(image).save(path, quality=95)
