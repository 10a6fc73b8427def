"""The run-local picture: memory over time against the limit, with checkpoints and commits marked; time and files."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from kaggle_kit.local.report import RunReport
from kaggle_kit.local.runplot import run_events

KAGGLE_KIT = str(Path(sys.executable).parent / "kaggle-kit")
SCRIPT = """
import time
from pathlib import Path

from kaggle_kit.predict.progress import ProgressManifest, RunFingerprint
from kaggle_kit.train.checkpoint import CheckpointSaver

saver = CheckpointSaver("checkpoints", keep=1)  # each save prunes the one before: only the last file is left
manifest = ProgressManifest(RunFingerprint(items="x"), 10)
blocks = []
for i in range(4):
    blocks.append(bytearray(40 << 20))  # 40 MiB more each step
    for j in range(0, len(blocks[-1]), 4096):
        blocks[-1][j] = 1  # touched: resident
    time.sleep(1.1)
    if i in (1, 2):
        saver.save({"stage": 0, "epoch": i, "iteration": 0})
    if i in (2, 3):
        manifest.commit(Path("preds.csv.progress.json"))  # the same file twice: the last write alone is left
del blocks[:3]
time.sleep(1.5)  # memory falls before the end: the peak was earlier
"""


def _run_local(tmp_path, *extra):
    script = tmp_path / "grow.py"
    script.write_text(SCRIPT)
    command = [KAGGLE_KIT, "run-local", str(script), "--root", str(tmp_path / "run"), "--memory", "2GiB", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_run_local_draws_the_run_against_its_limits_by_default(tmp_path):
    done = _run_local(tmp_path)

    assert done.returncode == 0, done.stderr
    report = RunReport.read(tmp_path / "run/run-report.json")
    timeline = report.memory_timeline
    assert len(timeline) >= 4
    assert timeline[-1][1] - timeline[0][1] > 100 << 20  # the growth is in it
    events = run_events(report)
    assert len(events["checkpoint"]) == 2  # recorded as they happened: the pruned one too
    assert len(events["commit"]) == 2
    assert events["checkpoint"][0] < events["commit"][0] < events["commit"][1]
    assert 0 < events["checkpoint"][0] < report.elapsed_s
    assert report.peak_at_s < report.elapsed_s - 1  # the peak is where it was, not at the end
    assert len(list((tmp_path / "run/working/checkpoints").glob("*.pth"))) == 1
    with Image.open(tmp_path / "run/run-report.png") as picture:
        assert picture.format == "PNG"
        assert picture.size[0] >= 500
        assert len(set(picture.convert("RGB").getdata())) > 20  # lines, bars and text, not a blank canvas


def test_no_plot_leaves_only_the_json(tmp_path):
    done = _run_local(tmp_path, "--no-plot")

    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run/run-report.json").read_text())["verdict"] == "ok"
    assert not (tmp_path / "run/run-report.png").exists()
