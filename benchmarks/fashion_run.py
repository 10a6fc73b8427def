"""One run of the iMaterialist kernel, start to end, in an emulated kernel: what the quality benchmarks share."""

from __future__ import annotations

import json
from pathlib import Path

from kaggle_kit.limits import KernelLimits
from kaggle_kit.local.demo import COMPETITION
from kaggle_kit.local.emulate import run_local
from kaggle_kit.local.report import RunReport
from kaggle_kit.templates import kernels_dir


def run_fashion_kernel(out: Path, name: str, data: Path, settings: dict, memory: str, time: str) -> RunReport:
    """The kernel on `data` with `settings` under `memory` and `time` limits, in `out/name` (its log beside it);
    exits with the report's summary if the run did not end well."""
    config = out / f"{name}.json"
    config.write_text(json.dumps(settings))
    with open(out / f"{name}.log", "w") as log:
        report = run_local(kernels_dir() / "imaterialist-fashion-2019" / "kernel.py", inputs={COMPETITION: data},
                           limits=KernelLimits().with_overrides(memory=memory, time=time), root=out / name,
                           env={"KAGGLE_KIT_CONFIG": str(config)}, stdout=log, stderr=log)  # fmt: skip
    if not report.ok:
        raise SystemExit(f"{name}: {report.summary()}; see {out / f'{name}.log'}")
    return report
