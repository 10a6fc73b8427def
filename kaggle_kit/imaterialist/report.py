"""Where the model fails: the metric per category next to the trivial baseline's, as a table for the report JSON and
a small bar chart (PNG)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from kaggle_kit.atomic import atomic_write_bytes
from kaggle_kit.imaterialist.data import Labels

__all__ = ["category_table", "category_chart"]


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
