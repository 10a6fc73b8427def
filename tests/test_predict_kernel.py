"""stream_predict inside emulated kernels: under a RAM limit fastai's get_preds cannot meet, and across kill -9."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import make_images, start_kernel_process

from kaggle_kit.local.report import OK, OUT_OF_MEMORY

pytestmark = pytest.mark.e2e

KERNEL = """
import json, os, time
from pathlib import Path

import numpy as np
import torch
from fastai.vision.all import CrossEntropyLossFlat, Learner, SegmentationDataLoaders, nn

import kaggle_kit as kk
from kaggle_kit.predict.stream import is_placeholder, stream_predict
from kaggle_kit.predict.sinks import CsvSink

cfg = json.loads(Path(os.environ["KAGGLE_KIT_CONFIG"]).read_text())
images = sorted(kk.Kernel.current().find_input("images").glob("*.png"))
dls = SegmentationDataLoaders.from_label_func(images[0].parent, images[:8], lambda p: p.parent / "masks" / p.name,
                                              codes=[str(i) for i in range(cfg["channels"])], bs=cfg["bs"],
                                              num_workers=0)
torch.manual_seed(0)
learn = Learner(dls, nn.Conv2d(3, cfg["channels"], 3, padding=1), loss_func=CrossEntropyLossFlat(axis=1))


def to_rows(items, preds):
    time.sleep(cfg.get("row_delay_s", 0) * len(items))  # slow writes widen the window a kill can land in
    return [(p.stem, int(x.mean(axis=(1, 2)).argmax()), f"{x.max():.6f}") for p, x in zip(items, preds)]


if cfg["mode"] == "get_preds":
    preds = learn.get_preds(dl=learn.dls.test_dl(images))[0].numpy()
    import pandas as pd
    pd.DataFrame(to_rows(images, preds), columns=["id", "cls", "score"]).to_csv("submission.csv", index=False)
else:
    summary = stream_predict(learn, images, CsvSink("submission.csv", to_rows, ["id", "cls", "score"]),
                             chunk_size=cfg.get("chunk_size"), reserve_s=cfg.get("reserve_s", 60.0), progress=False)
    Path("../summary.json").write_text(json.dumps(summary.as_dict()))
"""


def _setup(tmp_path, n, size, cfg):
    images = make_images(tmp_path / "images", n, size=size)
    script = tmp_path / "predict_kernel.py"
    script.write_text(KERNEL)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    return images, script, config


def test_stream_predict_finishes_under_a_ram_limit_that_kills_get_preds(run_kernel, tmp_path):
    # 600 images x 47 channels x 128 x 128 float32 = 1.8 GB of scores; get_preds holds three copies of them
    images, script, config = _setup(tmp_path, 600, 128, {"channels": 47, "bs": 16, "mode": "get_preds"})
    inputs = {"images": images[0].parent}

    fastai_run = run_kernel(script, memory="3GiB", inputs=inputs, env={"KAGGLE_KIT_CONFIG": str(config)})
    config.write_text(json.dumps({"channels": 47, "bs": 16, "mode": "stream"}))
    stream_run = run_kernel(script, memory="3GiB", inputs=inputs, env={"KAGGLE_KIT_CONFIG": str(config)})

    assert fastai_run.report.verdict == OUT_OF_MEMORY, fastai_run.explain()
    assert fastai_run.report.exit_code == 137
    assert stream_run.report.verdict == OK, stream_run.explain()
    assert stream_run.report.peak_memory_bytes < 3 * 2**30
    summary = json.loads((Path(stream_run.report.root) / "summary.json").read_text())
    assert summary["done"] == 600
    assert len((Path(stream_run.report.working_dir) / "submission.csv").read_text().splitlines()) == 601
    assert stream_run.report.output_files == 2


def _done(root):
    try:
        return json.loads((root / "working/submission.csv.progress.json").read_text())["done"]
    except (OSError, ValueError):
        return 0


def _sandbox(tmp_path, name, images):
    root = tmp_path / name
    (root / "input").mkdir(parents=True)
    (root / "input/images").symlink_to(images[0].parent)
    (root / "working").mkdir()
    return root


def test_kill_9_at_several_points_then_rerun_gives_the_uninterrupted_csv(tmp_path):
    cfg = {"channels": 5, "bs": 4, "chunk_size": 4, "mode": "stream", "row_delay_s": 0.03}
    images, script, config = _setup(tmp_path, 48, 32, cfg)
    clean = _sandbox(tmp_path, "clean", images)
    proc = start_kernel_process(script, clean, {"KAGGLE_KIT_CONFIG": str(config)})
    assert proc.wait(300) == 0, proc.stdout.read().decode()

    killed = _sandbox(tmp_path, "killed", images)
    kills = []
    for after_items in (8, 20, 36):
        proc = start_kernel_process(script, killed, {"KAGGLE_KIT_CONFIG": str(config)})
        deadline = time.time() + 120
        while _done(killed) < after_items and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # land inside the next chunk: predicting or writing rows
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(_done(killed))
    proc = start_kernel_process(script, killed, {"KAGGLE_KIT_CONFIG": str(config)})
    out = proc.communicate(timeout=300)[0].decode()

    assert proc.returncode == 0, out
    assert kills == sorted(kills), kills
    assert kills[-1] < 48, kills  # every kill left the run unfinished
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_at"] == kills[-1]
    assert (killed / "working/submission.csv").read_bytes() == (clean / "working/submission.csv").read_bytes()


def test_the_next_kernel_continues_from_the_previous_kernels_output_byte_identical(run_kernel, tmp_path):
    images, script, config = _setup(tmp_path, 24, 32, {"channels": 5, "bs": 4, "chunk_size": 4, "mode": "stream"})
    env = {"KAGGLE_KIT_CONFIG": str(config)}
    clean = run_kernel(script, memory="4GiB", inputs={"images": images[0].parent}, env=env, name="clean")
    config.write_text(
        json.dumps({**json.loads(config.read_text()), "reserve_s": 10**9})
    )  # one chunk, then "out of time"
    first = run_kernel(script, memory="4GiB", inputs={"images": images[0].parent}, env=env, name="first")
    config.write_text(json.dumps({**json.loads(config.read_text()), "reserve_s": 0}))

    # a new sandbox (other absolute paths) with the first kernel's output attached, as Kaggle attaches it
    second = run_kernel(script, memory="4GiB", inputs={"images": images[0].parent, "run-1": first.report.working_dir},
                        env=env, name="second")  # fmt: skip

    for run in (clean, first, second):
        assert run.report.ok, run.explain()
    partial = json.loads((Path(first.report.root) / "summary.json").read_text())
    assert (partial["done"], partial["complete"]) == (4, False)
    summary = json.loads((Path(second.report.root) / "summary.json").read_text())
    assert (summary["resumed_at"], summary["complete"]) == (4, True), second.explain()
    assert (Path(second.report.working_dir) / "submission.csv").read_bytes() == (
        Path(clean.report.working_dir) / "submission.csv"
    ).read_bytes()


TWO_LINES = """
import os, sys
from pathlib import Path

