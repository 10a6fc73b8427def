"""Moments of a run worth drawing (a checkpoint written, predictions committed, training stopped), recorded as they
happen: one JSON line each, appended to the file that KAGGLE_KIT_EVENTS names. ``run_local`` sets it to a file
beside its report (outside working/, so it is no output), and the run's picture draws these moments, pruned
checkpoints and every commit included. Where it is not set (on Kaggle) nothing is written. Times are Unix seconds.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["EVENTS_ENV", "record_event", "read_events"]

log = logging.getLogger(__name__)

EVENTS_ENV = "KAGGLE_KIT_EVENTS"


def record_event(kind: str, **info: Any) -> None:
    """Append {"kind", "at" (Unix time), **info} to the events file, if there is one. One ``write`` of one line
    with O_APPEND: lines from several processes never interleave. A failure costs the picture a mark, never the run."""
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    line = (json.dumps({"kind": kind, "at": time.time(), **info}, default=str) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        log.debug("could not record the %s event in %s: %s", kind, path, exc)


def read_events(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The events in `path`, in the order written; a missing file is none, a cut or foreign line is skipped."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the last line of a run killed mid-write
        if isinstance(event, dict) and isinstance(event.get("kind"), str) and isinstance(event.get("at"), int | float):
            events.append(event)
    return events
