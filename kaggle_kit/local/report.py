"""What one emulated kernel run came to: the verdict, the peak memory, the time and the output files, as a
``RunReport`` that ``run_local`` returns and writes beside the sandbox as ``run-report.json``.

Sizes in bytes, times in seconds. ``RunReport`` is the one reader and writer of that file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kaggle_kit.atomic import atomic_write_json
from kaggle_kit.errors import KernelLayoutError
from kaggle_kit.limits import KernelLimits, format_size

__all__ = [
    "RunReport", "REPORT_NAME", "EVENTS_NAME", "OK", "OUT_OF_MEMORY", "OUT_OF_TIME", "TOO_MANY_FILES",
    "TOO_MUCH_OUTPUT", "ERROR", "STOPPED",
]  # fmt: skip

REPORT_NAME = "run-report.json"
EVENTS_NAME = "events.jsonl"  # beside the report: the moments the kit recorded while the kernel ran (kaggle_kit.events)
OK, OUT_OF_MEMORY, OUT_OF_TIME, TOO_MANY_FILES, TOO_MUCH_OUTPUT, ERROR, STOPPED = (
    "ok",
    "out of memory",
    "out of time",
    "too many output files",
    "working dir over its size limit",
    "error",
    "stopped",  # run-local itself got SIGTERM or SIGINT (a CI cancel, Ctrl-C, `timeout`)
)


@dataclass
class RunReport:
    """What happened to one emulated kernel run. Sizes in bytes, times in seconds."""

    script: str
    exit_code: int
    verdict: str
    peak_memory_bytes: int
    elapsed_s: float
    output_files: int
    output_bytes: int
    root: str
    working_dir: str
    limits: KernelLimits = field(default_factory=KernelLimits)
    signals: list[str] = field(default_factory=list)
    samples: int = 0  # memory samples the watchdog took (cheap RSS)
    exact_samples: int = 0  # of which also exact (PSS)
    memory_timeline: list = field(default_factory=list)  # [seconds, RSS bytes]: about every elapsed/1000 s, >= 1 s
    peak_at_s: float | None = None  # seconds from the start when the peak was measured
    started_at: float = 0.0  # Unix time the kernel started
    kernel_status: str | None = None  # what the kernel itself says in kaggle-kit-status.json: done, needs-resume...
    kernel_position: str | None = None  # where its training got to, e.g. "stage/epoch/batch 0/2/15"

    @property
    def ok(self) -> bool:
        """True when the run ended with exit code 0 inside every limit."""
        return self.verdict == OK

    def summary(self) -> str:
        """One line for a terminal: the platform's verdict, then what the kernel says of its own job."""
        said = ""
        if self.kernel_status:
            said = f"; kernel status {self.kernel_status}" + (
                f" at {self.kernel_position}" if self.kernel_position and self.kernel_status != "done" else ""
            )
        return (
            f"{self.verdict}: exit code {self.exit_code}, peak memory {format_size(self.peak_memory_bytes)} "
            f"of {format_size(self.limits.memory_bytes)}, {self.elapsed_s:.1f}s of {self.limits.time_s:.0f}s, "
            f"{self.output_files} output files of {self.limits.max_files}{said}"
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON, atomically."""
        return atomic_write_json(Path(path), asdict(self))

    @classmethod
    def read(cls, path: str | os.PathLike) -> RunReport:
        """Load a report written by `run_local`; a file that is not one is a `KernelLayoutError` naming it."""
        try:
            raw = json.loads(Path(path).read_text())
            return cls(**{**raw, "limits": KernelLimits(**raw.get("limits", {}))})
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise KernelLayoutError(f"{path} is not a run report written by run-local ({exc})", str(path)) from None
