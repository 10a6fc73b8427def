"""A learning rate to start from: fastai's ``lr_find``, run so that it leaves nothing in the kernel's outputs."""

from __future__ import annotations

import os

from fastai.learner import Learner

__all__ = ["suggest_lr"]


def suggest_lr(learn: Learner, plot_path: str | os.PathLike | None = None) -> float:
    """fastai's ``lr_find`` valley suggestion for `learn` (its weights are put back afterwards, as fastai does);
    with `plot_path`, also fastai's loss-against-learning-rate plot, with the suggestion marked, as a PNG there.

    Run it before a ``Deadline`` joins the learner: its short fit is not a training stage. lr_find saves the weights
    in ``learn.path/learn.model_dir`` and deletes the file after; the emptied folder it leaves would count as an
    output, so it goes too.
    """
    models = learn.path / learn.model_dir
    existed = models.exists()
    suggestion = learn.lr_find(show_plot=False).valley
    if not existed and models.is_dir() and not any(models.iterdir()):
        models.rmdir()
    if plot_path is not None:
        from kaggle_kit.charts import save_figure

        learn.recorder.plot_lr_find(suggestions=True, nms=["valley"])  # the same figure lr_find shows
        import matplotlib.pyplot as plt

        save_figure(plt.gcf(), plot_path)
    return float(suggestion)
