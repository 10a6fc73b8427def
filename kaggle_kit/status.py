"""The kernel's exit status for whoever runs it next: a small JSON in working/ saying done or needs-resume.

``kaggle-kit chain`` reads it from a finished kernel's output to decide whether to push the next run. Only "done"
means done: training code writes "needs-resume" while it runs and when it stops at the deadline, "trained" when
its fits are complete; the kernel script calls ``mark_done()`` when everything, predictions included, is written.
``KernelStatus`` is the one reader and writer of ``kaggle-kit-status.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kaggle_kit.accelerator import ACCELERATOR_ENV
from kaggle_kit.atomic import atomic_write_json, remove_stale_temps
from kaggle_kit.errors import KaggleKitError
from kaggle_kit.launch import other_rank

__all__ = [
    "STATUS_NAME", "KernelStatus", "StatusError", "write_status", "read_status", "mark_done", "mark_predicting",
    "clear_predicting", "predictions_resumable", "DONE", "NEEDS_RESUME",
    "TRAINED", "RUN_ID_ENV",
]  # fmt: skip

log = logging.getLogger(__name__)

STATUS_NAME = "kaggle-kit-status.json"
RUN_ID_ENV = "KAGGLE_KIT_RUN_ID"  # set by a chain in each run's bundle; stamped on every status the run writes
DONE, NEEDS_RESUME, TRAINED = "done", "needs-resume", "trained"
FORMAT_VERSION = 1
_STATES = (DONE, NEEDS_RESUME, TRAINED)


class StatusError(KaggleKitError, ValueError):
    """A status file (or a status to write) is not a kaggle-kit status; the message names the file or value."""


@dataclass
class KernelStatus:
    """Where a kernel's job stands: `status` (done, needs-resume or trained), the training position it reached
    (`stage`, `epoch`, `iteration`: the batch within the epoch), `time_used_s` (kernel seconds), the last
    `checkpoint` file name, `extra` facts the kernel script adds (``mark_done(submission=...)``), `updated_at`
    (Unix time of the write) and `run_id`: the run that wrote it (KAGGLE_KIT_RUN_ID, which ``kaggle-kit chain``
    sets in each run it pushes, so a status served from another run is told apart; None outside a chain) and
    `accelerator`: what the kernel asked for and got (``check_accelerator``'s line; None when it did not check)."""

    status: str
    stage: int | str | None = None
    epoch: int | None = None
    iteration: int | None = None
    time_used_s: float | None = None
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0
    run_id: str | None = None
    accelerator: str | None = None

    def __post_init__(self) -> None:
        if self.status not in _STATES:
            raise StatusError(f"status={self.status!r}; expected {DONE!r}, {NEEDS_RESUME!r} or {TRAINED!r}",
                              self.status)  # fmt: skip

    @property
    def done(self) -> bool:
        """True when the kernel's whole job (predictions included) is finished."""
        return self.status == DONE

    def where(self) -> str:
        """The position in words, e.g. "stage/epoch/batch 1/3/120" ("segmenter stage/epoch/batch ..." when the
        Deadline has a name), with the predictions' when they stopped early
        ("predictions 96 of 800 into submission.csv")."""
        training = f"stage/epoch/batch {self.stage}/{self.epoch}/{self.iteration}"
        if self.extra.get("training"):  # a script training several models names each
            training = f"{self.extra['training']} {training}"
        if "predicting" not in self.extra:
            if self.epoch is None:  # nothing trained here: a run that only predicted, or a script without a Deadline
                source = self.extra.get("predicted_from")
                return f"predicted from {source}" if source else "no training position"
            return training
        predictions = (f"predictions {self.extra.get('predicted')} of {self.extra.get('items')} into "
                       f"{self.extra['predicting']}")  # fmt: skip
        return predictions if self.epoch is None else f"{training}, {predictions}"

    def as_dict(self) -> dict[str, Any]:
        """The file's content: the fields flat, `extra` merged in, and the format version."""
        named = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {"format": FORMAT_VERSION, **self.extra, **named}

    def commit(self, working_dir: str | os.PathLike) -> Path:
        """Write this status to `working_dir`/kaggle-kit-status.json atomically, stamped with the time now and this
        run's id. On the ranks of a launch only rank 0 writes (the others return the path, untouched)."""
        path = Path(working_dir) / STATUS_NAME
        if other_rank():
            return path
        self.updated_at, self.run_id = time.time(), os.environ.get(RUN_ID_ENV) or None
        self.accelerator = os.environ.get(ACCELERATOR_ENV) or None
        remove_stale_temps(path)  # a kill mid-write leaves one; this kernel's status has one writer: this process
        return atomic_write_json(path, self.as_dict())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> KernelStatus | None:
        """The status in `directory` (a working dir or a downloaded kernel output), None when there is no file.

        A file that is not a status (cut, not a JSON object, a wrong type, a newer format) is a `StatusError`."""
        path = Path(directory) / STATUS_NAME
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            raise StatusError(f"{path} is not readable JSON ({exc})", str(path)) from None
        if not isinstance(raw, dict):
            raise StatusError(f"{path} holds {type(raw).__name__}, not a status object", str(path))
        if raw.get("format", FORMAT_VERSION) != FORMAT_VERSION:
            raise StatusError(f"{path} has format {raw.get('format')!r}; this kaggle_kit reads {FORMAT_VERSION}",
                              str(path))  # fmt: skip
        named = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in named}
        extra = {k: v for k, v in raw.items() if k not in named and k != "format"}
        types = {"epoch": int, "iteration": int, "time_used_s": (int, float), "checkpoint": str,
                 "updated_at": (int, float), "stage": (int, str), "run_id": str,
                 "accelerator": str}  # fmt: skip
        for name, kind in types.items():
            value = values.get(name)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise StatusError(f"{path}: {name}={value!r} is not {getattr(kind, '__name__', 'a number')}",
                                  str(path))  # fmt: skip
        if values.get("status") not in _STATES:
            raise StatusError(f"{path}: status={values.get('status')!r} is not one of {', '.join(_STATES)}", str(path))
        return cls(**values, extra=extra)


