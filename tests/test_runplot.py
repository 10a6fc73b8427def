"""The run-local picture: memory over time against the limit, with checkpoints and commits marked; time and files."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from kaggle_kit.local.report import OUT_OF_MEMORY, RunReport
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


def _report(tmp_path, verdict="ok", started_at=1000.0, timeline=((0, 1 << 28), (5, 1 << 29), (9, 1 << 29)),
            **fields) -> RunReport:  # fmt: skip
    from kaggle_kit.limits import KernelLimits

    return RunReport(script="kernel.py", exit_code=137 if verdict == OUT_OF_MEMORY else 0, verdict=verdict,
                     peak_memory_bytes=int(0.49 * 2**30), elapsed_s=10.0, output_files=1, output_bytes=10,
                     root=str(tmp_path), working_dir=str(tmp_path / "working"), started_at=started_at,
                     limits=KernelLimits(memory_bytes=2**29, time_s=20.0), memory_timeline=[list(p) for p in timeline],
                     peak_at_s=9.0, exact_samples=3, **fields)  # fmt: skip


def _legend(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_a_run_killed_for_memory_is_marked_and_the_peak_says_it_is_pss(tmp_path):
    import matplotlib.pyplot as plt

    from kaggle_kit.local.runplot import run_figure

    fig = run_figure(_report(tmp_path, OUT_OF_MEMORY, timeline=((0, 1 << 28), (9, 1 << 29), (10, 0))))
    memory = fig.axes[0]
    said = _legend(memory)
    line = memory.get_lines()[0]
    fig.canvas.draw()
    legend_left = memory.get_legend().get_window_extent().x0
    axes_right = memory.get_window_extent().x1
    plt.close(fig)

    assert "killed at the RAM limit at 10 s" in said
    assert "peak PSS 0.49 GiB, 9 s into the run\n(shared pages once: what the limit checks)" in said
    assert "RSS of the process tree, sampled (pages the\nworkers share counted in each)" in said
    assert line.get_ydata()[-1] > 0  # the tree gone at the end is no drop to 0 bytes
    assert legend_left >= axes_right  # beside the lane: it covers neither the curve nor the limit line


def test_a_chains_lanes_sit_on_the_chains_time_axis_and_stay_a_picture_one_can_read(tmp_path):
    import matplotlib.pyplot as plt

    from kaggle_kit.local.runplot import chain_figure

    label = "my-kernel run 2: ok; kernel status needs-resume at predictions 96 of 800 into submission.csv " * 2
    two = chain_figure([("run 1: ok", _report(tmp_path)), (label, _report(tmp_path, started_at=1100.0))])
    second_starts = two.axes[1].get_lines()[0].get_xdata()[0]
    titles = [ax.get_title(loc="left") for ax in two.axes]
    plt.close(two)
    many = chain_figure([(f"run {i}", _report(tmp_path, started_at=1000.0 + 40 * i)) for i in range(14)])
    height_px = many.get_size_inches()[1] * many.dpi
    plt.close(many)

    assert second_starts == 100  # started 100 s after the first: drawn there, not at 0
    assert titles[1].replace("\n", " ") == label.strip()  # wrapped, never cut
    assert "\n" in titles[1]
    assert height_px < 1400  # 14 lanes (was 2,430 px)
