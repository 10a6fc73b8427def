"""The kernel's exit status for whoever runs it next: a small JSON in working/ saying done or needs-resume.

``kaggle-kit chain`` reads it from a finished kernel's output to decide whether to push the next run. Only "done"
means done: training code writes "needs-resume" while it runs and when it stops at the deadline, "trained" when
its fits are complete; the kernel script calls ``mark_done()`` when everything, predictions included, is written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from kaggle_kit.atomic import atomic_write_json, remove_stale_temps

__all__ = ["STATUS_NAME", "write_status", "read_status", "mark_done", "DONE", "NEEDS_RESUME", "TRAINED"]

STATUS_NAME = "kaggle-kit-status.json"
DONE, NEEDS_RESUME, TRAINED = "done", "needs-resume", "trained"


def write_status(working_dir: str | os.PathLike, status: str, **info: Any) -> Path:
    """Atomically write {"status": status, **info, "updated_at": unix time} to working/kaggle-kit-status.json."""
    if status not in (DONE, NEEDS_RESUME, TRAINED):
        raise ValueError(f"status={status!r}; expected {DONE!r}, {NEEDS_RESUME!r} or {TRAINED!r}")
    path = Path(working_dir) / STATUS_NAME
    remove_stale_temps(path)  # a kill mid-write leaves one; this kernel's status has one writer: this process
    return atomic_write_json(path, {"status": status, **info, "updated_at": time.time()})


def read_status(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The status JSON in `directory` (a working dir or a downloaded kernel output), or None if there is none.

    A file that is not a JSON object (a list, a cut write) counts as no status: every reader gets a dict or None.
    """
    try:
        status = json.loads((Path(directory) / STATUS_NAME).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return status if isinstance(status, dict) else None


def mark_done(working_dir: str | os.PathLike | None = None, **info: Any) -> Path:
    """Declare the kernel's job finished (default: the current kernel's working dir)."""
    if working_dir is None:
        from kaggle_kit.kernel import Kernel

        working_dir = Kernel.current().working_dir
    previous = read_status(working_dir) or {}
    previous.pop("status", None)
    previous.pop("updated_at", None)
    return write_status(working_dir, DONE, **{**previous, **info})
