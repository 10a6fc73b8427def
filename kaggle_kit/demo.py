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
from kaggle_kit.synthetic import make_colour_squares

__all__ = ["run_streaming_demo", "kernels_dir"]

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
