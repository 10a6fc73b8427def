"""Where the model fails: the metric per category next to the trivial baseline's (a table for the report JSON and a
small bar chart), and true against predicted masks over a few validation photos (PNG)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from kaggle_kit.atomic import atomic_write_bytes
from kaggle_kit.imaterialist.data import Labels

__all__ = ["category_table", "category_chart", "mask_overlays"]


def category_table(model: Mapping[int, dict], baseline: Mapping[int, dict], labels: Labels) -> list[dict]:
    """One row per category true in the scored images (``metric.score_by_category`` results of the model and of the
    baseline), most frequent first: id, name, images it is true in, the model's score, the baseline's."""
    rows = []
    for category, entry in model.items():
        if entry["images"] == 0:
            continue  # predicted but never true: its false positives are in the other categories' images' scores
        rows.append({
            "id": int(category),
            "name": labels.categories.get(int(category), str(category)),
            "images": int(entry["images"]),
            "score": round(float(entry["score"]), 4),
            "baseline": round(float(baseline.get(category, {"score": 0.0})["score"]), 4),
        })  # fmt: skip
    missed = {int(c) for c, e in baseline.items() if e["images"]} - {r["id"] for r in rows}
    for category in missed:  # true but never predicted: score 0
        rows.append({"id": category, "name": labels.categories.get(category, str(category)),
                     "images": int(baseline[category]["images"]), "score": 0.0,
                     "baseline": round(float(baseline[category]["score"]), 4)})  # fmt: skip
    return sorted(rows, key=lambda r: (-r["images"], r["id"]))


def category_chart(rows: list[dict], path: str | os.PathLike, top: int = 20) -> None:
    """A horizontal bar chart of the `top` most frequent categories' scores (model and baseline), written
    atomically to `path` (PNG, ~40 KB)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows[:top]
    names = [f"{r['name'][:22]} ({r['images']})" for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(rows) + 1.2), dpi=100)
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], [r["score"] for r in rows][::-1], height=0.4, label="model", color="tab:blue")
    ax.barh([i - 0.2 for i in y], [r["baseline"] for r in rows][::-1], height=0.4, label="trivial baseline",
            color="tab:gray")  # fmt: skip
    ax.set_yticks(list(y), names, fontsize=8)
    ax.set_xlabel("metric (category mode), held-out validation")
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Per category (images it is in)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def mask_overlays(
    images: list[tuple[str | os.PathLike, pd.DataFrame, pd.DataFrame]],
    labels: Labels,
    path: str | os.PathLike,
    width: int = 200,
) -> list[dict]:
    """True and predicted masks over validation photos, side by side, coloured by category with a legend; written
    atomically to `path` (PNG). `images`: (photo, its true rows, its predicted rows) with EncodedPixels and ClassId
    at the photo's size. Returns, per photo, the category ids drawn on each side (what the picture shows)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch
    from PIL import Image

    from kaggle_kit.rle import rle_decode

    palette = plt.get_cmap("tab20").colors
    colour = {c: palette[i % len(palette)] for i, c in enumerate(labels.category_ids)}
    fig, axes = plt.subplots(len(images), 2, figsize=(5, 2.6 * len(images) + 0.8), dpi=90, squeeze=False)
    drawn, seen = [], set()
    for row, (photo, truth, predicted) in zip(axes, images, strict=True):
        with Image.open(photo) as opened:
            picture = opened.convert("RGB")
        scale = width / picture.width
        small = np.asarray(picture.resize((width, max(1, round(picture.height * scale)))), dtype=np.float32) / 255
        sides = {}
        for ax, (title, frame) in zip(row, (("true", truth), ("predicted", predicted)), strict=True):
            canvas, categories = small.copy(), []
            for rle, class_id in zip(frame["EncodedPixels"], frame["ClassId"], strict=True):
                if not isinstance(rle, str) or not rle.strip() or rle.strip() == "1 1":
                    continue
                category = int(str(class_id).split("_")[0])
                mask = rle_decode(rle, (picture.height, picture.width))
                mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(canvas.shape[1::-1])) > 127
                canvas[mask] = 0.45 * canvas[mask] + 0.55 * np.asarray(colour.get(category, (0, 0, 0)))
                categories.append(category)
            ax.imshow(canvas)
            ax.set_title(f"{title} ({len(categories)})", fontsize=8)
            ax.axis("off")
            sides[title] = sorted(categories)
            seen.update(categories)
        drawn.append({"image": Path(photo).name, **sides})
    handles = [Patch(color=colour[c], label=labels.categories.get(c, str(c))[:18]) for c in sorted(seen)]
    fig.legend(handles=handles, loc="lower center", ncols=3, fontsize=6, frameon=False)
    fig.tight_layout(rect=(0, 0.04 * (1 + len(handles) // 3), 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return drawn
