"""What a training checkpoint holds, and how a fastai fit continues from it exactly: the one owner of its content.

`ResumePoint` is a moment of a fit: where it was (stage, epoch, batch), the fit's signature, the learner's state
(``train_state``), the data order of its epoch and every random state. `capture` makes one, `from_checkpoint`
validates one read back, `check` refuses a different fit, `restore` puts the learner back.

`Replay` carries a fit from a `ResumePoint` through fastai's events: it hides the epochs the point already covers
from every other callback, replays the rest of the interrupted epoch in the saved order, and records each epoch's
order for the next save. It never changes the training DataLoader (the replayed epoch runs on a copy that fastai
drops when the epoch ends); what it changes briefly (the callback list while an epoch is skipped, a one-shot order
recorder on the DataLoader) removes itself, and `undo()` removes anything left after an exception.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from fastai.callback.core import CancelEpochException
from fastai.learner import Learner
from fastcore.foundation import L

from kaggle_kit.kernel import Kernel
from kaggle_kit.train.checkpoint import CheckpointError, CheckpointSaver, find_latest_checkpoint
from kaggle_kit.train.state import (
    base_loader,
    capture_learner,
    capture_rng,
    restore_callbacks,
    restore_learner,
    restore_rng,
)

__all__ = ["ResumePoint", "Replay", "FORMAT"]

FORMAT = 2
_KEYS = ("stage", "epoch", "iteration", "epoch_done", "fit_done", "signature", "train_iter", "pct_train", "order",
         "dl_rng", "rng", "learner")  # fmt: skip


class ResumePoint:
    """One checkpointed moment of a fit (a dict of plain values and tensors, see `capture`) and its file."""

    def __init__(self, state: dict[str, Any], path: Path | None = None):
        self.state, self.path = state, path

    @classmethod
    def capture(cls, learn: Learner, *, stage: int, iteration: int, epoch_done: bool, fit_done: bool,
                signature: dict[str, Any], order: list[int], time_used_s: float,
                timing: dict[str, float] | None = None, ranks: list[dict[str, Any]] | None = None
                ) -> ResumePoint:  # fmt: skip
        """The fit of `learn` now: `iteration` batches of its current epoch trained (seconds in `time_used_s`;
        `timing`: the slowest batch, validation and save seen, seconds, for the next run's start check; `ranks`:
        every rank's `generators()`, in rank order, when several train together)."""
        return cls({
            "format": FORMAT, "stage": int(stage), "epoch": int(learn.epoch), "iteration": int(iteration),
            "epoch_done": bool(epoch_done), "fit_done": bool(fit_done), "signature": signature,
            "train_iter": int(learn.train_iter), "pct_train": float(learn.pct_train), "order": list(order),
            **cls.generators(learn), "learner": capture_learner(learn),
            "time_used_s": float(time_used_s), "timing": {k: float(v) for k, v in (timing or {}).items()},
            **({"ranks": list(ranks)} if ranks else {}),
        })  # fmt: skip

    @staticmethod
    def generators(learn: Learner) -> dict[str, Any]:
        """This process's random states: the training DataLoader's shuffling generator and the global ones."""
        return {"dl_rng": base_loader(learn.dls.train).rng.getstate(), "rng": capture_rng()}

    def for_rank(self, rank: int) -> ResumePoint:
        """The point as rank `rank` resumes it: with its own random states (a point of one process: as it is)."""
        ranks = self.state.get("ranks")
        if not ranks:
            return self
        return ResumePoint({**self.state, **ranks[rank]}, self.path)

    @classmethod
    def from_checkpoint(cls, state: Any, path: Path) -> ResumePoint:
        """Validate a loaded checkpoint; CheckpointError names the file when it is not one this code can resume."""
        fields = state if isinstance(state, dict) else {}
        missing = [k for k in _KEYS if k not in fields]
        if missing or fields.get("format", 1) > FORMAT:
            raise CheckpointError(
                f"checkpoint {path} is not one this kaggle_kit can resume (format {fields.get('format', 1)}, missing "
                f"{', '.join(missing) or 'nothing'}); pass Deadline(resume=False) to start over",
                str(path),
            )
        return cls(state, path)

    # the saved fields, by name: nobody outside this class reads `state` by key
    stage = property(lambda self: int(self.state["stage"]), doc="the fit's stage (a kernel's first fit is 0)")
    epoch = property(lambda self: int(self.state["epoch"]), doc="the epoch the point was taken in")
    iteration = property(lambda self: int(self.state["iteration"]), doc="batches of that epoch trained")
    epoch_done = property(lambda self: bool(self.state["epoch_done"]), doc="True at the end of an epoch")
    fit_done = property(lambda self: bool(self.state["fit_done"]), doc="True when the whole fit had ended")
    signature = property(lambda self: dict(self.state["signature"]), doc="what identifies the fit (fit_signature)")
    order = property(lambda self: list(self.state["order"]), doc="the epoch's item order, for the replay")
    time_used_s = property(lambda self: float(self.state.get("time_used_s", 0.0)), doc="kernel seconds used")
    timing = property(
        lambda self: {k: float(v) for k, v in dict(self.state.get("timing") or {}).items()},
        doc="the slowest batch, validation and save of the run that wrote it (seconds; may be empty)",
    )

    @classmethod
    def find(cls, kernel: Kernel, saver: CheckpointSaver, stage: int, signature: dict[str, Any]) -> ResumePoint | None:
        """The point fit `stage` continues from: the most advanced valid checkpoint (working dir or attached inputs)
        of this stage, or of a later one (then this stage finished earlier); None to start fresh."""
        found = find_latest_checkpoint(kernel, saver)
        point = cls.from_checkpoint(*found) if found is not None else None
        if point is None or point.stage < stage:
            return None  # nothing, or an earlier stage's checkpoint: this stage starts fresh
        if point.stage == stage:
            point.check(signature)
        return point

    def continue_at(self) -> tuple[int, int]:
        """(epoch, batch) where training goes on."""
        if self.epoch_done:
            return self.epoch + 1, 0
        return self.epoch, self.iteration

    def check(self, signature: dict[str, Any]) -> None:
        """Raise CheckpointError, naming each difference, if this point belongs to another fit."""
        saved = self.signature
        differ = [_difference(k, saved[k], v) for k, v in signature.items() if k in saved and saved[k] != v]
        if differ:
            raise CheckpointError(
                f"checkpoint {self.path} was written by a different fit ({'; '.join(differ)}); run the same training "
                "code to resume, or pass Deadline(resume=False) to start over",
                str(self.path),
            )

    def restore(self, learn: Learner) -> None:
        """Put the learner's model, optimizer, recorder, callbacks and schedule position back."""
        restore_learner(learn, self.state["learner"])
        self.restore_schedule(learn)

    def restore_schedule(self, learn: Learner) -> None:
        """Put the one-cycle schedule's position back (fastai's train_iter and pct_train)."""
        learn.train_iter, learn.pct_train = self.state["train_iter"], self.state["pct_train"]

    def restore_callbacks(self, learn: Learner) -> None:
        """Put the callbacks' saved state back, schedulers included (at the start of the resumed epoch)."""
        restore_callbacks(learn, self.state["learner"].get("callbacks", {}), include_schedulers=True)

    def restore_generators(self, dl: Any, *, global_rng: bool) -> None:
        """Put the DataLoader's shuffling generator back, and with `global_rng` Python's, numpy's and torch's."""
        base_loader(dl).rng.setstate(_tuple(self.state["dl_rng"]))
        if global_rng:
            restore_rng(self.state["rng"])


class Replay:
    """Drives one fit from `point` (or from scratch when None); call its methods from the matching fastai events."""

    def __init__(self, learn: Learner, point: ResumePoint | None):
        self.learn, self.point = learn, point
        self.start = point.continue_at() if point is not None else (0, 0)
        self.order: list[int] = []  # the current epoch's item order, for the next save
        self._stashed_cbs = None
        self._recording = None  # the DataLoader carrying the one-shot order recorder

    def skip_epoch(self, owner: Any) -> None:
        """In before_epoch: if `point` covers this epoch, hide it from every callback but `owner` and cancel it."""
        if self.point is not None and self.learn.epoch < self.start[0]:
            self._stashed_cbs, self.learn.cbs = self.learn.cbs, L([owner])  # no stale records in other callbacks
            raise CancelEpochException()

    def end_epoch(self) -> bool:
        """In after_epoch: put the callbacks back; True if the epoch was a skipped one."""
        if self._stashed_cbs is None:
            return False
        self.learn.cbs, self._stashed_cbs = self._stashed_cbs, None
        return True

    def begin_train(self) -> int:
        """In before_train: arrange this epoch's data order; return the batches already trained in it."""
        dl, point = self.learn.dl, self.point
        if point is None or self.learn.epoch != self.start[0]:
            self._record_order(dl)
            return 0
        self.point = None  # the point is used up: later epochs run normally
        point.restore_callbacks(self.learn)
        offset = self.start[1]
        if not offset:  # an epoch boundary: the next order comes from the saved generator states
            point.restore_generators(dl, global_rng=True)
            self._record_order(dl)
            return 0
        point.restore_schedule(self.learn)
        self.order = point.order
        point.restore_generators(dl, global_rng=False)  # where the unbroken run's generator is after this epoch
        self.learn.dl = _replay_loader(dl, self.order[offset * base_loader(dl).bs :], point.state)
        return offset

    def undo(self) -> None:
        """Remove anything still changed on the learner (after an exception fastai does not report to callbacks)."""
        if self._stashed_cbs is not None:
            self.learn.cbs, self._stashed_cbs = self._stashed_cbs, None
        if self._recording is not None:
            self._recording.__dict__.pop("get_idxs", None)
            self._recording = None

    def _record_order(self, dl) -> None:
        original = type(dl).get_idxs

        def get_idxs():
            del dl.get_idxs  # one shot: the DataLoader is itself again as soon as the epoch's iteration starts
            self._recording = None
            self.order = list(original(dl))
            return self.order

        dl.get_idxs, self._recording = get_idxs, dl


def _difference(key: str, then: Any, now: Any) -> str:
    """One difference between two fit signatures, short enough for a one-line refusal (a checkpoint written before
    a key existed is not compared on it: `check` skips keys the saved signature lacks)."""
    if key == "schedule_values" and isinstance(then, dict) and isinstance(now, dict):
        said = []
        for name in sorted(set(then) | set(now)):
            if then.get(name) != now.get(name):
                said.append(f"{name} schedule {_span(then.get(name))} then, {_span(now.get(name))} now")
        return "; ".join(said)
    if key == "ranks":
        return (
            f"ranks: written on {then}, this run has {now} (a checkpoint resumes on as many ranks as wrote it: as "
            "many GPUs; fewer ranks than GPUs with launch_on_every_gpu(max_ranks=N), in the shipped kernels "
            "max_gpus)"
        )
    if key == "shapes":
        return "model: parameters of other shapes (another architecture or head)"
    shown = f"{then!r} then, {now!r} now"
    return f"{key}: {shown if len(shown) <= 100 else 'changed'}"


def _span(values: Any) -> str:
    """A sampled schedule as start -> peak -> end."""
    flat = np.asarray(values if values is not None else [], dtype=float)
    if flat.size == 0:
        return "none"
    per_point = flat.reshape(len(values), -1).max(axis=1)
    peak_at = int(per_point.argmax()) * 100 // max(len(per_point) - 1, 1)
    return f"{per_point[0]:.3g} -> {per_point.max():.3g} at {peak_at}% -> {per_point[-1]:.3g}"


def _replay_loader(dl, remaining: list[int], state: dict[str, Any]):
    """A copy of `dl` that yields `remaining` and brings the saved random states back just before its first batch.

    Without workers, items are made in this process when the loader samples, after the iterator drew its seed: wrap
    `sample`. With workers, items come from worker processes and this process's randomness starts at the batch
    transforms: wrap `after_batch` once. (Random item transforms in workers then differ from an unbroken run.)
    """
    saved_python = random.getstate()
    copy = base_loader(dl).new()  # DataLoader.__init__ draws a seed from Python's generator: put it back
    random.setstate(saved_python)
    copy.get_idxs = lambda: remaining  # on a rank: what is left of its own share (a DistributedDL's slice)
    if base_loader(dl) is not dl:
        copy.device = dl.device  # the rank's device, as the DistributedDL it stands in for

    def restore() -> None:
        copy.rng.setstate(_tuple(state["dl_rng"]))
        restore_rng(state["rng"])

    if copy.fake_l.num_workers == 0:
        original_sample = type(copy).sample

        def sample():
            restore()
            return original_sample(copy)

        copy.sample = sample
        return copy
    original = copy.after_batch

    def after_batch(batch):
        copy.after_batch = original
        restore()
        return original(batch)

    copy.after_batch = after_batch
    return copy


def _tuple(obj: Any) -> Any:
    return tuple(_tuple(v) for v in obj) if isinstance(obj, list | tuple) else obj
