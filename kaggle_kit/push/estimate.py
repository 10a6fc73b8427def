"""How far a chain's job has got and how much more it will cost: the measure of progress `chain` uses to call a run
stuck, and the estimate it prints after each run ("run 2 of about 4; about 19 GPU hours left to go").

A run's place in the job is read from the status it left (as recorded in chain.json): the training position (which
model, stage, epoch and batch, with the fit's epochs and batches per epoch, from ``kk.Deadline``) and the predictions'
(items committed of all, from ``stream_predict``). Progress is anything the next run will not redo: more batches of
the fit, a later stage or model, more prediction items. The estimate divides what is left of the fit in progress and
of the predictions by what the runs so far did per run, and multiplies the runs by their average length. It knows
only the fit in progress: a kernel with more fits ahead (progressive resizing, a second model) needs more runs than
the first estimates, and each new fit revises it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Estimate", "estimate", "made_progress", "place", "UNMEASURED"]

Run = Mapping[str, Any]  # one run as chain.json records it
UNMEASURED = 1e-9  # the progress of a run that moved by an amount its status does not measure


@dataclass(frozen=True)
class Estimate:
    """After run `run`: about `runs` runs in all and `seconds_left` (kernel seconds at the real scale) still to
    go; `gpu` when the runs use GPU quota."""

    run: int
    runs: int
    seconds_left: float
    gpu: bool

    def run_of(self) -> str:
        """E.g. "run 2 of about 4"."""
        return f"run {self.run} of about {self.runs}"

    def left(self) -> str:
        """E.g. "about 19 GPU hours left to go"."""
        hours = self.seconds_left / 3600
        amount = f"{hours:.0f}" if hours >= 10 else f"{hours:.1f}"
        return f"about {amount} {'GPU ' if self.gpu else ''}hours left to go"

    def describe(self) -> str:
        """E.g. "run 2 of about 4; about 19 GPU hours left to go"."""
        return f"{self.run_of()}; {self.left()}"


def place(run: Run) -> tuple[tuple, float | None, float | None]:
    """Where a run left the job: (which fit: training name and stage; share of that fit's batches done, None when
    the status does not say how long its fit is; share of the prediction items committed, None when it has not
    predicted)."""
    fit = (run.get("training"), run.get("stage"))
    epochs, batches = run.get("epochs"), run.get("batches")
    share = None
    if _count(epochs) and _count(batches) and isinstance(run.get("epoch"), int):
        share = min(1.0, (run["epoch"] * batches + (run.get("iteration") or 0)) / (epochs * batches))
    predicted, items = run.get("predicted"), run.get("items")
    predictions = predicted / items if isinstance(predicted, int) and _count(items) else None
    return fit, share, predictions


def made_progress(before: Run | None, run: Run) -> float:
    """The share of work `run` did after `before` (the run it resumed from; None: a fresh start): batches of the
    fit, plus a whole fit for each one it finished and moved on from, plus prediction items. 0.0 is none at all: the
    same position with no new checkpoint. A run that moved by an amount its status cannot measure (a script that
    does not say how long its fit is) did `UNMEASURED`."""
    fit, share, predictions = place(run)
    if before is None:
        done = share or 0.0
    elif _position(before) == _position(run):
        # the same batch of the same fit: a new checkpoint there is all the next run will not redo
        new_checkpoint = run.get("checkpoint") and run.get("checkpoint") != before.get("checkpoint")
        return UNMEASURED if new_checkpoint else 0.0
    else:
        old_fit, old_share, old_predictions = place(before)
        if share is None or old_share is None:
            done = 0.0
        elif fit == old_fit:
            done = max(0.0, share - old_share)
        else:
            done = (1.0 - old_share) + share  # finished its fit and went on to the next
        if predictions is not None:
            predictions -= old_predictions or 0.0
    done += max(0.0, predictions or 0.0)
    return done if done > 0 or before is None else UNMEASURED  # it moved: progress, however much


def estimate(runs: Sequence[Run], gpu: bool, time_scale: float = 1.0) -> Estimate | None:
    """The estimate after the last of `runs` (chain.json's runs that made progress, in order, each with its
    ``time_used_s``; the last one's "run" number, which counts failed runs too, is where the count goes on), None
    when the last run's status does not say how much is left or the runs made no measurable progress. `time_scale`:
    what one second of these runs stands for (a rehearsal's runs are shortened: its ``profile time / --time``)."""
    if not runs:
        return None
    _fit, share, predictions = place(runs[-1])
    if share is None and predictions is None:
        return None
    done, before = 0.0, None
    for run in runs:
        done += made_progress(before, run)
        before = run
    if done <= len(runs) * UNMEASURED:
        return None
    left = (1.0 - (share if share is not None else 1.0)) + (1.0 - predictions if predictions is not None else 0.0)
    more = math.ceil(left / (done / len(runs)) - 1e-9) if left > 1e-9 else 0
    seconds = [r["time_used_s"] for r in runs if isinstance(r.get("time_used_s"), int | float)]
    per_run = sum(seconds) / len(seconds) if seconds else 0.0
    number = runs[-1].get("run") if isinstance(runs[-1].get("run"), int) else len(runs)  # failed runs count too
    return Estimate(number, number + more, more * per_run * time_scale, gpu)


def _position(run: Run) -> tuple:
    return run.get("training"), run.get("stage"), run.get("epoch"), run.get("iteration"), run.get("predicted")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
