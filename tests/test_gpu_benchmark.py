"""benchmarks/gpu.py --smoke: the GPU benchmark runs start to end on the CPU, so it works before a GPU is lent."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).parents[1] / "benchmarks/gpu.py"


def test_the_gpu_benchmark_runs_whole_on_the_cpu_and_says_which_rows_need_a_gpu(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path / "gpu.json")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "gpu.json").read_text())
    measured = [result["train"]["fp32"], result["predict"]["get_preds"], result["predict"]["stream_predict"],
                result["ranks"]["one"], result["ranks"]["two"], result["jpeg"]["pil_draft_cpu"],
                result["train_ranks"]["one"], result["train_ranks"]["two"]]  # fmt: skip
    assert all(rate > 0 for rate in measured), result
    assert [result["train"]["fp16"], result["predict"]["gpu_busy"], result["jpeg"]["decode_jpeg_gpu"]] == [None] * 3
    assert result["ranks"]["two_gpus"] is False
    assert result["train_ranks"]["two_gpus"] is False  # two CPU ranks on fake T4s: launched, trained, not timed as GPUs
    assert result["peak_rss_bytes"] > 2**28  # torch and fastai, at least
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 8  # the header and seven measurements
    assert sum("n/a (no GPU)" in row for row in rows) == 3
