"""Training on two ranks, started by the kit's own re-launch (two fake T4s: CPU ranks on gloo) under the emulator."""

import json
from pathlib import Path

import pytest
import torch
from conftest import make_images

from kaggle_kit.accelerator import T4_X2
from kaggle_kit.launch import RANKS_ENV, launch_on_every_gpu

pytestmark = pytest.mark.e2e

# A Deadline fit on every rank. `stop_at`: rank 0's clock jumps past the cutoff after that many batches of this run
# (rank 1's clock is left alone: rank 0 alone decides, and every rank must stop at the same batch). `late`: rank 1
# sleeps that long after each batch, so the ranks are never in step by chance.
SCRIPT = """
import dataclasses, json, os, sys, time
sys.path.insert(0, {tests!r})
import kaggle_kit as kk
kk.launch_on_every_gpu()
from pathlib import Path
import torch
from fastai.callback.core import Callback
from conftest import make_learner

settings = json.loads(os.environ["TEST_SETTINGS"])
rank = int(os.environ.get("RANK", "0"))


class Cutoff(Callback):
    order = 60

    def before_fit(self):
        self.seen = 0

    def after_batch(self):
        self.seen += 1
        if rank == 1:
            time.sleep(settings.get("late", 0.0))
        if rank == 0 and self.seen == settings.get("stop_at"):
            deadline.kernel = dataclasses.replace(deadline.kernel, started_at=deadline.kernel.started_at - 10**6)


images = sorted(Path(settings["images"]).glob("*.png"))
learn = make_learner("tiny", images, augment=True)
deadline = kk.Deadline(every=10**6, reserve=0, safety=0)
try:
    with kk.distributed(learn), learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(3, 1e-2, cbs=[deadline, Cutoff()])
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {{exc}}")
print(f"rank {{rank}} of {{os.environ.get('WORLD_SIZE', '1')}}: stopped={{deadline.stopped}} "
      f"finished={{deadline.finished}}", flush=True)
if deadline.finished:
    torch.save(learn.model.state_dict(), f"final-rank-{{rank}}.pt")
"""


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_two_ranks_stopped_mid_epoch_resume_bitwise_equal_to_the_uninterrupted_run(run_kernel, tmp_path):
    images = make_images(tmp_path / "images", 24)[0].parent
    script = SCRIPT.format(tests=str(Path(__file__).parent))

    def launch(name, gpus=T4_X2, **settings):
        env = {"TEST_SETTINGS": json.dumps({"images": str(images), **settings}), "KAGGLE_KIT_FAKE_GPUS": gpus,
               "KAGGLE_KIT_FAKE_ARCHS": "sm_75"}  # fmt: skip
        return run_kernel(script, memory="8GiB", time="90s", env=env, name=name, **attached)  # time: no hang

    attached = {}
    whole = launch("whole")
    part = launch("part", stop_at=4, late=0.3)
    attached = {"inputs": {"notebooks/tester/part": Path(part.report.working_dir)}}  # the next kernel
    resumed = launch("resumed", late=0.3)
    one_rank = launch("one-rank", gpus="Tesla T4:7.5")

    for run in (whole, part, resumed):
        assert run.report.ok, run.explain()
        assert "launching this script on 2 ranks, one per GPU" in run.stdout
    assert sorted(line for line in part.stdout.splitlines() if line.startswith("rank ")) == [
        "rank 0 of 2: stopped=True finished=False", "rank 1 of 2: stopped=True finished=False"]  # fmt: skip
    saved = list((Path(part.report.working_dir) / "checkpoints").glob("*.pth"))
    assert len(saved) == 1, saved  # one checkpoint for both ranks, written by rank 0
    assert "resuming stage 0 at epoch 1, batch 1 from" in resumed.stderr  # 4 batches of 3 a rank: mid-epoch
    for rank in (0, 1):
        ours, unbroken = (Path(r.report.working_dir) / f"final-rank-{rank}.pt" for r in (resumed, whole))
        for (name, a), (_, b) in zip(_weights(ours).items(), _weights(unbroken).items(), strict=True):
            assert torch.equal(a, b), name
    # the tree of torchrun and both ranks is what the memory limit counts: more than the one process below
    assert part.report.peak_memory_bytes > 1.5 * one_rank.report.peak_memory_bytes

    assert one_rank.report.exit_code == 1, one_rank.explain()  # two ranks' checkpoint on one: refused in one line
    (line,) = [x for x in one_rank.stderr.splitlines() if x.startswith("kernel:")]
    assert "ranks: written on 2, this run has 1" in line
    assert "launching" not in one_rank.stdout


@pytest.mark.parametrize(("gpus", "argv"), [
    ("", None), ("Tesla T4:7.5", None), (T4_X2, ["-c"]), (T4_X2, ["ipykernel_launcher.py", "-f", "kernel.json"]),
], ids=["no GPU", "one GPU", "not a script", "a notebook"])  # fmt: skip
def test_one_gpu_none_or_a_notebook_runs_on_as_it_is(gpus, argv, monkeypatch, tmp_path):
    if argv and argv[0].endswith(".py"):
        (tmp_path / argv[0]).write_text("")  # the file exists, as ipykernel's launcher does
        argv = [str(tmp_path / argv[0]), *argv[1:]]
    monkeypatch.setenv("KAGGLE_KIT_FAKE_GPUS", gpus)
    monkeypatch.setenv("KAGGLE_KIT_FAKE_ARCHS", "sm_75")
    monkeypatch.delenv(RANKS_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    said = []

    assert launch_on_every_gpu(argv=argv, say=said.append) == 1  # returned: this process goes on alone

    assert said == ([] if argv is None else ["kaggle-kit: 2 GPUs, but this is not a script run by python (a "
                                             "notebook?): training on one"])  # fmt: skip


def test_a_rank_never_launches_again_and_max_ranks_is_checked(monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_FAKE_GPUS", T4_X2)
    monkeypatch.setenv("KAGGLE_KIT_FAKE_ARCHS", "sm_75")
    monkeypatch.setenv(RANKS_ENV, "2")  # a process the launch started (its group is joined only on WORLD_SIZE > 1)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    said = []

    assert launch_on_every_gpu(argv=[__file__], say=said.append) == 1  # returned, no second launch
    assert said == []
    with pytest.raises(ValueError, match="max_ranks=0"):
        launch_on_every_gpu(max_ranks=0)
