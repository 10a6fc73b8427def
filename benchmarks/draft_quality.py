"""Benchmark: what JPEG draft decoding does to the iMaterialist kernel's predictions and score, on the demo data.

Draft decoding changes pixels by about one grey level (benchmarks/decode.py). Two measures, per training seed:
  * same model: the kernel (the demo's settings, full decoding) runs to the end in an emulated kernel; its final
    stage-1 weights then predict the test photos twice, decoded in full and in draft mode, and both are scored at
    model size with the kernel's tuned post-processing against the solution file: the tolerance draft decoding itself
    costs, apart from training's seed-to-seed spread;
  * end to end (`--end-to-end`): the kernel run again with `draft_decode` on (training decoded in draft mode too),
    its submission scored in both metric modes.

    .venv/bin/python benchmarks/draft_quality.py [--out DIR] [--seeds 42 1 2] [--end-to-end]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fashion_run import run_fashion_kernel

from kaggle_kit.imaterialist.data import read_labels, read_train_csv
from kaggle_kit.imaterialist.masks import instance_masks
from kaggle_kit.imaterialist.metric import score_submission
from kaggle_kit.imaterialist.postprocess import PostProcessing
from kaggle_kit.imaterialist.stage1 import predict_probabilities, stage1_dataloaders, stage1_learner
from kaggle_kit.imaterialist.synth import SOLUTION_NAME, make_dataset
from kaggle_kit.imaterialist.tuning import RuleSearch
from kaggle_kit.local.demo import DEMO_PHOTOS, DEMO_SETTINGS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="training seeds (runs differ by seed)")
    parser.add_argument("--end-to-end", action="store_true", help="also train and predict with draft decoding on")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="kaggle-kit-draft-quality-"))
    data = out / "fashion-data"
    if not (data / SOLUTION_NAME).exists():
        make_dataset(data, n_train=160, n_test=60, seed=0, **DEMO_PHOTOS)
    solution = pd.read_csv(data / SOLUTION_NAME, dtype={"ClassId": str})
    print("| seed | training decoded | category score | full score | kernel time |")
    print("|---|---|---|---|---|")
    working = {}
    for seed in args.seeds:
        for draft in (False, True) if args.end_to_end else (False,):
            working[seed, draft] = _run(out, data, solution, seed, draft)
    print("\nSame model, test photos decoded in full vs in draft mode (model size, tuned post-processing):\n")
    print("| seed | score, full / draft | mean abs probability difference | pixel decisions (p > 0.5) changed |")
    print("|---|---|---|---|")
    for seed in args.seeds:
        _same_model(data, working[seed, False], seed)


def _run(out: Path, data: Path, solution: pd.DataFrame, seed: int, draft: bool) -> Path:
    decoding = "draft" if draft else "full"
    name = f"{decoding}-{seed}"
    report = run_fashion_kernel(out, name, data, {**DEMO_SETTINGS, "draft_decode": draft, "seed": seed},
                                memory="6GiB", time="30min")  # fmt: skip
    submission = pd.read_csv(Path(report.working_dir) / "submission.csv", dtype=str, keep_default_na=False)
    category, full = (score_submission(submission, solution, mode) for mode in ("category", "full"))
    print(f"| {seed} | {decoding} | {category:.4f} | {full:.4f} | {report.elapsed_s:.0f} s |", flush=True)
    return Path(report.working_dir)


def _same_model(data: Path, working: Path, seed: int) -> None:
    labels = read_labels(data / "label_descriptions.json")
    train = read_train_csv(data / "train.csv", labels)
    truth = read_train_csv(data / SOLUTION_NAME, labels)
    size, files = DEMO_SETTINGS["sizes"][-1], sorted((data / "test").glob("*.jpg"))
    saved = json.loads((working / "imaterialist-postprocessing.json").read_text())
    post = PostProcessing.from_dict(saved.get("final_rules", saved["rules"]))  # the submission's rules
    weights = torch.load(working / "stage1.pth", map_location="cpu", weights_only=True)
    probs, scores = {}, {}
    for draft in (False, True):
        dls = stage1_dataloaders(data / "train", train, labels.category_ids, size, DEMO_SETTINGS["bs"],
                                 working.parent / "cache", draft=draft)  # fmt: skip
        learn = stage1_learner(dls, len(labels.category_ids), DEMO_SETTINGS["encoder"],
                               cut=DEMO_SETTINGS["encoder_cut"], last_cross=DEMO_SETTINGS["last_cross"],
                               decoder=DEMO_SETTINGS.get("decoder", "fastai"))  # fmt: skip
        learn.model.load_state_dict(weights)
        search = RuleSearch(labels.category_ids, exclusive=post.exclusive)
        probs[draft] = []
        for path, prob in predict_probabilities(learn, files):
            search.add(prob, instance_masks(truth[truth["ImageId"] == path.name], size, size))
            probs[draft].append(prob)
        scores[draft] = search.evaluate(post)["score"]
    full, draft = np.stack(probs[False]), np.stack(probs[True])
    flipped = np.mean((full > 0.5) != (draft > 0.5))
    print(
        f"| {seed} | {scores[False]:.4f} / {scores[True]:.4f} | {np.abs(full - draft).mean():.5f} | "
        f"{100 * flipped:.3f}% |",
        flush=True,
    )


if __name__ == "__main__":
    main()
