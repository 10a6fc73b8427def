"""Benchmark: the iMaterialist kernel's score on the demo data with JPEG draft decoding on and off.

Draft decoding changes pixels by about one grey level (benchmarks/decode.py); this measures what that does to the
competition metric: the kernel with the demo's settings, run once to the end in an emulated kernel per setting, on
the same synthetic dataset, scored against its solution file (both metric modes), next to the trivial baseline.

    .venv/bin/python benchmarks/draft_quality.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from kaggle_kit.demo import COMPETITION, DEMO_SETTINGS, kernels_dir
from kaggle_kit.emulate import run_local
from kaggle_kit.imaterialist.metric import score_submission
from kaggle_kit.imaterialist.synth import SOLUTION_NAME, make_dataset
from kaggle_kit.limits import KernelLimits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="training seeds (runs differ by seed)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="kaggle-kit-draft-quality-"))
    data = out / "fashion-data"
    if not (data / SOLUTION_NAME).exists():
        make_dataset(data, n_train=100, n_test=30, seed=0)
    solution = pd.read_csv(data / SOLUTION_NAME, dtype={"ClassId": str})
    print("| seed | decoding | category score | full score | kernel time |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        for draft in (False, True):
            _run(out, data, solution, seed, draft)


def _run(out: Path, data: Path, solution: pd.DataFrame, seed: int, draft: bool) -> None:
    decoding = "draft" if draft else "full"
    name = f"{decoding}-{seed}"
    config = out / f"{name}.json"
    config.write_text(json.dumps({**DEMO_SETTINGS, "draft_decode": draft, "seed": seed}))
    with open(out / f"{name}.log", "w") as log:
        report = run_local(kernels_dir() / "imaterialist-fashion-2019" / "kernel.py", inputs={COMPETITION: data},
                           limits=KernelLimits().with_overrides(memory="6GiB", time="30min"), root=out / name,
                           env={"KAGGLE_KIT_CONFIG": str(config)}, stdout=log, stderr=log)  # fmt: skip
    if not report.ok:
        raise SystemExit(f"{name}: {report.summary()}; see {out / f'{name}.log'}")
    submission = pd.read_csv(Path(report.working_dir) / "submission.csv", dtype=str, keep_default_na=False)
    category, full = (score_submission(submission, solution, mode) for mode in ("category", "full"))
    print(f"| {seed} | {decoding} | {category:.4f} | {full:.4f} | {report.elapsed_s:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
