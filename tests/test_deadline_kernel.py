"""kill -9 at random points of a training kernel, then rerun: it resumes from the last periodic checkpoint and ends
with the weights of a run that was never interrupted."""

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import make_images, start_kernel_process

pytestmark = pytest.mark.e2e

KERNEL = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
import torch
from fastai.callback.core import Callback
from conftest import make_learner
from kaggle_kit.train.deadline import Deadline


class Slow(Callback):  # widens the window a kill can land in; sleeping draws no random numbers
    def after_batch(self):
        time.sleep(0.03)


images = sorted(Path({images!r}).glob("*.png"))
learn = make_learner("tiny", images, augment=True)
deadline = Deadline(every=0.002)  # a checkpoint every 0.12 s
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(6, 1e-2, cbs=[deadline, Slow()])
torch.save(learn.model.state_dict(), "final.pt")
"""


def _root(tmp_path, name):
    (tmp_path / name / "working").mkdir(parents=True)
    return tmp_path / name


def test_kill_9_at_random_points_then_rerun_gives_the_uninterrupted_weights(tmp_path):
    images = make_images(tmp_path / "images", 48)
    script = tmp_path / "train_kernel.py"
    script.write_text(KERNEL.format(tests=str(Path(__file__).parent), images=str(images[0].parent)))
    clean = _root(tmp_path, "clean")
    proc = start_kernel_process(script, clean)
    assert proc.wait(300) == 0, proc.stdout.read().decode()

    killed = _root(tmp_path, "killed")
    manifest = killed / "working/checkpoints/checkpoints.json"
    rng = random.Random(1234)
    progress = []
    for _ in range(3):
        proc = start_kernel_process(script, killed)
        saved_before = manifest.read_text() if manifest.exists() else ""
        deadline = time.time() + 120
        while (not manifest.exists() or manifest.read_text() == saved_before) and time.time() < deadline:
            time.sleep(0.01)  # wait for this run's first checkpoint: it resumed and moved on
        time.sleep(rng.uniform(0.0, 0.5))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        newest = json.loads(manifest.read_text())["checkpoints"][-1]
        progress.append((newest["epoch"], newest["iteration"]))
    proc = start_kernel_process(script, killed)
    out = proc.communicate(timeout=300)[0].decode()

    assert proc.returncode == 0, out
    assert progress == sorted(progress), progress  # each run went on from where the last one was killed
    assert progress[-1] < (5, 10), progress  # and the last kill still left work to do
    final, expected = torch.load(killed / "working/final.pt"), torch.load(clean / "working/final.pt")
    assert all(torch.equal(final[k], expected[k]) for k in expected)
