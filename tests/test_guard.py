"""TrainingGuard: a fit that trains nothing stops with one line instead of checkpointing an untrained model."""

import json
from pathlib import Path

import pytest
import torch
from conftest import make_class_folders, make_images, make_learner

from kaggle_kit.templates import kernels_dir
from kaggle_kit.train.guard import TrainingError, TrainingGuard


def test_a_training_set_smaller_than_a_batch_is_an_error_before_any_batch(tmp_path):
    learn = make_learner("tiny", make_images(tmp_path, 10), bs=16)  # 8 training images, bs 16, drop_last

    with pytest.raises(
        TrainingError, match=r"no training batch: 8 training item\(s\) with batch size 16 and drop_last"
    ):
        learn.fit(1, 1e-3, cbs=TrainingGuard())
    assert learn.train_iter == 0


def test_a_loss_that_is_never_finite_is_an_error_at_the_end_of_the_epoch(tmp_path):
    learn = make_learner("tiny", make_images(tmp_path, 24), bs=4)
    learn.loss_func = lambda out, target: out.sum() * torch.tensor(float("nan"))

    with pytest.raises(TrainingError, match=r"^the training loss was not finite in any of the \d+ batches of epoch 1"):
        learn.fit(2, 1e-3, cbs=TrainingGuard())
    assert learn.epoch == 0  # stopped after the first epoch, not after the whole fit


def test_a_fit_that_trains_is_untouched_and_predictions_still_work(tmp_path):
    learn = make_learner("tiny", make_images(tmp_path, 24), bs=4)
    guard = TrainingGuard()
    learn.add_cb(guard)

    learn.fit(1, 1e-3)
    trained = learn.train_iter
    learn.dls.train.bs = 64  # an empty training DataLoader does not matter when only predicting
    probs, _targets = learn.get_preds(ds_idx=1)

    assert trained >= 4
    assert len(probs) == len(learn.dls.valid_ds)


@pytest.mark.e2e
def test_the_classification_kernel_stops_in_one_line_and_is_not_marked_done(run_kernel, tmp_path):
    data = tmp_path / "shapes"
    make_class_folders(data, 10, 4)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"size": 32, "bs": 32, "epochs": 2, "num_workers": 0}))

    run = run_kernel(kernels_dir() / "image-classification" / "kernel.py", inputs={"your-images": data}, memory="6GiB",
                     env={"KAGGLE_KIT_CONFIG": str(config)})  # fmt: skip

    assert run.report.exit_code == 1, run.explain()
    last = [line for line in run.stderr.splitlines() if line.strip()][-1]
    assert last == "kernel: no training batch: 8 training item(s) with batch size 32 and drop_last; use a smaller " \
        "bs or more training images"  # fmt: skip
    assert "Traceback" not in run.stderr
    status = Path(run.report.working_dir) / "kaggle-kit-status.json"
    assert not status.exists() or json.loads(status.read_text())["status"] != "done"
    assert not (Path(run.report.working_dir) / "submission.csv").exists()
