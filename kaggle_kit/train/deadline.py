"""`Deadline`: a fastai callback that checkpoints on a timer, stops cleanly before the kernel's cutoff, and resumes.

Add it to a fit and run the same script again, in this kernel or the next one (with the previous output attached as
an input): the fit continues at the exact next batch, with the same schedule, data order and random states.

    learn.fit_one_cycle(10, 1e-3, cbs=kk.Deadline())

Public arguments are minutes (as Kagglers think of them); inside, seconds.
"""

from __future__ import annotations

import logging
import math
import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastai.callback.core import Callback, CancelFitException
from fastai.learner import Learner

from kaggle_kit.errors import KaggleKitError, UsageError
from kaggle_kit.events import record_event
from kaggle_kit.kernel import Kernel
from kaggle_kit.limits import parse_duration
from kaggle_kit.predict.ranks import Ranks
from kaggle_kit.status import DONE, NEEDS_RESUME, TRAINED, KernelStatus, StatusError, write_status
from kaggle_kit.train.checkpoint import CHECKPOINT_DIR, CheckpointSaver
from kaggle_kit.train.resume import Replay, ResumePoint
from kaggle_kit.train.state import fit_signature

__all__ = ["Deadline", "DeadlineError"]

log = logging.getLogger(__name__)

_FITS: weakref.WeakKeyDictionary[Learner, int] = weakref.WeakKeyDictionary()  # fits started per learner = stage
_TRAINED_IN: set[tuple[str, float]] = set()  # kernels (root, start) in which a Deadline fit trained a batch


class DeadlineError(KaggleKitError):
    """The kernel's time left cannot hold one checkpointed batch beyond the reserve and margin."""


