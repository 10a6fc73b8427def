"""`chain` against a local Kaggle whose kernels really run: every status it reads was written by a kernel."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kaggle_kit.push.bundle import build_bundle
from kaggle_kit.push.chain import run_chain

REF = "tester/chain-kernel"
# A quick kernel (no fastai): it reads the previous run's status from its attached output, as a Deadline finds its
# checkpoints, and does what the control file says. Its status counts the runs that made progress so far.
KERNEL = """
import json, sys, time
from pathlib import Path
import kaggle_kit as kk
from kaggle_kit.status import write_status

control = json.loads(Path({control!r}).read_text())
attached = sorted(Path("../input").glob("notebooks/*/*/kaggle-kit-status.json"))
before = json.loads(attached[0].read_text())["runs"] if attached else 0
print("kaggle_kit from", kk.__file__)
print("resuming from", [str(p) for p in attached], "after", before, "runs")
Path("checkpoints").mkdir()
Path("checkpoints/ckpt.pth").write_bytes(b"weights")
if control.get("fail_on") == before + 1:
    raise ValueError("boom in run " + str(before + 1))
time.sleep(control.get("sleep", 0))
if control.get("allocate_gb"):
    ballast = bytearray(int(control["allocate_gb"] * 2**30))
if control.get("link"):
    Path("leak.txt").symlink_to(control["link"])
for i in range(control.get("files", 0)):
    Path(f"part-{{i:03d}}.csv").write_text("a,b\\n")
if "status_bytes" in control:
    Path("kaggle-kit-status.json").write_bytes(control["status_bytes"].encode())
    sys.exit(0)
runs = before if control.get("stuck") else before + 1
state = "done" if runs >= control.get("needed", 1) else "needs-resume"
if control.get("epochs"):  # a fit of `epochs` epochs of one batch, one epoch a run of 600 kernel seconds
    write_status(".", state, stage=0, epoch=runs, iteration=0, runs=runs, epochs=control["epochs"], batches=1,
                 time_used_s=600.0)
elif control.get("batches"):  # a fit of 10 epochs of `batches` batches, one batch a run
    write_status(".", state, stage=0, epoch=0, iteration=runs, runs=runs, epochs=10, batches=control["batches"])
else:
    write_status(".", state, stage=0, epoch=runs, iteration=0, runs=runs)
