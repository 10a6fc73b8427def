"""Shared fixtures: environment hygiene, an injectable clock, odd paths, and kernels run under the emulator."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from kaggle_kit.emulate import RunReport, run_local
from kaggle_kit.limits import KernelLimits


@pytest.fixture(autouse=True)
def _restore_environ():
    """Tests may set KAGGLE_KIT_* / KAGGLE_* variables; each test starts and ends with the same environment."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith(("KAGGLE_KIT_", "KAGGLE_KERNEL_"))]:
        del os.environ[key]
    yield
    os.environ.clear()
    os.environ.update(saved)


class FakeClock:
    """A Unix-time clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def weird_path(tmp_path: Path) -> Path:
    """A directory whose name has spaces, quotes, a semicolon and non-ASCII letters."""
    path = tmp_path / "my kernels; 'quoted' \"twice\" äöü 日本"
    path.mkdir()
    return path


@dataclass
class KernelRun:
    report: RunReport
    stdout: str
    stderr: str

    def explain(self) -> str:
        """What to show when an assertion about this run fails."""
        return f"{self.report.summary()}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


@pytest.fixture
def run_kernel(tmp_path: Path):
    """Run a kernel script (source text or a path) under the emulator with the given limits.

    ``run_kernel(source, memory="1GiB", time="5s", max_files=10, inputs={...}, working=..., env={...})``
    """
    counter = iter(range(1000))

    def run(
        script: str | Path,
        *,
        memory: str | int | None = None,
        time: str | float | None = None,
        max_files: int | None = None,
        name: str = "kernel",
        **kwargs,
    ) -> KernelRun:
        n = next(counter)
        if isinstance(script, str):
            path = tmp_path / f"{name}-{n}.py"
            path.write_text(textwrap.dedent(script))
        else:
            path = script
        limits = KernelLimits().with_overrides(memory=memory, time=time, max_files=max_files)
        out, err = tmp_path / f"{name}-{n}.out", tmp_path / f"{name}-{n}.err"
        kwargs.setdefault("root", tmp_path / f"sandbox-{name}-{n}")
        with out.open("w") as stdout, err.open("w") as stderr:
            report = run_local(path, limits=limits, stdout=stdout, stderr=stderr, **kwargs)
        return KernelRun(report, out.read_text(), err.read_text())

    return run