def write_status(working_dir: str | os.PathLike, status: str, **info: Any) -> Path:
    """Atomically write `status` with the training position and any other facts in `info` to
    working/kaggle-kit-status.json (``KernelStatus``'s fields go to their place, the rest to `extra`)."""
    named = {f.name for f in fields(KernelStatus)} - {"extra", "updated_at", "run_id", "accelerator"}
    known = {k: v for k, v in info.items() if k in named}
    return KernelStatus(status, **known, extra={k: v for k, v in info.items() if k not in named}).commit(working_dir)


def read_status(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The status in `directory` as a plain dict, or None when there is none or it is not a status file (a cut
    write, a list): for kernel scripts that only look. Code that decides (``chain``) uses ``KernelStatus.load``."""
    try:
        status = KernelStatus.load(directory)
    except StatusError:
        return None
    return None if status is None else status.as_dict()


def mark_predicting(working_dir: str | os.PathLike, output: str, done: int, total: int) -> Path:
    """Record that predictions into `output` (a file name) stopped early, at `done` of `total` items, to be resumed:
    the status says needs-resume (keeping the training position), so ``mark_done`` keeps it and ``chain`` pushes
    another run, which resumes the predictions from this output."""
    try:
        previous = KernelStatus.load(working_dir)
    except StatusError:
        previous = None
    kept = {} if previous is None else _facts(previous)
    return write_status(working_dir, NEEDS_RESUME, **{**kept, "predicting": output, "predicted": done,
                                                      "items": total})  # fmt: skip


def predictions_resumable(status: KernelStatus | None) -> bool:
    """True when `status` says needs-resume only because predictions stopped early (``mark_predicting``): the
    model is finished, so predicting is what the kernel should do."""
    return status is not None and status.status == NEEDS_RESUME and "predicting" in status.extra


def clear_predicting(working_dir: str | os.PathLike, output: str) -> None:
    """The predictions into `output` are complete: a needs-resume that only they caused becomes trained."""
    try:
        status = KernelStatus.load(working_dir)
    except StatusError:
        return
    if predictions_resumable(status) and status.extra.get("predicting") == output:
        kept = _facts(status, "predicting", "predicted", "items")
        write_status(working_dir, TRAINED, **kept)


def mark_done(working_dir: str | os.PathLike | None = None, *, allow_unfinished: bool = False, **info: Any) -> Path:
    """Declare the kernel's job finished (default: the current kernel's working dir), keeping what the status
    already says (the training position) and adding `info`.

    When the status says needs-resume (a ``Deadline`` stopped training, or ``stream_predict`` stopped predicting
    before the cutoff, to be resumed), the job is not done: the status stays as it is, so the next run (or
    ``chain``) resumes, and a warning says so. `allow_unfinished=True` marks it done all the same."""
    if working_dir is None:
        from kaggle_kit.kernel import Kernel

        working_dir = Kernel.current().working_dir
    try:
        previous = KernelStatus.load(working_dir)
    except StatusError:
        previous = None  # a damaged status says nothing worth keeping; the job is done all the same
    if predictions_resumable(previous) and not allow_unfinished:
        log.warning("mark_done: predictions into %s stopped at %s of %s items to be resumed; the status stays %s "
                    "(run the kernel again)", previous.extra["predicting"], previous.extra.get("predicted"),
                    previous.extra.get("items"), NEEDS_RESUME)  # fmt: skip
        return Path(working_dir) / STATUS_NAME
    if previous is not None and previous.status == NEEDS_RESUME and not allow_unfinished:
        log.warning("mark_done: training stopped at %s to be resumed; the status stays %s (run the kernel again)",
                    previous.where(), NEEDS_RESUME)  # fmt: skip
        return Path(working_dir) / STATUS_NAME
    kept = {} if previous is None else _facts(previous)
    return write_status(working_dir, DONE, **{**kept, **info})


def _facts(status: KernelStatus, *dropped: str) -> dict[str, Any]:
    """What a status says of the job, to carry into the next status: all but its verdict, time, run and format (and
    `dropped`)."""
    return {k: v for k, v in status.as_dict().items()
            if k not in ("status", "updated_at", "run_id", "accelerator", "format", *dropped)}  # fmt: skip
