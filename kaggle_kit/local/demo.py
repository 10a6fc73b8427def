"""`kaggle-kit demo`: make a synthetic dataset and run a kernel from kernels/ on it under the emulated limits."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaggle_kit.limits import KernelLimits
from kaggle_kit.local.emulate import run_local
from kaggle_kit.local.report import RunReport
from kaggle_kit.status import KernelStatus, StatusError
from kaggle_kit.templates import kernels_dir
from kaggle_kit.vision.synthetic import make_colour_squares

__all__ = [
    "run_streaming_demo", "run_imaterialist_demo", "StreamingDemo", "FashionDemo", "DEMO_SETTINGS",
]  # fmt: skip

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


@dataclass
class StreamingDemo:
    """What the streaming demo came to: the emulator's `report`, the kernel's `result` (its demo-result.json: test
    accuracy and stream_predict's summary; empty when the kernel failed) and the `submission` path."""

    report: RunReport
    result: dict[str, Any]
    submission: Path


@dataclass
class FashionDemo:
    """What the iMaterialist demo came to: each run's report and the kernel status after it (None: no status),
    the logs, the submission path, and when the job finished `scores` ({reading: (model, trivial baseline)}, the
    four readings of ``score_readings``) with the test and submitted image counts."""

    runs: list[RunReport]
    statuses: list[KernelStatus | None]
    logs: list[Path]
    submission: Path
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    test_images: int = 0
    submitted_images: int = 0

    @property
    def model(self) -> Path:
        """The trained model folder the kernel wrote (imaterialist-model/), what a later kernel predicts from."""
        return self.submission.parent / "imaterialist-model"

    @property
    def done(self) -> bool:
        """True when the last run's kernel said its job is done."""
        return bool(self.statuses) and self.statuses[-1] is not None and self.statuses[-1].done


def run_streaming_demo(
    out_dir: str | os.PathLike = "kaggle-kit-demo",
    n_train: int = 160,
    n_test: int = 800,
    memory: str = "3GiB",
    time: str = "15min",
) -> StreamingDemo:
    """Train a small classifier on synthetic images and stream its test predictions, inside an emulated kernel.

    Returns the kernel's result (test accuracy, stream_predict's summary) and the emulator's report.
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
    result = _demo_result(result_file) if report.ok else {}
    return StreamingDemo(report, result, Path(report.working_dir) / "submission.csv")


def _demo_result(path: Path) -> dict:
    """The streaming demo kernel's demo-result.json (written atomically by it), or {} with a warning when it is
    missing or not an object of results: the summary then says less, never a traceback."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s): the demo's summary leaves its numbers out", path, exc)
        return {}
    if not isinstance(result, dict):
        log.warning("%s is not an object of results: the demo's summary leaves its numbers out", path)
        return {}
    return result


def run_imaterialist_demo(
    out_dir: str | os.PathLike = "kaggle-kit-demo",
    n_train: int = 160,
    n_test: int = 30,
    memory: str = "6GiB",
    first_time: str = "75s",
    seed: int = 0,
    on_run: Callable[[int, Path, RunReport | None, KernelStatus | None], None] | None = None,
) -> FashionDemo:
    """The iMaterialist kernel on a synthetic dataset, twice in one working dir: the first run gets a time limit too
    short to finish (its Deadline checkpoints and stops), the second resumes and writes the submission.

    Returns both run reports, the kernel status after each, and the submission's scores on the synthetic test
    solution (both metric modes) next to the trivial baseline's. `on_run(number, log, report, status)` is called
    when a run starts (report None) and when it ends, so a caller can show the runs as they go.
    """
    import pandas as pd

    from kaggle_kit.imaterialist.metric import score_readings, trivial_baseline
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
        if on_run is not None:
            on_run(i + 1, out_dir / f"run-{i + 1}.log", None, None)
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
                    plot=True,  # run-N/run-report.png, as run-local draws it
                )
            )
        try:
            statuses.append(KernelStatus.load(working))
        except StatusError as exc:
            log.warning("%s", exc)
            statuses.append(None)
        if on_run is not None:
            on_run(i + 1, out_dir / f"run-{i + 1}.log", runs[-1], statuses[-1])
        if (statuses[-1] is not None and statuses[-1].done) or not runs[-1].ok:
            break
    logs = [out_dir / f"run-{i + 1}.log" for i in range(len(runs))]
    demo = FashionDemo(runs, statuses, logs, working / "submission.csv")
    if demo.submission.exists() and demo.done:
        solution = pd.read_csv(data / SOLUTION_NAME, dtype={"ClassId": str})
        submission = pd.read_csv(demo.submission, dtype=str, keep_default_na=False)
        baseline = trivial_baseline(solution)
        model, trivial = score_readings(submission, solution), score_readings(baseline, solution)
        demo.scores = {reading: (model[reading], trivial[reading]) for reading in model}
        demo.test_images = int(solution["ImageId"].nunique())
        demo.submitted_images = int(submission["ImageId"].nunique())
    return demo
