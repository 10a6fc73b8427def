"""Benchmark: what the iMaterialist kernel scores, on the easy and the realistic synthetic profile, with and without
the post-processing tuned on validation, against the trivial baseline, in one run.

Each row is one run of the kernel, start to end, in an emulated kernel (run-local, 8 GiB), on 2 CPU cores here, scored
on the synthetic test set's solution file (category mode, then full mode). "untuned" is the same model's submission
with the default rule for every category (threshold 0.5, smallest instance 0.2% of the image: the kernel's setting
before tuning); the kernel writes it beside the tuned one when `compare_untuned` is on. The baseline is one full-image
mask of the most common category per image. The loss rows train a shorter config (fastai's decoder, whole images)
with each small-object option. For the realistic quick run the per-category scores of the categories in at least 5%
of the test images are printed.

    .venv/bin/python benchmarks/quality.py [--out DIR] [--runs quick-realistic quick-easy larger-realistic loss]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import pandas as pd
from fashion_run import run_fashion_kernel

from kaggle_kit.imaterialist.data import read_labels
from kaggle_kit.imaterialist.metric import score_by_category, score_submission
from kaggle_kit.imaterialist.synth import SOLUTION_NAME, make_dataset

BASE = {"encoder": "resnet18", "encoder_cut": -3, "last_cross": False, "bs": 8, "num_workers": 0, "valid_pct": 0.2,
        "crop_size": 48, "stage2_epochs": 2, "stage2_lr": 3e-3, "stage2_bs": 16, "reserve": 0.25, "safety": 0.1,
        "compare_untuned": True}  # fmt: skip
# the README's quick config: the light decoder, positive weights, the second size on random 128-px windows
QUICK = {**BASE, "decoder": "light", "positive_weights": True, "sizes": [96, 192], "train_crop": 128, "epochs": [4, 20],
         "lrs": [1e-2, 5e-3]}  # fmt: skip
LARGER = {**QUICK, "sizes": [128, 256], "train_crop": 192, "epochs": [4, 24]}
SHORT = {**BASE, "sizes": [96], "epochs": [6], "lrs": [1e-2], "compare_untuned": False}
LOSSES = {
    "Dice per batch (before)": {"dice": "batch"},
    "Dice per image": {"dice": "image"},
    "Dice per image + focal (gamma 2)": {"dice": "image", "focal_gamma": 2.0},
    "Dice per image + positive weights": {"dice": "image", "positive_weights": True},
}
DATA = {"realistic": {"min_size": 100, "max_size": 800}, "easy": {}}  # 300 training / 60 test images each


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--runs", nargs="+", default=["quick-realistic", "quick-easy", "larger-realistic", "loss"])
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="kaggle-kit-quality-"))
    print("| profile | config | loss | tuned (category) | untuned (category) | baseline (category) | tuned (full) "
          "| kernel time |\n|---|---|---|---|---|---|---|---|", flush=True)  # fmt: skip
    for run in args.runs:
        if run == "loss":
            for name, loss in LOSSES.items():
                _run(out, "realistic", "short (96 px, 6 epochs)", {**SHORT, **loss}, name)
        else:
            config, profile = run.split("-")
            settings = QUICK if config == "quick" else LARGER
            label = (f"{config} ({'/'.join(map(str, settings['sizes']))} px on {settings['train_crop']}-px crops, "
                     f"{sum(settings['epochs'])} epochs, {settings['decoder']} decoder)")  # fmt: skip
            loss = "Dice per image + positive weights"
            _run(out, profile, label, settings, loss, categories=run == "quick-realistic")


def _dataset(out: Path, profile: str) -> Path:
    data = out / f"data-{profile}"
    if not (data / SOLUTION_NAME).exists():
        make_dataset(data, n_train=300, n_test=60, seed=0, profile=profile, **DATA[profile])
    return data


def _run(out: Path, profile: str, label: str, settings: dict, loss: str, categories: bool = False) -> None:
    data = _dataset(out, profile)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{profile}-{label.split()[0]}-{digest}"
    report = run_fashion_kernel(out, name, data, settings, memory="8GiB", time="90min")
    solution = pd.read_csv(data / SOLUTION_NAME, dtype={"ClassId": str})
    working = Path(report.working_dir)
    tuned = _read(working / "submission.csv")
    untuned = _read(working / "submission-untuned.csv") if settings.get("compare_untuned") else None
    baseline = _baseline(solution)
    cells = [score_submission(tuned, solution), score_submission(untuned, solution) if untuned is not None else None,
             score_submission(baseline, solution), score_submission(tuned, solution, "full")]  # fmt: skip
    text = " | ".join("-" if v is None else f"{v:.4f}" for v in cells)
    print(f"| {profile} | {label} | {loss} | {text} | {report.elapsed_s / 60:.1f} min |", flush=True)
    if categories:
        _print_categories(tuned, untuned, baseline, solution, data)


def _print_categories(tuned, untuned, baseline, solution, data) -> None:
    names = read_labels(data / "label_descriptions.json").categories
    images = solution["ImageId"].nunique()
    by = {k: score_by_category(frame, solution) for k, frame in (("tuned", tuned), ("untuned", untuned),
                                                                  ("baseline", baseline))}  # fmt: skip
    print("\n| category | test images | tuned | untuned | baseline |\n|---|---|---|---|---|")
    for category, entry in sorted(by["baseline"].items(), key=lambda kv: -kv[1]["images"]):
        if entry["images"] >= 0.05 * images:
            cells = [by[k].get(category, {"score": 0.0})["score"] for k in ("tuned", "untuned", "baseline")]
            print(f"| {names[category]} | {entry['images']} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    print(flush=True)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _baseline(solution: pd.DataFrame) -> pd.DataFrame:
    sizes = solution.groupby("ImageId")[["Height", "Width"]].first()
    common = solution["ClassId"].str.split("_").str[0].mode()[0]
    return pd.DataFrame([(i, f"1 {h * w}", common) for i, (h, w) in sizes.iterrows()],
                        columns=["ImageId", "EncodedPixels", "ClassId"])  # fmt: skip


if __name__ == "__main__":
    main()
