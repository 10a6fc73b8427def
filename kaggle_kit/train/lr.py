"""A learning rate to start from: fastai's ``lr_find``, run so that it leaves nothing in the kernel's outputs."""

from __future__ import annotations

import logging
import os

from fastai.learner import Learner

__all__ = ["suggest_lr"]

log = logging.getLogger(__name__)


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
        _save_plot(learn, float(suggestion), plot_path)
    return float(suggestion)


def _save_plot(learn: Learner, suggestion: float, path: str | os.PathLike) -> None:
    """fastai's lr_find plot with the valley marked; a picture never costs the run (a warning instead)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kaggle_kit.vision.charts import save_figure

    try:
        learn.recorder.plot_lr_find()  # the figure lr_find(show_plot=True) draws
        plt.gca().axvline(suggestion, color="tab:red", ls="--", lw=1, label=f"valley {suggestion:.2e}")
        plt.gca().legend(fontsize=8)
        save_figure(plt.gcf(), path)
    except Exception as exc:  # noqa: BLE001 - any drawing failure is the picture's, not the kernel's
        plt.close("all")
        log.warning("could not draw %s: %s: %s", path, type(exc).__name__, exc)
