"""A learning rate to start from: fastai's ``lr_find``, run so that it leaves nothing in the kernel's outputs."""

from __future__ import annotations

from fastai.learner import Learner

__all__ = ["suggest_lr"]


def suggest_lr(learn: Learner) -> float:
    """fastai's ``lr_find`` valley suggestion for `learn` (its weights are put back afterwards, as fastai does).

    Run it before a ``Deadline`` joins the learner: its short fit is not a training stage. lr_find saves the weights
    in ``learn.path/learn.model_dir`` and deletes the file after; the emptied folder it leaves would count as an
    output, so it goes too.
    """
    models = learn.path / learn.model_dir
    existed = models.exists()
    suggestion = learn.lr_find(show_plot=False).valley
    if not existed and models.is_dir() and not any(models.iterdir()):
        models.rmdir()
    return float(suggestion)
