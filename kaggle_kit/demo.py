"""`kaggle-kit demo`: make a synthetic dataset and run a kernel from kernels/ on it under the emulated limits."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from kaggle_kit.emulate import run_local
from kaggle_kit.errors import KernelLayoutError
from kaggle_kit.limits import KernelLimits
from kaggle_kit.status import read_status
from kaggle_kit.synthetic import make_colour_squares

__all__ = ["run_streaming_demo", "run_imaterialist_demo", "kernels_dir", "DEMO_SETTINGS"]

COMPETITION = "imaterialist-fashion-2019-FGVC6"
# The iMaterialist kernel at tiny sizes: minutes on 2 CPU cores instead of hours on a GPU (a lighter unet: fastai's
# cut=-3 and last_cross=False, 3.9x less compute per image).
DEMO_SETTINGS = {
    "encoder": "resnet18", "encoder_cut": -3, "last_cross": False, "sizes": [64, 96], "epochs": [3, 6],
    "lrs": [1e-2, 5e-3], "bs": 8, "num_workers": 0, "valid_pct": 0.2, "crop_size": 48, "stage2_epochs": 4,
    "stage2_lr": 3e-3, "stage2_bs": 16, "reserve": 0.25, "safety": 0.1,
}  # fmt: skip
DEMO_PHOTOS = {"profile": "realistic", "min_size": 100, "max_size": 500}  # small photos: a quick demo

log = logging.getLogger(__name__)


def kernels_dir() -> Path:
    """The repository's kernels/ folder (the demo runs its kernels from a clone of the project)."""
    path = Path(__file__).resolve().parents[1] / "kernels"
    if not path.is_dir():
        raise KernelLayoutError(
            f"kernels/ not found beside the package ({path}); run the demo from a clone of "
            "kaggle_kit installed with 'pip install -e .'",
            str(path),
        )
    return path


def run_streaming_demo(
    out_dir: str | os.PathLike = "kaggle-kit-demo",
    n_train: int = 160,
    n_test: int = 800,
    memory: str = "3GiB",
    time: str = "15min",
) -> dict[str, Any]:
    """Train a small classifier on synthetic images and stream its test predictions, inside an emulated kernel.

    Returns the kernel's result (test accuracy, stream_predict's summary) and the emulator's report, as a dict.
    """
    out_dir = Path(out_dir).resolve()
    data = out_dir / "colour-squares"
    if not (data / "test").is_dir() or len(list((data / "test").glob("*.png"))) != n_test:
        shutil.rmtree(data, ignore_errors=True)
        make_colour_squares(data / "train", n_train, seed=1, masks=False)
        make_colour_squares(data / "test", n_test, seed=2, masks=False)
    limits = KernelLimits().with_overrides(memory=memory, time=time)
    script = kernels_dir() / "streaming-demo" / "kernel.py"
    report = run_local(script, inputs={"colour-squares": data}, limits=limits, root=out_dir / "kernel")
    result_file = out_dir / "kernel" / "demo-result.json"
    result = json.loads(result_file.read_text()) if report.ok and result_file.exists() else {}
    return {"report": report, "result": result, "submission": Path(report.working_dir) / "submission.csv"}


def run_imaterialist_demo(
    out_dir: str | os.PathLike = "kaggle-kit-demo",
    n_train: int = 160,
    n_test: int = 30,
    memory: str = "6GiB",
    first_time: str = "75s",
    seed: int = 0,
) -> dict[str, Any]:
    """The iMaterialist kernel on a synthetic dataset, twice in one working dir: the first run gets a time limit too
    short to finish (its Deadline checkpoints and stops), the second resumes and writes the submission.

    Returns both run reports, the kernel status after each, and the submission's scores on the synthetic test
    solution (both metric modes) next to the trivial baseline's.
    """
    import pandas as pd

    from kaggle_kit.imaterialist.metric import score_submission
    from kaggle_kit.imaterialist.synth import SOLUTION_NAME, make_dataset

    out_dir = Path(out_dir).resolve()
    data = out_dir / "fashion-data"
    if not (data / SOLUTION_NAME).exists():
        shutil.rmtree(data, ignore_errors=True)
        make_dataset(data, n_train=n_train, n_test=n_test, seed=seed, **DEMO_PHOTOS)
    config = out_dir / "demo-settings.json"
    config.write_text(json.dumps(DEMO_SETTINGS))
    working = out_dir / "working"
    shutil.rmtree(working, ignore_errors=True)
    script = kernels_dir() / "imaterialist-fashion-2019" / "kernel.py"
    runs, statuses = [], []
    for i, time_limit in enumerate((first_time, "20min")):
        limits = KernelLimits().with_overrides(memory=memory, time=time_limit)
        with open(out_dir / f"run-{i + 1}.log", "w") as log_file:
            runs.append(
                run_local(
                    script,
                    inputs={COMPETITION: data},
                    limits=limits,
                    root=out_dir / f"run-{i + 1}",
                    working=working,
                    env={"KAGGLE_KIT_CONFIG": str(config)},
                    stdout=log_file,
                    stderr=log_file,
                )
            )
        statuses.append(read_status(working) or {})
        if statuses[-1].get("status") == "done" or not runs[-1].ok:
            break
    result: dict[str, Any] = {
        "runs": runs,
        "statuses": statuses,
        "submission": working / "submission.csv",
        "logs": [out_dir / f"run-{i + 1}.log" for i in range(len(runs))],
    }
    if result["submission"].exists() and statuses[-1].get("status") == "done":
        solution = pd.read_csv(data / SOLUTION_NAME, dtype={"ClassId": str})
        submission = pd.read_csv(result["submission"], dtype=str, keep_default_na=False)
        sizes = solution.groupby("ImageId")[["Height", "Width"]].first()
        common = solution["ClassId"].str.split("_").str[0].mode()[0]
        baseline = pd.DataFrame(
            [(i, f"1 {h * w}", common) for i, (h, w) in sizes.iterrows()],
            columns=["ImageId", "EncodedPixels", "ClassId"],
        )
        result["scores"] = {
            mode: (score_submission(submission, solution, mode), score_submission(baseline, solution, mode))
            for mode in ("category", "full")
        }
        result["test_images"] = int(solution["ImageId"].nunique())
        result["submitted_images"] = int(submission["ImageId"].nunique())
    return result