sys.path.insert(0, {tests!r})
from conftest import make_learner

import kaggle_kit as kk

images = sorted(kk.Kernel.current().find_input("images").glob("*.png"))
learn = make_learner("tiny", images)


def to_rows(items, preds):
    return [(p.stem, int(x.argmax())) for p, x in zip(items, preds)]


# the README's two lines as a hurried user writes them: no `if deadline.finished`
learn.fit_one_cycle(2, 1e-2, cbs=kk.Deadline(every=30, reserve=float(os.environ["RESERVE_MIN"])))
kk.stream_predict(learn, images, kk.CsvSink("submission.csv", to_rows, ["id", "label"]), progress=False)
kk.mark_done()
"""


def test_the_two_lines_with_an_impossible_reserve_are_refused_then_finish_on_the_rerun(tmp_path):
    """A Deadline whose reserve is longer than the kernel refuses before training, writing nothing (it could not
    make progress: a chain would spend its quota one batch a kernel); run-local's verdict says error; the kit's INFO
    lines show without logging set-up; the rerun with a sane reserve trains, predicts every image once and is done.
    (A stop that a rerun resumes is tested through the emulator's time limit in test_deadline and test_rehearse.)"""
    import subprocess
    import sys

    images = make_images(tmp_path / "images", 12)
    script = tmp_path / "two_lines.py"
    script.write_text(TWO_LINES.format(tests=str(Path(__file__).parent)))
    working = tmp_path / "working"
    cli = [sys.executable, "-m", "kaggle_kit.cli", "run-local", str(script), "--input", f"images={images[0].parent}",
           "--working", str(working), "--memory", "4GiB"]  # fmt: skip

    def run(reserve_min: float, n: int) -> subprocess.CompletedProcess:
        env = {**os.environ, "RESERVE_MIN": str(reserve_min)}
        return subprocess.run([*cli, "--root", str(tmp_path / f"run-{n}")], env=env, capture_output=True, text=True)

    first = run(10**6, 1)  # a reserve longer than the kernel

    assert first.returncode == 1, first.stderr
    assert "DeadlineError" in first.stderr
    assert "needed for one checkpointed batch (reserve 60000000 + safety 60" in first.stderr
    assert not (working / "submission.csv").exists(), first.stderr
    assert not (working / "checkpoints").exists()
    assert not (working / "kaggle-kit-status.json").exists()  # nothing claimed

    second = run(0, 2)

    assert second.returncode == 0, second.stderr
    assert "INFO kaggle_kit.train.checkpoint: checkpoint" in second.stderr  # no basicConfig in the script
    assert "kernel status done" in second.stderr
    rows = (working / "submission.csv").read_text().splitlines()
    assert len(rows) == 1 + len(images)
    assert {r.split(",")[0] for r in rows[1:]} == {p.stem for p in images}