"""


def _kernel(tmp_path: Path, **control) -> tuple[Path, Path]:
    folder, control_file = tmp_path / "kernel", tmp_path / "control.json"
    folder.mkdir(exist_ok=True)
    control_file.write_text(json.dumps(control))
    (folder / "kernel.py").write_text(KERNEL.format(control=str(control_file)))
    (folder / "kernel-metadata.json").write_text(json.dumps({
        "id": REF, "title": "Chain kernel", "code_file": "kernel.py", "language": "python", "kernel_type": "script",
    }))  # fmt: skip
    return folder, control_file


def _chain(local_kaggle, folder: Path, tmp_path: Path, max_runs: int = 5, sleep=lambda s: None):
    bundle = build_bundle(folder, tmp_path / "build")
    return run_chain(bundle, max_runs=max_runs, poll_s=0.2, max_poll_s=1.0, sleep=sleep), bundle


def _logs(local_kaggle) -> list[str]:
    return [v.log_path.read_text() for v in local_kaggle.versions(REF)]


def test_chain_pushes_resume_runs_that_read_the_previous_output_until_done(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=3)
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        local_kaggle.wait(REF)

    outcome, bundle = _chain(local_kaggle, folder, tmp_path, sleep=sleep)

    assert outcome.result == "done", outcome.reason
    assert [r["state"] for r in outcome.runs] == ["needs-resume", "needs-resume", "done"]
    first, second, third = local_kaggle.calls("SaveKernel")
    assert REF not in (first.get("kernelDataSources") or [])
    assert second["kernelDataSources"] == third["kernelDataSources"] == [REF]
    logs = _logs(local_kaggle)
    assert "after 0 runs" in logs[0]
    assert "input/notebooks/tester/chain-kernel/kaggle-kit-status.json'] after 1 runs" in logs[1]  # run 1's output
    assert "after 2 runs" in logs[2]
    assert all(".zip/kaggle_kit/__init__.py" in log for log in logs)  # the bundle's own copy, never the installed one
    assert waits
    assert waits == sorted(waits)  # polling backs off
    assert (bundle / "run-1-output/kaggle-kit-status.json").exists()
    assert not (bundle / "run-1-output/checkpoints").exists()  # a chain downloads only the status file


@pytest.mark.parametrize(("control", "message"), [
    ({"fail_on": 1}, "Your notebook hit an unhandled error while executing (exit code 1): ValueError: boom in run 1"),
    ({"allocate_gb": 4}, "Your notebook tried to allocate more memory than is available."),
])  # fmt: skip
def test_chain_stops_with_kaggles_message_when_a_run_fails(control, message, local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=2, **control)

    outcome, _ = _chain(local_kaggle, folder, tmp_path, sleep=lambda s: local_kaggle.wait(REF))

    assert outcome.result == "error"
    assert f"run 1 ended ERROR: {message}" in outcome.reason
    assert len(local_kaggle.calls("SaveKernel")) == 1


@pytest.mark.parametrize(("batches", "result"), [(1000, "stuck"), (5, "done")], ids=["1 of 10000", "1 of 50"])
def test_a_chain_whose_runs_train_under_one_percent_of_the_fit_stops_after_the_first(batches, result, local_kaggle,
                                                                                     tmp_path):  # fmt: skip
    folder, _ = _kernel(tmp_path, needed=3, batches=batches)

    outcome, _ = _chain(local_kaggle, folder, tmp_path, sleep=lambda s: local_kaggle.wait(REF))

    assert outcome.result == result, outcome.reason
    if result == "stuck":
        assert "run 1 trained 1 batch(es), 0.0% of the fit: at this pace the job needs about 9999 more runs" in (
            outcome.reason)  # fmt: skip
        assert len(local_kaggle.calls("SaveKernel")) == 1
    else:
        assert len(outcome.runs) == 3  # 2% of the fit a run: slow, but not a hundred runs


def test_a_chain_started_again_after_a_failed_run_resumes_from_the_last_good_output(local_kaggle, tmp_path):
    folder, control = _kernel(tmp_path, needed=3, fail_on=2)
    failed, _ = _chain(local_kaggle, folder, tmp_path, sleep=lambda s: local_kaggle.wait(REF))
    control.write_text(json.dumps({"needed": 3}))  # the fix

    outcome, _ = _chain(local_kaggle, folder, tmp_path, sleep=lambda s: local_kaggle.wait(REF))

    assert failed.result == "error"
    assert outcome.result == "done", outcome.reason
    assert [r["state"] for r in outcome.runs] == ["needs-resume", "error", "needs-resume", "done"]
    logs = _logs(local_kaggle)
    assert "after 1 runs" in logs[2]  # run 3 started from run 1's output, not from scratch nor from the failed run


def test_an_interrupted_chain_continues_without_pushing_twice(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=2)

    def interrupt(_seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _chain(local_kaggle, folder, tmp_path, sleep=interrupt)  # stopped while run 1 is queued or running
    outcome, _ = _chain(local_kaggle, folder, tmp_path, sleep=lambda s: local_kaggle.wait(REF))

    assert outcome.result == "done", outcome.reason
    assert len(local_kaggle.calls("SaveKernel")) == 2


def test_chain_stops_after_max_runs(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=5)

    outcome, _ = _chain(local_kaggle, folder, tmp_path, max_runs=2, sleep=lambda s: local_kaggle.wait(REF))

    assert outcome.result == "max-runs"
    assert len(local_kaggle.calls("SaveKernel")) == 2


def test_a_chain_that_makes_no_progress_stops_instead_of_spending_quota(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=3, stuck=True)

    outcome, _ = _chain(local_kaggle, folder, tmp_path, max_runs=5, sleep=lambda s: local_kaggle.wait(REF))

    assert outcome.result == "stuck"
    assert "run 2 made no progress: it stopped where run 1 did" in outcome.reason
    assert len(local_kaggle.calls("SaveKernel")) == 2


def test_a_status_served_from_the_previous_run_is_refused_until_this_runs_own_comes(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=2)
    local_kaggle.serve_stale_output(REF, times=1)  # run 2's first download lists run 1's output
    bundle, said = build_bundle(folder, tmp_path / "build"), []

    outcome = run_chain(bundle, max_runs=5, poll_s=0.2, sleep=lambda s: local_kaggle.wait(REF), say=said.append)

    assert outcome.result == "done", outcome.reason  # without the run id: run 1's status again, "stuck"
    assert [r["state"] for r in outcome.runs] == ["needs-resume", "done"]
    assert any(line.startswith("run 2: the status Kaggle served is another run's") for line in said), said
    statuses = [json.loads((bundle / f"run-{n}-output/kaggle-kit-status.json").read_text()) for n in (1, 2)]
    assert [s["run_id"] for s in statuses] == [r["run_id"] for r in outcome.runs]  # each run stamped its own


def test_a_chain_served_only_stale_statuses_stops_in_one_line_and_continues_later(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=2)
    local_kaggle.serve_stale_output(REF, times=100)
    stale, bundle = _chain(local_kaggle, folder, tmp_path, sleep=lambda s: local_kaggle.wait(REF))
    local_kaggle.serve_stale_output(REF, times=0)  # this version's output is published now

    again = run_chain(bundle, max_runs=5, poll_s=0.2, sleep=lambda s: local_kaggle.wait(REF))

    assert stale.result == "stale-status"
    assert "run 2: Kaggle served a status written by another run 4 times" in stale.reason
    assert again.result == "done", again.reason
    assert len(local_kaggle.calls("SaveKernel")) == 2  # run 2 was downloaded again, not pushed again


@pytest.mark.parametrize("content", ["[]", "{}", '{"status": 3}', "not json"])
def test_chain_with_a_malformed_status_file_stops_with_a_reason(content, local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, status_bytes=content)

    outcome, _ = _chain(local_kaggle, folder, tmp_path, sleep=lambda s: local_kaggle.wait(REF))

    assert outcome.result == "no-status"
    assert "run 1 left" in outcome.reason


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kaggle_kit.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)  # fmt: skip


def test_status_and_output_commands_follow_every_page_of_a_real_output(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, files=45)  # more than two pages of 20
    local_kaggle.set_gpu_quota(30 * 3600)  # Kaggle's weekly GPU hours
    assert _cli("push", str(folder), "--out", str(tmp_path / "build")).returncode == 0
    local_kaggle.wait(REF)

    status = _cli("status", REF)
    output = _cli("output", REF, "-p", str(tmp_path / "out"))

    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"{REF}: COMPLETE"
    assert status.stdout.splitlines()[1].startswith("GPU quota: 0.0 h used of 30.0 h, 30.0 h left, refreshes ")
    assert output.returncode == 0, output.stderr
    assert len(list((tmp_path / "out").glob("part-*.csv"))) == 45
    assert (tmp_path / "out/checkpoints/ckpt.pth").read_bytes() == b"weights"  # subfolders arrive as they were
    assert "kaggle_kit from" in (tmp_path / "out/chain-kernel.log").read_text()


def test_a_symlink_in_a_kernels_output_is_not_listed_and_the_rest_downloads(local_kaggle, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("not an output")
    folder, _ = _kernel(tmp_path, files=3, link=str(secret))
    assert _cli("push", str(folder), "--out", str(tmp_path / "build")).returncode == 0
    local_kaggle.wait(REF)

    output = _cli("output", REF, "-p", str(tmp_path / "out"))

    assert output.returncode == 0, output.stderr
    assert len(list((tmp_path / "out").glob("part-*.csv"))) == 3
    assert (tmp_path / "out/checkpoints/ckpt.pth").read_bytes() == b"weights"
    assert not (tmp_path / "out/leak.txt").exists()


def test_more_output_files_than_kaggle_keeps_is_an_error_and_the_download_says_so(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, files=501)
    assert _cli("push", str(folder), "--out", str(tmp_path / "build")).returncode == 0
    local_kaggle.wait(REF)

    status = _cli("status", REF)
    output = _cli("output", REF, "-p", str(tmp_path / "out"))

    assert "ERROR (Your notebook generated too many output files (the limit is 500).)" in status.stdout
    assert output.returncode == 0, output.stderr
    assert "Kaggle keeps at most 500 per version" in output.stderr


def test_a_refused_push_is_one_line_with_kaggles_reason(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path)
    local_kaggle.script_answer("SaveKernel", {"error": "Notebook not found"})

    proc = _cli("push", str(folder), "--out", str(tmp_path / "build"))

    assert proc.returncode != 0
    assert "Notebook not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert local_kaggle.versions(REF) == []


def test_a_script_pushed_without_the_bundle_cannot_use_the_installed_kit(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path)

    proc = subprocess.run([str(Path(sys.executable).parent / "kaggle"), "kernels", "push", "-p", str(folder)],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=120)  # fmt: skip
    version = local_kaggle.wait(REF)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert version.state == "ERROR"
    assert "No module named 'kaggle_kit' (the installed copy is hidden" in version.failure


@pytest.mark.parametrize(
    "damage", ["{", '{"kernels": {"tester/k": [{"number": 1}]}}', ""], ids=["cut", "foreign", "empty"]
)
def test_a_damaged_local_kaggle_state_is_one_line_naming_it(damage, tmp_path):
    (tmp_path / "kaggle").mkdir()
    (tmp_path / "kaggle/local-kaggle.json").write_text(damage)
    folder, _ = _kernel(tmp_path)

    proc = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", "rehearse", str(folder), "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip

    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "local-kaggle.json is not a local Kaggle's state" in proc.stderr


def test_a_failed_runs_log_tail_is_printed_kept_beside_the_chain_and_shown_by_status_log(local_kaggle, tmp_path):
    folder, control = _kernel(tmp_path, needed=3, fail_on=2)
    build = tmp_path / "build"

    chain = _cli("chain", str(folder), "--out", str(build), "--poll", "0.2s")
    log = _cli("status", REF, "--log")
    first = _cli("status", REF, "--log", "--version", "1")

    assert chain.returncode == 1, chain.stdout + chain.stderr
    assert "kaggle-kit chain: run 2: the last 10 line(s) of its log (all of it in " in chain.stdout, chain.stdout
    assert "kaggle-kit chain:   | ValueError: boom in run 2" in chain.stdout
    assert "run 2 ended ERROR: Your notebook hit an unhandled error" in chain.stdout  # Kaggle's message too
    kept = (build / "chain-kernel/run-2.log").read_text()
    assert "resuming from" in kept  # the whole log, from its first line
    assert kept.rstrip().endswith("ValueError: boom in run 2")
    assert not (build / "chain-kernel/run-1.log").exists()  # a run that completed keeps no log there
    assert log.returncode == 0, log.stderr
    assert log.stdout == kept
    assert "after 0 runs" in first.stdout  # the first run's log, not the latest
    assert "boom" not in first.stdout


def test_a_gpu_chain_stops_when_the_quota_left_is_under_one_run_and_goes_on_when_told(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=2, sleep=2)
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    (folder / "kernel-metadata.json").write_text(json.dumps({**meta, "enable_gpu": True}))
    local_kaggle.set_gpu_quota(12 * 3600 + 600)  # one 12-hour GPU run and 10 minutes; run 1 uses 2 s x 720
    args = ("chain", str(folder), "--out", str(tmp_path / "build"), "--poll", "0.2s")

    stopped = _cli(*args)
    told = _cli(*args, "--ignore-quota")

    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "kaggle-kit chain: GPU quota: 0.0 h used of 12.2 h, 12.2 h left" in stopped.stdout  # before run 1
    last = stopped.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"kaggle-kit chain: quota: run 2 not pushed: GPU quota: \d+\.\d h used of 12\.2 h, "
        r"\d+\.\d h left, refreshes .+, under one GPU run's 12 h .*--ignore-quota",
        last,
    ), last
    assert told.returncode == 0, told.stdout + told.stderr
    assert len(local_kaggle.calls("SaveKernel")) == 2
    assert sum(v.used_s for v in local_kaggle.versions(REF)) >= 2 * 2 * 720  # both GPU runs used quota, scaled


def test_each_run_that_needs_another_says_about_how_many_runs_and_hours_are_left(local_kaggle, tmp_path):
    folder, _ = _kernel(tmp_path, needed=4, epochs=4)
    bundle, said = build_bundle(folder, tmp_path / "build"), []

    outcome = run_chain(bundle, max_runs=5, poll_s=0.2, sleep=lambda s: local_kaggle.wait(REF), say=said.append)

    assert outcome.result == "done", outcome.reason
    lines = [line for line in said if " of about " in line]
    assert lines == [
        "run 1 of about 4: needs-resume (stage/epoch/batch 0/1/0); about 0.5 hours left to go",  # 3 x 600 s
        "run 2 of about 4: needs-resume (stage/epoch/batch 0/2/0); about 0.3 hours left to go",
        "run 3 of about 4: needs-resume (stage/epoch/batch 0/3/0); about 0.2 hours left to go",
    ], said
    assert [r.get("estimate", {}).get("runs") for r in outcome.runs] == [4, 4, 4, None]
