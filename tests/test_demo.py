import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_demo_trains_streams_a_submission_and_reports_it(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaggle_kit.cli",
            "demo",
            "--streaming",
            "--out",
            str(tmp_path / "demo"),
            "--test-images",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
    assert float(lines["test accuracy"]) > 0.8, proc.stdout
    assert lines["output files"].strip() == "2 of 500"
    submission = (tmp_path / "demo/kernel/working/submission.csv").read_text().splitlines()
    assert submission[0] == "id,label"
    assert len(submission) == 121


@pytest.mark.parametrize("content", [None, '{"test accuracy": 0.9', "[1, 2]"], ids=["missing", "cut", "not-object"])
def test_a_demo_result_that_cannot_be_read_leaves_the_numbers_out_with_a_warning(content, tmp_path, caplog):
    from kaggle_kit.local.demo import _demo_result

    path = tmp_path / "demo-result.json"
    if content is not None:
        path.write_text(content)

    assert _demo_result(path) == {}
    assert "the demo's summary leaves its numbers out" in caplog.text
