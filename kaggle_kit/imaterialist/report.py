"""Where the model fails: the metric per category next to the trivial baseline's (a table for the report JSON and a
small bar chart), and true against predicted masks over a few validation photos (PNG)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

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


# colours neighbours can tell apart (Kelly's 22 of maximum contrast, white and black left out), handed out in the
# order categories appear in the picture: the first few drawn are the most distinct
DISTINCT = ["#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", "#848482", "#008856", "#E68FAC",
            "#0067A5", "#F99379", "#604E97", "#F6A600", "#B3446C", "#DCD300", "#882D17", "#8DB600", "#654522",
            "#E25822", "#2B3D26"]  # fmt: skip


def category_chart(rows: list[dict], path: str | os.PathLike, top: int = 20) -> list[str]:
    """A horizontal bar chart of the `top` most frequent categories' scores (model and baseline), written
    atomically to `path` (PNG, ~40 KB); names are never cut. Every bar carries its value, so a score of 0 is
    seen, not a blank row. Returns the title and the value labels drawn (what the picture says)."""
    import matplotlib

    from kaggle_kit.vision.charts import save_figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows[:top]
    names = [f"{r['name']} ({r['images']})" for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(rows) + 1.2), dpi=100)
    y = range(len(rows))
    said = []
    for offset, key, label, colour in ((0.2, "score", "model", "tab:blue"), (-0.2, "baseline", "trivial baseline",
                                                                           "tab:gray")):  # fmt: skip
        values = [r[key] for r in rows][::-1]
        ax.barh([i + offset for i in y], values, height=0.4, label=label, color=colour)
        ax.plot([0] * len(values), [i + offset for i in y], "|", color=colour, markersize=6)  # a 0 still shows
        for i, value in zip(y, values, strict=True):
            said.append(f"{value:.2f}")
            ax.text(value + 0.01, i + offset, said[-1], va="center", fontsize=6, color=colour)
    ax.set_yticks(list(y), names, fontsize=8)
    ax.set_xlabel("metric (category mode), held-out validation")
    ax.set_xlim(0, 1.08)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize=8, frameon=False)
    nothing = rows and not any(r["score"] or r["baseline"] for r in rows)
    title = ("Per category (images it is in): every score is 0, no category found yet" if nothing
             else "Per category (images it is in)")  # fmt: skip
    ax.set_title(title, fontsize=9, pad=20)
    save_figure(fig, path, dpi=100)
    return [title, *said]


def mask_overlays(
    images: list[tuple[str | os.PathLike, pd.DataFrame, pd.DataFrame]],
    labels: Labels,
    path: str | os.PathLike,
    height: int = 220,
    max_width: int = 1000,
) -> list[dict]:
    """True and predicted masks over validation photos, side by side, coloured by category with a legend; written
    atomically to `path` (PNG). `images`: (photo, its true rows, its predicted rows) with EncodedPixels and ClassId
    at the photo's size. Returns, per photo, the category ids drawn on each side (what the picture shows).

    The panels are laid edge to edge in one image, all `height` pixels high (each photo as true | predicted, as
    many photos per row as fit in `max_width` pixels), so the picture is the photos, not margins; colours come from
    ``DISTINCT`` in the order categories appear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch
    from PIL import Image

    from kaggle_kit.vision.charts import save_figure
    from kaggle_kit.vision.rle import rle_decode

    colour: dict[int, tuple[float, ...]] = {}
    panels, drawn = [], []
    for photo, truth, predicted in images:
        with Image.open(photo) as opened:
            picture = opened.convert("RGB")
        width = max(1, round(picture.width * height / picture.height))
        small = np.asarray(picture.resize((width, height)), dtype=np.float32) / 255
        sides, pair = {}, []
        for title, frame in (("true", truth), ("predicted", predicted)):
            canvas, categories = small.copy(), []
            for rle, class_id in zip(frame["EncodedPixels"], frame["ClassId"], strict=True):
                if not isinstance(rle, str) or not rle.strip() or rle.strip() == "1 1":
                    continue
                category = int(str(class_id).split("_")[0])
                if category not in colour:
                    colour[category] = matplotlib.colors.to_rgb(DISTINCT[len(colour) % len(DISTINCT)])
                mask = rle_decode(rle, (picture.height, picture.width))
                mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height))) > 127
                canvas[mask] = 0.4 * canvas[mask] + 0.6 * np.asarray(colour[category])
                categories.append(category)
            pair.append((f"{title} ({len(categories)})", canvas))
            sides[title] = sorted(categories)
        panels.append(pair)
        drawn.append({"image": Path(photo).name, **sides})
    gap, rows = 4, [[]]  # pixels between panels; rows of (title, canvas) panels
    for pair in panels:
        row_width = sum(c.shape[1] + gap for _, c in rows[-1])
        if rows[-1] and row_width + sum(c.shape[1] + gap for _, c in pair) > max_width:
            rows.append([])
        rows[-1].extend(pair)
    total_w = max(sum(c.shape[1] for _, c in row) + gap * (len(row) - 1) for row in rows)
    sheet = np.ones((len(rows) * (height + gap) - gap, total_w, 3), dtype=np.float32)
    titles = []
    for i, row in enumerate(rows):
        left, top = 0, i * (height + gap)
        for title, canvas in row:
            sheet[top : top + height, left : left + canvas.shape[1]] = canvas
            titles.append((left + 4, top + 4, title))
            left += canvas.shape[1] + gap
    dpi = 100
    fig = plt.figure(figsize=(total_w / dpi, sheet.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(sheet, interpolation="nearest")
    for x, y, title in titles:
        ax.text(x, y, title, fontsize=7, va="top", color="white", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1})
    ax.axis("off")
    handles = [Patch(color=colour[c], label=labels.categories.get(c, str(c))) for c in colour]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, 0), ncols=4, fontsize=7, frameon=False)
    save_figure(fig, path, dpi=dpi)
    return drawn
