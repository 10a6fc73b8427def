"""`Deadline`: a fastai callback that checkpoints on a timer, stops cleanly before the kernel's cutoff, and resumes.

Add it to a fit and run the same script again, in this kernel or the next one (with the previous output attached as
an input): the fit continues at the exact next batch, with the same schedule, data order and random states.

    learn.fit_one_cycle(10, 1e-3, cbs=kk.Deadline())

Public arguments are minutes (as Kagglers think of them); inside, seconds.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from fastai.callback.core import Callback, CancelEpochException, CancelFitException
from fastai.learner import Learner
from fastcore.foundation import L

from kaggle_kit.checkpoint import CHECKPOINT_DIR, CheckpointError, CheckpointSaver, find_latest_checkpoint
from kaggle_kit.kernel import Kernel
from kaggle_kit.limits import parse_duration
from kaggle_kit.status import NEEDS_RESUME, TRAINED, write_status
from kaggle_kit.train_state import (
    capture_learner,
    capture_rng,
    fit_signature,
    restore_callbacks,
    restore_learner,
    restore_rng,
)

__all__ = ["Deadline"]

log = logging.getLogger(__name__)

_FITS: weakref.WeakKeyDictionary[Learner, int] = weakref.WeakKeyDictionary()  # fits started per learner = stage


class Deadline(Callback):
    """Checkpoint every `every` minutes; before the kernel's cutoff save once more and stop training cleanly.

    `reserve`: time that must stay free after training (prediction, writing the submission): minutes, a duration
    string ("25min", "90s"), or a callable returning minutes (called once per fit, e.g. from the test-set size).
    A safety margin is added, learned while training: the slowest batch, validation and checkpoint write seen, plus
    `safety` minutes. Time counts from the kernel's start (`Kernel`), not this process's.
    `stage`: which fit of a multi-stage script this is (progressive resizing); default: counted per learner.
    `resume`: False ignores existing checkpoints. Checkpoints go to working/checkpoints (2 kept); the kernel's
    status goes to working/kaggle-kit-status.json.
    After the fit, `finished` says whether it ran to its last epoch (now or in an earlier kernel).
    """

    order, run_valid = 65, False  # after Recorder (50), ParamScheduler and trackers (60) have logged the batch

    def __init__(
        self,
        every: float = 30.0,
        reserve: float | str | Callable[[], float] = 20.0,
        *,
        safety: float = 1.0,
        stage: int | None = None,
        resume: bool = True,
        kernel: Kernel | None = None,
        saver: CheckpointSaver | None = None,
    ):
        self.kernel = kernel or Kernel.current()
        self.saver = saver or CheckpointSaver(self.kernel.working_dir / CHECKPOINT_DIR)
        self.every_s, self.safety_s = every * 60.0, safety * 60.0
        self.reserve = reserve
        self.stage_arg, self.resume = stage, resume
        self.finished = False
        self.stopped = False
        self.saves = 0
        self._reset_measurements()

    # --- fit ------------------------------------------------------------------------------------------------------

    def before_fit(self) -> None:
        predicting = not getattr(self.learn, "create_mbar", True)  # get_preds/validate: no_mbar() is on
        if predicting or hasattr(self.learn, "lr_finder") or hasattr(self.learn, "gather_preds"):
            # lr_find runs a fit of its own, and get_preds/validate send before_fit too: not ours to checkpoint.
            # fastai sets `run` back to True after the fit.
            self.run = False
            return
        self.run = True
        self.finished = self.stopped = False
        self._reset_measurements()
        self.stage = self.stage_arg if self.stage_arg is not None else _FITS.get(self.learn, 0)
        _FITS[self.learn] = self.stage + 1
        self.reserve_s = self._reserve_s()
        self.signature = fit_signature(self.learn)
        self._last_save_s = self.kernel.elapsed_s()
        found = find_latest_checkpoint(self.kernel, self.saver) if self.resume else None
        if found is None:
            self._write_status(NEEDS_RESUME, 0, 0)  # training starts: until it ends, the job needs this kernel
            return
        state, path = found
        if state["stage"] > self.stage:
            log.info(
                "stage %d was finished in an earlier run (%s is stage %d): skipping it",
                self.stage,
                path,
                state["stage"],
            )
            self.finished = True
            raise CancelFitException()
        if state["stage"] < self.stage:
            self._write_status(NEEDS_RESUME, 0, 0)
            return  # the newest checkpoint is an earlier stage's: this stage starts fresh
        self._check_signature(state, path)
        restore_learner(self.learn, state["learner"])
        self.learn.train_iter, self.learn.pct_train = state["train_iter"], state["pct_train"]
        if state["fit_done"]:
            log.info("training stage %d already finished in %s: skipping it", self.stage, path)
            self.finished = True
            self._write_status(TRAINED, state["epoch"], state["iteration"])
            raise CancelFitException()
        self._write_status(NEEDS_RESUME, state["epoch"], state["iteration"])
        self._resume = state
        epoch, it = (state["epoch"] + 1, 0) if state["epoch_done"] else (state["epoch"], state["iteration"])
        self._resume_at = (epoch, it)
        log.info("resuming stage %d at epoch %d, batch %d from %s", self.stage, epoch, it, path)

    def after_fit(self) -> None:
        if not self.run:
            return
        last_epoch = self.learn.epoch == self.learn.n_epoch - 1
        if not self.stopped and not self.finished and (last_epoch or self._ended_by_other):
            self.finished = True
            self._save(epoch_done=True, fit_done=True)
            write_status(
                self.kernel.working_dir,
                TRAINED,
                stage=self.stage,
                epoch=self.learn.epoch,
                iteration=len(self.learn.dls.train),
                time_used_s=self.kernel.elapsed_s(),
            )

    # --- epochs: skip the ones a checkpoint already covers ---------------------------------------------------------

    def before_epoch(self) -> None:
        if self._resume is not None and self.learn.epoch < self._resume_at[0]:
            # Hide this epoch from every other callback: none of them sees its after_epoch (no stale records).
            self._stashed_cbs = self.learn.cbs
            self.learn.cbs = L([self])
            raise CancelEpochException()

    def after_epoch(self) -> None:
        if self._stashed_cbs is not None:
            self.learn.cbs, self._stashed_cbs = self._stashed_cbs, None
            return
        self._epoch_iteration = 0
        if self._stop_now():
            self._stop(epoch_done=True)
        elif self.kernel.elapsed_s() - self._last_save_s >= self.every_s:
            self._save(epoch_done=True)

    def before_train(self) -> None:
        dl, self._offset = self.learn.dl, 0
        resume, self._resume = self._resume, None
        if resume is not None and self.learn.epoch == self._resume_at[0]:
            restore_callbacks(self.learn, resume["learner"].get("callbacks", {}), include_schedulers=True)
            self._offset = self._resume_at[1]
            if self._offset:  # mid-epoch: the saved order, minus the batches already trained
                self.learn.train_iter, self.learn.pct_train = resume["train_iter"], resume["pct_train"]
                remaining = list(resume["order"][self._offset * dl.bs :])
                dl.get_idxs = lambda: remaining
                _restore_rng_before_next_batch(dl, resume)
                self._order = list(resume["order"])
                return
            dl.rng.setstate(_tuple(resume["dl_rng"]))  # an epoch boundary: the next order comes from here
            restore_rng(resume["rng"])
        original = type(dl).get_idxs

        def get_idxs():
            self._order = list(original(dl))
            return self._order

        dl.get_idxs = get_idxs

    def after_train(self) -> None:
        _unwrap(self.learn.dls.train)

    def after_cancel_fit(self) -> None:
        _unwrap(self.learn.dls.train)  # a stop mid-epoch skips after_train
        # Another callback ended the fit (EarlyStoppingCallback, say): by the user's own rule it is finished.
        self._ended_by_other = not self.stopped and not self.finished

    # --- batches: time the work, save on the timer, stop before the cutoff -----------------------------------------

    def before_batch(self) -> None:
        self._batch_started = time.perf_counter()

    def after_batch(self) -> None:
        self._batch_s = max(self._batch_s, time.perf_counter() - self._batch_started)
        self._epoch_iteration = self._offset + self.learn.iter + 1
        if self._stop_now():
            self._stop(epoch_done=False)
        elif self.kernel.elapsed_s() - self._last_save_s >= self.every_s:
            self._save(epoch_done=False)

    def before_validate(self) -> None:
        self._valid_started = time.perf_counter()

    def after_validate(self) -> None:
        self._valid_s = max(self._valid_s, time.perf_counter() - self._valid_started)

    # --- helpers -----------------------------------------------------------------------------------------------------

    def margin_s(self) -> float:
        """Seconds kept free beyond the reserve: one more batch, a validation pass and a save could still happen."""
        return self.safety_s + self._batch_s + self._valid_s + self._save_s

    def _stop_now(self) -> bool:
        return self.kernel.remaining_s() <= self.reserve_s + self.margin_s()

    def _stop(self, epoch_done: bool) -> None:
        path = self._save(epoch_done=epoch_done)  # before raising: after_fit handlers must not undo it
        self.stopped = True
        log.warning(
            "stopping training %.0fs before the cutoff (reserve %.0fs + margin %.0fs); resume from %s",
            self.kernel.remaining_s(),
            self.reserve_s,
            self.margin_s(),
            path,
        )
        raise CancelFitException()

    def _save(self, epoch_done: bool, fit_done: bool = False):
        started = time.perf_counter()
        iteration = len(self.learn.dls.train) if epoch_done else self._epoch_iteration
        state = {
            "stage": self.stage, "epoch": int(self.learn.epoch), "iteration": int(iteration),
            "epoch_done": epoch_done, "fit_done": fit_done, "signature": self.signature,
            "train_iter": int(self.learn.train_iter), "pct_train": float(self.learn.pct_train),
            "order": list(self._order), "dl_rng": self.learn.dls.train.rng.getstate(), "rng": capture_rng(),
            "learner": capture_learner(self.learn), "time_used_s": self.kernel.elapsed_s(),
        }  # fmt: skip
        path = self.saver.save(state)
        self._save_s = max(self._save_s, time.perf_counter() - started)
        self._last_save_s = self.kernel.elapsed_s()
        self.saves += 1
        if not fit_done:
            write_status(
                self.kernel.working_dir,
                NEEDS_RESUME,
                stage=self.stage,
                epoch=int(self.learn.epoch),
                iteration=int(iteration),
                time_used_s=self.kernel.elapsed_s(),
                checkpoint=path.name,
            )
        return path

    def _write_status(self, status: str, epoch: int, iteration: int, **info: Any) -> None:
        write_status(
            self.kernel.working_dir,
            status,
            stage=self.stage,
            epoch=int(epoch),
            iteration=int(iteration),
            time_used_s=self.kernel.elapsed_s(),
            **info,
        )

    def _check_signature(self, state: dict[str, Any], path) -> None:
        saved = state["signature"]
        differ = [f"{k}: {saved.get(k)!r} then, {v!r} now" for k, v in self.signature.items() if saved.get(k) != v]
        if differ:
            raise CheckpointError(
                f"checkpoint {path} was written by a different fit ({'; '.join(differ)}); run the "
                "same training code to resume, or pass Deadline(resume=False) to start over",
                str(path),
            )

    def _reserve_s(self) -> float:
        reserve = self.reserve() if callable(self.reserve) else self.reserve
        return parse_duration(reserve, "reserve") if isinstance(reserve, str) else float(reserve) * 60.0

    def _reset_measurements(self) -> None:
        self._batch_s = self._valid_s = self._save_s = 0.0
        self._batch_started = self._valid_started = time.perf_counter()
        self._resume: dict[str, Any] | None = None
        self._resume_at = (0, 0)
        self._stashed_cbs = None
        self._ended_by_other = False
        self._offset = self._epoch_iteration = 0
        self._order: list[int] = []


def _restore_rng_before_next_batch(dl, resume: dict[str, Any]) -> None:
    """Arrange for the saved random states to come back just before the first remaining batch is made.

    Without workers, items are made in this process when the loader samples, after the iterator drew its seed: wrap
    `sample`. With workers, items come from worker processes and this process's randomness starts at the batch
    transforms: wrap `after_batch` once. (Random item transforms in workers then differ from an unbroken run.)
    """

    def restore() -> None:
        dl.rng.setstate(_tuple(resume["dl_rng"]))
        restore_rng(resume["rng"])

    if dl.fake_l.num_workers == 0:
        original_sample = type(dl).sample

        def sample():
            restore()
            return original_sample(dl)

        dl.sample = sample
        return
    had_own = "after_batch" in dl.__dict__
    original = dl.after_batch

    def after_batch(batch):
        if had_own:
            dl.after_batch = original
        else:
            del dl.after_batch
        restore()
        return original(batch)

    dl.after_batch = after_batch
    dl._kk_after_batch = (had_own, original)


def _unwrap(dl) -> None:
    """Remove the per-epoch wrappers `Deadline` put on the training DataLoader."""
    for name in ("get_idxs", "sample"):
        dl.__dict__.pop(name, None)
    if "_kk_after_batch" in dl.__dict__:
        had_own, original = dl.__dict__.pop("_kk_after_batch")
        if had_own:
            dl.after_batch = original
        else:
            dl.__dict__.pop("after_batch", None)


def _tuple(obj: Any) -> Any:
    return tuple(_tuple(v) for v in obj) if isinstance(obj, list | tuple) else obj
