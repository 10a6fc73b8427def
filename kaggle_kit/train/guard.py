"""Training that does nothing is an error, not a run marked done.

fastai trains on silently when the training set is smaller than a batch with `drop_last` (fastprogress says "Your
generator is empty" and every epoch has no batch), when the loss is NaN in every batch, or when no optimizer step
happens. The kernel then checkpoints an untrained model, tunes thresholds on it and writes status `done`.
`TrainingGuard` stops such a fit with a one-line `TrainingError` instead: before the first batch for an empty training
set, at the end of the first epoch that had batches but no step or no finite loss.
"""

from __future__ import annotations

import math

from fastai.callback.core import Callback

from kaggle_kit.errors import KaggleKitError

__all__ = ["TrainingGuard", "TrainingError", "fit_guarded"]


class TrainingError(KaggleKitError, RuntimeError):
    """A fit that cannot train: no training batch, a loss that is never finite, or no optimizer step."""

    def __init__(self, message: str, value: object = None):
        super().__init__(message, value)
        self.message = message


class TrainingGuard(Callback):
    """A fastai callback: raise `TrainingError` when a fit would train nothing (see the module's text)."""

    order = -20  # before Deadline: nothing is checkpointed or marked for a fit that trains nothing

    def __call__(self, event_name: str):
        try:
            return super().__call__(event_name)
        except TrainingError as exc:  # fastai prefixes "Exception occured in ... when calling event ...": one line
            exc.args = (exc.message,)
            raise

    def before_train(self):  # a fit's training phase only (get_preds and validate have none)
        train = self.learn.dls.train  # the DataLoader itself: a resumed epoch's replay may have no batch left
        if len(train) == 0:
            raise TrainingError(
                f"no training batch: {len(train.dataset)} training item(s) with batch size {train.bs}"
                + (" and drop_last" if getattr(train, "drop_last", False) else "")
                + "; use a smaller bs or more training images"
            )
        self._batches = self._steps = self._finite = 0

    def after_step(self):
        self._steps += 1

    def after_batch(self):
        if not self.training:
            return
        self._batches += 1
        if math.isfinite(float(self.learn.loss.detach())):
            self._finite += 1

    def after_train(self):
        if self._batches == 0:  # a resumed epoch with nothing left to do, or cancelled: nothing to judge
            return
        epoch = self.learn.epoch + 1
        if self._finite == 0:
            raise TrainingError(
                f"the training loss was not finite in any of the {self._batches} batches of epoch {epoch}: "
                "lower the learning rate, or check the inputs and targets for NaN"
            )
        if self._steps == 0:
            raise TrainingError(f"no optimizer step in the {self._batches} batches of epoch {epoch}")


def fit_guarded(learn, epochs: int, lr: float, deadline: Callback, *, pretrained: bool = False,
                freeze_epochs: int = 1) -> bool:  # fmt: skip
    """Train `learn` as the seeds do, under `deadline` (a ``kk.Deadline``) and a ``TrainingGuard``: fastai's
    ``fine_tune`` (the pretrained body frozen for `freeze_epochs`, then all layers with discriminative learning
    rates) when `pretrained`, else ``fit_one_cycle``. Returns False when the deadline stopped it (checkpointed: run
    the kernel again to resume); a fit that would train nothing raises ``TrainingError``."""
    cbs = [TrainingGuard(), deadline]
    if pretrained:
        learn.fine_tune(epochs, lr, freeze_epochs=freeze_epochs, cbs=cbs)
    else:
        learn.fit_one_cycle(epochs, lr, cbs=cbs)
    return not deadline.stopped
