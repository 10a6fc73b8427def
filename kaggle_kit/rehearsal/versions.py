"""A kernel version pushed to the local Kaggle: its folder, its run's outcome in Kaggle's words, and its output.

`KernelVersion` is one pushed version (state, folder with script, log and sandbox); `failure_message` turns
run-local's verdict into the message Kaggle shows; `output_names` is what Kaggle would list as its output (regular
files only); `notebook_code` is the script a pushed notebook runs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from kaggle_kit.limits import format_size
from kaggle_kit.local.report import (
    ERROR,
    OK,
    OUT_OF_MEMORY,
    OUT_OF_TIME,
    REPORT_NAME,
    STOPPED,
    TOO_MANY_FILES,
    TOO_MUCH_OUTPUT,
    RunReport,
)

__all__ = ["KernelVersion", "KAGGLE_MESSAGES", "failure_message", "output_names", "notebook_code"]

log = logging.getLogger(__name__)

KAGGLE_MESSAGES = {  # run-local's verdict -> the failure message Kaggle shows for it
    OUT_OF_MEMORY: "Your notebook tried to allocate more memory than is available. It has restarted.",
    OUT_OF_TIME: "Your notebook was stopped because it exceeded the max allowed execution duration.",
    TOO_MANY_FILES: "Your notebook generated too many output files (the limit is {max_files}).",
    TOO_MUCH_OUTPUT: "Your notebook's output exceeded the maximum allowed size ({working}).",
    ERROR: "Your notebook hit an unhandled error while executing (exit code {code}): {last_line}",
    STOPPED: "The notebook was stopped (the local Kaggle shut down while it ran).",
}


@dataclass
class KernelVersion:
    """One pushed version of a kernel here: its number, state (QUEUED, RUNNING, COMPLETE, ERROR), Kaggle-like
    failure message, folder (script, log, sandbox with ``working/``) and the inputs mounted for it
    ({path under input/: local folder})."""

    ref: str
    number: int
    state: str
    folder: str
    code_file: str
    profile: str
    mounts: dict[str, str]
    failure: str | None = None
    pushed_at: float = 0.0
    token: str = ""  # the run token of its kernel's processes while it runs (what a restarted service ends)
    used_s: float = 0.0  # GPU quota seconds its run used, at the real scale (``platform.Platform.quota_used_s``)

    @property
    def sandbox(self) -> Path:
        """The run-local root of this version: input/, working/ and its run report."""
        return Path(self.folder) / "sandbox"

    @property
    def output_dir(self) -> Path:
        """What Kaggle would keep as this version's output: its working dir."""
        return self.sandbox / "working"

    @property
    def log_path(self) -> Path:
        """The run's stdout and stderr."""
        return Path(self.folder) / "log.txt"

    def report(self) -> RunReport | None:
        """run-local's report of this version's run, once it ran."""
        path = self.sandbox / REPORT_NAME
        return RunReport.read(path) if path.exists() else None


def failure_message(report: RunReport, log_path: Path) -> str | None:
    """Kaggle's failure message for a run-local verdict (None for a run that went well)."""
    if report.verdict == OK:
        return None
    lines = log_path.read_text(errors="replace").strip().splitlines() if log_path.exists() else []
    return KAGGLE_MESSAGES.get(report.verdict, report.verdict).format(
        max_files=report.limits.max_files, working=format_size(report.limits.working_bytes), code=report.exit_code,
        last_line=lines[-1][:300] if lines else "no output")  # fmt: skip


def output_names(base: Path) -> list[str]:
    """The files Kaggle would list as a version's output: regular files only. A symbolic link is not saved by
    Kaggle; it is left out of the listing with a logged line, and the rest is listed."""
    if not base.is_dir():
        return []
    names = []
    for dirpath, dirnames, filenames in os.walk(base):  # never into a linked folder
        for name in sorted(filenames) + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            if path.is_symlink():
                log.warning("local Kaggle: %s is a symbolic link; Kaggle keeps no link in an output, so it is not "
                            "listed", path)  # fmt: skip
            elif path.is_file():
                names.append(path.relative_to(base).as_posix())
    return sorted(names)


def notebook_code(text: str) -> str:
    """The code cells of a pushed notebook, as the one script a run executes."""
    try:
        cells = json.loads(text)["cells"]
    except (ValueError, KeyError, TypeError):
        return text
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in cells if c.get("cell_type") == "code"]  # fmt: skip
    return "\n\n".join(sources) + "\n"