class Deadline(Callback):
    """Checkpoint every `every`; before the kernel's cutoff save once more and stop training cleanly.

    Times are duration strings ("30min", "90s", "1h") or plain numbers of minutes (a kernel's settings file).
    `reserve`: time that must stay free after training (prediction, writing the submission), or a callable returning
    minutes (called once per fit, e.g. from the test-set size).
    A safety margin is added, learned while training: the slowest batch, validation and checkpoint write seen, plus
    `safety` (default: 2% of the kernel's time limit, at most one minute, so a 40-second rehearsal run keeps
    under a second and a 9-hour kernel a minute). Time counts from the kernel's start (`Kernel`), not this process's.
    `stage`: which fit of a multi-stage script this is (progressive resizing); default: counted per learner.
    `resume`: False ignores existing checkpoints. Checkpoints go to `checkpoints` (a folder; default
    working/checkpoints; 2 kept), or through `saver`; the kernel's status goes to working/kaggle-kit-status.json.
    `name`: what this training is called in the status and the chain's lines ("segmenter stage/epoch/batch 1/2/1"),
    for a script that trains more than one model.
    On several ranks (``kk.distributed``) rank 0 decides, from the kernel's clock, when to save and when to stop, and
    every rank follows at the same batch; rank 0 writes the one checkpoint, holding every rank's random states (each
    rank gets its own back on resume), and the status. A checkpoint resumes on as many ranks as wrote it.
    After the fit, `finished` says whether it ran to its last epoch (now or in an earlier kernel).
    """

    order, run_valid = 65, False  # after Recorder (50), ParamScheduler and trackers (60) have logged the batch

    def __init__(
        self,
        every: float | str = 30.0,
        reserve: float | str | Callable[[], float] = 20.0,
        *,
        safety: float | str | None = None,
        stage: int | None = None,
        resume: bool = True,
        kernel: Kernel | None = None,
        saver: CheckpointSaver | None = None,
        checkpoints: str | os.PathLike | None = None,
        name: str | None = None,
    ):
        every_s, safety_s = (_minutes_or_duration_s(name, value) for name, value in (("every", every),
                                                                                    ("safety", safety)))  # fmt: skip
        if not callable(reserve):  # a typo is a one-line error now, not at the fit
            _minutes_or_duration_s("reserve", reserve)
        if saver is not None and checkpoints is not None:
            raise UsageError("Deadline: give `checkpoints` (a folder) or `saver`, not both")
        self.kernel = kernel or Kernel.current()
        self.saver = saver or CheckpointSaver(checkpoints or self.kernel.working_dir / CHECKPOINT_DIR)
        self.every_s = every_s
        self.safety_s = self.kernel.limits.margin_s(60.0, 0.02) if safety_s is None else safety_s
        self.reserve = reserve
        self.stage_arg, self.resume, self.training_name = stage, resume, name
        self.finished = self.stopped = False
        self.saves = self._batches = 0
        self.ranks: Ranks | None = None
        self._replay = Replay(None, None)
        self._reset_measurements()

    def __call__(self, event_name: str):
        try:
            return super().__call__(event_name)
        except KaggleKitError as exc:  # fastai prefixes "Exception occured in `Deadline` when ...": one line again
            exc.args = (str(exc.args[0]).split("\n\t", 1)[-1], *exc.args[1:])
            raise

    # --- fit ------------------------------------------------------------------------------------------------------

    def before_fit(self) -> None:
        predicting = not getattr(self.learn, "create_mbar", True)  # get_preds/validate: no_mbar() is on
        if predicting or hasattr(self.learn, "lr_finder") or hasattr(self.learn, "gather_preds"):
            self.run = False  # lr_find, get_preds and validate send before_fit too; fastai resets `run` after the fit
            return
        self.run, self.finished, self.stopped = True, False, False
        self.ranks = Ranks.current()
        self._replay.undo()  # anything a fit that died by an exception left behind
        self._reset_measurements()
        self.stage = self.stage_arg if self.stage_arg is not None else _FITS.get(self.learn, 0)
        _FITS[self.learn] = self.stage + 1
        self.reserve_s = self._reserve_s()
        self.signature = fit_signature(self.learn)
        self._batches = len(self.learn.dls.train)  # per rank on several (the DistributedDL's), kept after the fit
        self._last_save_s = self.kernel.elapsed_s()
        if not self.resume and self.saver.exists():
            log.warning("Deadline(resume=False): ignoring the checkpoints in %s", self.saver.directory)
        point = ResumePoint.find(self.kernel, self.saver, self.stage, self.signature) if self.resume else None
        if point is not None and self.ranks is not None:
            point = point.for_rank(self.ranks.rank)  # the same file on every rank; its own random states
        if point is not None and point.stage > self.stage:
            log.info("stage %d was finished in an earlier run (%s is stage %d)", self.stage, point.path, point.stage)
            self.finished = True
            raise CancelFitException()
        if point is None or not point.fit_done:
            self._check_time_for_a_batch(point.timing if point is not None else {})
        self._replay = Replay(self.learn, point)
        if point is None:
            self._write_status(NEEDS_RESUME, 0, 0)  # until training ends, the job needs this kernel
            return
        point.restore(self.learn)
        epoch, batch = self._replay.start
        if point.fit_done:
            log.info("training stage %d already finished in %s: skipping it", self.stage, point.path)
            self.finished = True
            if self._main and point.path is not None and point.path.parent.resolve() != self.saver.directory.resolve():
                # from an attached input: this kernel's output must carry it too, or a kernel that attaches this
                # output (the next run of a chain) would find no checkpoint and train the stage again from scratch
                self.saver.save(point.state)
            if self._main and not self._job_done():  # a finished job rerun stays done until something says otherwise
                self._write_status(TRAINED, point.epoch, point.iteration)
            raise CancelFitException()
        self._write_status(NEEDS_RESUME, epoch, batch)
        if self._main:
            log.info("resuming stage %d at epoch %d, batch %d from %s", self.stage, epoch, batch, point.path)

    def after_fit(self) -> None:
        if not self.run:
            return
        self._replay.undo()
        last_epoch = self.learn.epoch == self.learn.n_epoch - 1
        if not self.stopped and not self.finished and (last_epoch or self._ended_by_other):
            self.finished = True
            path = self._save(epoch_done=True, fit_done=True)
            if path is not None:
                self._write_status(TRAINED, self.learn.epoch, self._batches, checkpoint=path.name)

    def after_cancel_fit(self) -> None:
        self._replay.undo()
        # Another callback ended the fit (EarlyStoppingCallback, say): by the user's own rule it is finished.
        self._ended_by_other = not self.stopped and not self.finished

    # --- epochs and batches: replay what a checkpoint covers, time the work, save, stop before the cutoff ----------

    def before_epoch(self) -> None:
        self._replay.skip_epoch(self)

    def after_epoch(self) -> None:
        if self._replay.end_epoch():
            return
        self._epoch_iteration = 0
        self._save_or_stop(epoch_done=True)

    def before_train(self) -> None:
        self._offset = self._replay.begin_train()

    def before_batch(self) -> None:
        self._batch_started = time.perf_counter()

    def after_batch(self) -> None:
        _TRAINED_IN.add(self._kernel_key())
        self._batch_s = max(self._batch_s, time.perf_counter() - self._batch_started)
        self._epoch_iteration = self._offset + self.learn.iter + 1
        self._save_or_stop(epoch_done=False)

    def before_validate(self) -> None:
        self._valid_started = time.perf_counter()

    def after_validate(self) -> None:
        self._valid_s = max(self._valid_s, time.perf_counter() - self._valid_started)

    def margin_s(self) -> float:
        """Seconds kept free beyond the reserve: one more batch, a validation pass and a save could still happen."""
        return self.safety_s + self._batch_s + self._valid_s + self._save_s

    # --- helpers -----------------------------------------------------------------------------------------------------

    @property
    def _main(self) -> bool:
        """True where files are written: rank 0, or a process on its own."""
        return self.ranks is None or self.ranks.main

    def _decide(self) -> tuple[bool, bool]:
        """(save now, stop now): rank 0's clock decides for every rank, so all enter the same collectives."""
        stop = self.kernel.remaining_s() <= self.reserve_s + self.margin_s()
        save = stop or self.kernel.elapsed_s() - self._last_save_s >= self.every_s
        return self.ranks.broadcast((save, stop)) if self.ranks is not None else (save, stop)

    def _save_or_stop(self, epoch_done: bool) -> None:
        save, stop = self._decide()
        if not stop:
            if save:
                self._save(epoch_done=epoch_done)
            return
        path = self._save(epoch_done=epoch_done)  # before raising: after_fit handlers must not undo it
        self.stopped = True
        if self._main:
            record_event("stop", stage=self.stage, epoch=self.learn.epoch, checkpoint=path.name)
            log.warning("stopping training: %.0f s left, %.0f s needed (reserve %.0f + margin %.0f); resume from %s",
                        self.kernel.remaining_s(), self.reserve_s + self.margin_s(), self.reserve_s,
                        self.margin_s(), path)  # fmt: skip
        raise CancelFitException()

    def _save(self, epoch_done: bool, fit_done: bool = False) -> Path | None:
        """Write a checkpoint (rank 0, with every rank's random states); its path, None on the other ranks."""
        started = time.perf_counter()
        ranks = None
        if self.ranks is not None:  # each rank's own random states and share of the epoch's order
            ranks = self.ranks.gather({**ResumePoint.generators(self.learn), "order": list(self._replay.order)})
        path = None
        if self._main:
            iteration = self._batches if epoch_done else self._epoch_iteration
            point = ResumePoint.capture(self.learn, stage=self.stage, iteration=iteration, epoch_done=epoch_done,
                                        fit_done=fit_done, signature=self.signature, order=self._replay.order,
                                        time_used_s=self.kernel.elapsed_s(), ranks=ranks,
                                        timing={"batch_s": self._batch_s, "valid_s": self._valid_s,
                                                "save_s": self._save_s})  # fmt: skip
            path = self.saver.save(point.state)
            if not fit_done:  # the status names where the next run goes on: after a validated epoch, the next one
                epoch, batch = point.continue_at()
                self._write_status(NEEDS_RESUME, epoch, batch, checkpoint=path.name)
        self._save_s = max(self._save_s, time.perf_counter() - started)
        self._last_save_s = self.kernel.elapsed_s()
        self.saves += 1
        return path

    def _write_status(self, status: str, epoch: int, iteration: int, **info: Any) -> None:
        if not self._main:
            return
        write_status(self.kernel.working_dir, status, stage=self.stage, epoch=int(epoch), iteration=int(iteration),
                     time_used_s=self.kernel.elapsed_s(), epochs=int(self.learn.n_epoch),
                     batches=self._batches, **self._named(), **info)  # fmt: skip

    def _named(self) -> dict[str, str]:
        return {"training": self.training_name} if self.training_name else {}

    def _job_done(self) -> bool:
        try:
            status = KernelStatus.load(self.kernel.working_dir)
        except StatusError:
            return False
        return status is not None and status.status == DONE

    def _kernel_key(self) -> tuple[str, float]:
        return str(self.kernel.root), float(self.kernel.started_at)

    def _check_time_for_a_batch(self, timing: dict[str, float]) -> None:
        """Refuse, before this kernel trains anything, a kernel whose time left cannot hold one checkpointed batch
        beyond the reserve and the safety margin (the batch and save times the last checkpoint recorded, where it
        did): it could not make progress, and a chain of such runs would spend its quota for nothing. A later fit
        of a kernel that already trained (the next stage) is not refused: it stops at its first checkpoint."""
        if self._kernel_key() in _TRAINED_IN:
            return
        batch, save = timing.get("batch_s", 0.0), timing.get("save_s", 0.0)
        needed = self.reserve_s + self.safety_s + batch + save
        left = self.kernel.remaining_s()
        if self.ranks is not None:  # rank 0's clock for every rank: all refuse, or none
            left = self.ranks.broadcast(left)
        if left < needed:
            raise DeadlineError(f"Deadline: {left:.0f} s left, {needed:.0f} s needed for one checkpointed batch "
                                f"(reserve {self.reserve_s:.0f} + safety {self.safety_s:.0f} + batch and save "
                                f"{batch + save:.0f}): this kernel cannot make progress; lower reserve or safety, or "
                                "give each run more time", left)  # fmt: skip

    def _reserve_s(self) -> float:
        reserve = self.reserve() if callable(self.reserve) else self.reserve
        return _minutes_or_duration_s("reserve", reserve)

    def _reset_measurements(self) -> None:
        self._batch_s = self._valid_s = self._save_s = 0.0
        self._batch_started = self._valid_started = time.perf_counter()
        self._ended_by_other = False
        self._offset = self._epoch_iteration = 0


def _minutes_or_duration_s(argument: str, value) -> float | None:
    """Seconds from a duration string or a number of minutes (None stays None); a one-line error otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return parse_duration(value, argument)
        raise UsageError(f"Deadline({argument}={value!r}) is not a duration: say the unit ('{value}min' or "
                         f"'{value}s'), or give a number of minutes", value)  # fmt: skip
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise UsageError(f"Deadline({argument}={value!r}): give a duration ('30min', '90s') or minutes >= 0", value)
    return float(value) * 60.0
