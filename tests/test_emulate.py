import json
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from kaggle_kit.errors import UsageError
from kaggle_kit.limits import KernelLimits
from kaggle_kit.local.report import OK, OUT_OF_MEMORY, OUT_OF_TIME, TOO_MANY_FILES, RunReport
from kaggle_kit.local.supervise import Enforcement

GiB = 2**30

ALLOCATE = """
    import sys
    block = b"\\x01" * int(float(sys.argv[1]) * 2**30)  # bytes() writes every page
    print("allocated", len(block))
"""


def test_a_script_over_its_memory_limit_is_killed_with_137(run_kernel):
    run = run_kernel(ALLOCATE, memory="1GiB", args=["3"])

    assert run.report.exit_code == 137, run.explain()
    assert run.report.verdict == OUT_OF_MEMORY
    assert "allocated" not in run.stdout
    assert GiB <= run.report.peak_memory_bytes < 1.5 * GiB


def test_the_same_script_under_a_larger_limit_finishes(run_kernel):
    run = run_kernel(ALLOCATE, memory="4GiB", args=["3"])

    assert run.report.exit_code == 0, run.explain()
    assert run.report.verdict == OK
    assert run.report.peak_memory_bytes >= 2.5 * GiB  # sampled every 20 ms: the last pages may be missed


def test_memory_held_by_a_child_process_counts_against_the_limit(run_kernel):
    script = """
        import multiprocessing as mp, time
        def hold():
            block = b"\\x01" * (1536 * 2**20)
            time.sleep(30)
        if __name__ == "__main__":
            worker = mp.get_context("spawn").Process(target=hold)
            worker.start()
            worker.join()
            print("worker finished")
    """

    run = run_kernel(script, memory="1GiB")

    assert run.report.verdict == OUT_OF_MEMORY, run.explain()
    assert run.report.exit_code == 137
    assert "worker finished" not in run.stdout


def test_a_script_past_its_time_limit_gets_sigterm_and_its_handler_can_still_write(run_kernel):
    script = """
        import signal, sys, time
        from pathlib import Path
        def on_term(signum, frame):
            Path("saved-on-sigterm.txt").write_text("checkpoint")
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        time.sleep(60)
    """

    run = run_kernel(script, time="3s")

    assert run.report.verdict == OUT_OF_TIME, run.explain()
    assert (Path(run.report.working_dir) / "saved-on-sigterm.txt").read_text() == "checkpoint"
    assert run.report.signals[0].startswith("SIGTERM")
    assert 3 <= run.report.elapsed_s < 60


def test_a_script_ignoring_sigterm_is_killed_after_the_grace_period(run_kernel):
    script = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    """

    run = run_kernel(script, time="2s", enforcement=Enforcement(grace_s=1.0))

    assert run.report.verdict == OUT_OF_TIME, run.explain()
    assert run.report.exit_code == 137
    assert [s.split()[0] for s in run.report.signals] == ["SIGTERM", "SIGKILL"]


def test_a_script_writing_600_files_under_a_500_file_limit_is_reported(run_kernel):
    script = """
        for i in range(600):
            open(f"pred_{i:04d}.npy", "wb").write(b"x")
    """

    run = run_kernel(script, max_files=500)

    assert run.report.verdict == TOO_MANY_FILES, run.explain()
    assert run.report.output_files == 600


def test_the_script_sees_the_sandbox_inputs_limits_and_start_time(run_kernel, tmp_path):
    data = tmp_path / "my data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    script = """
        import json, os
        from pathlib import Path
        import kaggle_kit as kk
        k = kk.Kernel.current()
        Path("seen.json").write_text(json.dumps({
            "cwd": os.getcwd(), "working": str(k.working_dir), "csv": k.find_input("fashion").joinpath("train.csv")
            .read_text(), "memory": k.limits.memory_bytes, "time": k.limits.time_s, "elapsed": k.elapsed_s()}))
    """

    run = run_kernel(script, memory="3GiB", time="120s", inputs=[f"competitions/fashion={data}"])

    assert run.report.ok, run.explain()
    seen = json.loads((tmp_path / "sandbox-kernel-0/working/seen.json").read_text())
    assert seen["cwd"] == seen["working"] == run.report.working_dir
    assert seen["csv"] == "a,b\n1,2\n"
    assert (seen["memory"], seen["time"]) == (3 * GiB, 120.0)
    assert 0 < seen["elapsed"] < 120


def test_the_report_is_json_outside_working(run_kernel, tmp_path):
    run = run_kernel("raise SystemExit(3)")

    report_file = tmp_path / "sandbox-kernel-0/run-report.json"
    assert RunReport.read(report_file) == run.report
    assert run.report.verdict == "error"
    assert run.report.exit_code == 3
    assert run.report.output_files == 0


def test_a_kept_working_dir_survives_into_the_next_run(run_kernel, tmp_path):
    script = """
        from pathlib import Path
        p = Path("count.txt")
        p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))
    """
    working = tmp_path / "kept"

    run_kernel(script, working=working)
    run_kernel(script, working=working)

    assert (working / "count.txt").read_text() == "2"


_READS_INPUT_BY_PATH = """
import json, os
from pathlib import Path
found = sorted(p.name for p in Path("../input/shapes").glob("*"))
also = Path("../input") / "shapes"  # the same input, named the other way scripts name it
Path("seen.json").write_text(json.dumps({"found": found, "cwd": os.getcwd()}))
"""


def _run_local_cli(*args):
    import subprocess

    return subprocess.run([sys.executable, "-m", "kaggle_kit.cli", "run-local", *map(str, args)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_with_a_working_dir_of_your_own_dot_dot_input_is_the_sandboxs_inputs_and_nothing_stays(tmp_path):
    data = tmp_path / "shapes"
    data.mkdir()
    (data / "a.png").write_bytes(b"x")
    script = tmp_path / "kernel.py"
    script.write_text(_READS_INPUT_BY_PATH)
    mine = tmp_path / "project" / "my-working"

    done = _run_local_cli(script, "--input", f"shapes={data}", "--working", mine, "--root", tmp_path / "box")

    assert done.returncode == 0, done.stderr
    seen = json.loads((mine / "seen.json").read_text())
    assert seen["found"] == ["a.png"]
    assert seen["cwd"] == str(mine.resolve())
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["my-working"]  # the link went with the run


def test_a_real_input_folder_beside_your_working_dir_is_left_alone_with_one_line(tmp_path):
    data = tmp_path / "shapes"
    data.mkdir()
    script = tmp_path / "kernel.py"
    script.write_text("print('ran')\n")
    (tmp_path / "project" / "input").mkdir(parents=True)
    (tmp_path / "project" / "input" / "keep.txt").write_text("mine")

    done = _run_local_cli(script, "--input", f"shapes={data}", "--working", tmp_path / "project" / "w",
                          "--root", tmp_path / "box")  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "project" / "input" / "keep.txt").read_text() == "mine"
    assert "(yours, left as it is), not the sandbox's inputs" in done.stderr


def test_an_input_read_by_path_where_kaggle_did_not_put_it_gets_a_hint(tmp_path):
    data = tmp_path / "shapes"
    data.mkdir()
    script = tmp_path / "kernel.py"
    script.write_text(_READS_INPUT_BY_PATH)

    new_layout = _run_local_cli(script, "--input", f"datasets/tester/shapes={data}", "--root", tmp_path / "box")
    old_layout = _run_local_cli(script, "--input", f"shapes={data}", "--root", tmp_path / "box2")

    hints = [line for line in new_layout.stderr.splitlines() if "hint:" in line]
    assert len(hints) == 1, new_layout.stderr  # one per input, however many ways the script names it
    said = "the script reads ../input/shapes, which is not there (it is attached at ../input/datasets/tester/shapes)"
    assert said in hints[0]
    assert 'kk.Kernel.current().find_input("shapes")' in hints[0]
    assert "hint:" not in old_layout.stderr
    script.write_text('from pathlib import Path\nprint(list((Path("../input") / "shapes").glob("*")))\n')
    joined = _run_local_cli(script, "--input", f"datasets/tester/shapes={data}", "--root", tmp_path / "box3")
    assert "the script reads ../input/shapes, which is not there" in joined.stderr  # Path("../input") / "shapes"


def test_run_local_cli_exits_with_the_scripts_code_and_accepts_weird_paths(weird_path):
    import subprocess

    script = weird_path / "kernel; one.py"
    script.write_text("import sys\nprint(sys.argv[1:])\nsys.exit(5)\n")

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaggle_kit.cli",
            "run-local",
            str(script),
            "--memory",
            "2GiB",
            "--root",
            str(weird_path / "box"),
            "--",
            "a b",
            "--x",
        ],
        capture_output=True,
        text=True,
    )

    assert proc.returncode == 5, proc.stderr
    assert "['a b', '--x']" in proc.stdout
    assert "error: exit code 5" in proc.stderr


def test_run_local_cli_rejects_a_bad_limit_in_one_line(tmp_path):
    import subprocess

    script = tmp_path / "k.py"
    script.write_text("pass\n")

    proc = subprocess.run(
        [sys.executable, "-m", "kaggle_kit.cli", "run-local", str(script), "--memory", "lots"],
        capture_output=True,
        text=True,
    )

    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "kaggle-kit: --memory='lots' is not a size; use bytes or a unit, e.g. '17GB' or '2GiB'"
    )


def test_sigterm_to_run_local_stops_the_whole_kernel_and_its_daemon_and_still_writes_the_report(tmp_path):
    import signal as signals
    import subprocess as sp
    import time as clock

    script = tmp_path / "forever.py"
    script.write_text(
        textwrap.dedent("""
        import os, subprocess, sys, time
        from pathlib import Path
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        if os.fork() == 0:  # a daemon: fork, setsid, fork; it leaves the kernel's group and tree
            os.setsid()
            if os.fork() == 0:
                Path("../daemon").write_text(str(os.getpid()))
                time.sleep(600)
            os._exit(0)
        os.wait()
        while not Path("../daemon").exists():
            time.sleep(0.01)
        Path("../pids").write_text(f"{os.getpid()} {child.pid} {Path('../daemon').read_text()}")
        time.sleep(600)
    """)
    )
    runner = sp.Popen([str(Path(sys.executable).parent / "kaggle-kit"), "run-local", str(script), "--root",
                       str(tmp_path / "run"), "--grace", "2s"], stdout=sp.PIPE, stderr=sp.STDOUT)  # fmt: skip
    pids_file = tmp_path / "run/pids"
    for _ in range(30000):  # until the kernel and its child are up (polling a file, not timing; a loaded machine)
        if pids_file.exists() and len(pids_file.read_text().split()) == 3:
            break
        clock.sleep(0.01)
    pids = [int(p) for p in pids_file.read_text().split()]

    runner.send_signal(signals.SIGTERM)
    out = runner.communicate(timeout=120)[0].decode()

    assert runner.returncode == 128 + signals.SIGTERM, out
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not psutil.pid_exists(pids[2])  # the daemon was adopted by run-local, ended and reaped
    report = json.loads((tmp_path / "run/run-report.json").read_text())
    assert report["verdict"] == "stopped"
    assert "run-local got SIGTERM" in report["signals"][-1]
    # what it wrote stays in its working/, which a new run-local uses only when told to: said, not "run it again"
    assert (
        out.strip().splitlines()[-1]
        == f"kaggle-kit: to continue there, run it again with --working {report['working_dir']}"
    )


def test_the_watchdog_reads_exact_memory_rarely_on_an_idle_kernel(tmp_path):
    from kaggle_kit.local.emulate import run_local

    script = tmp_path / "idle.py"
    script.write_text("import time\ntime.sleep(3)\n")
    runner = psutil.Process()
    before = runner.cpu_times()

    report = run_local(script, limits=KernelLimits().with_overrides(memory="2GiB"), root=tmp_path / "run")

    after = runner.cpu_times()
    used_s = (after.user + after.system) - (before.user + before.system)
    assert report.ok
    assert report.exact_samples < report.samples / 2  # PSS (~20 ms with torch loaded) only now and then
    assert used_s < 0.15 * report.elapsed_s  # generous: measured about 1% (benchmarks/watchdog.py)


def test_nested_or_dot_slugs_are_refused_and_nothing_is_written_into_an_input(tmp_path):
    import pytest

    from kaggle_kit.errors import KernelLayoutError
    from kaggle_kit.local.emulate import parse_input_spec, run_local

    d1, d2 = tmp_path / "D1", tmp_path / "D2"
    d1.mkdir()
    d2.mkdir()
    (tmp_path / "s.py").write_text("print('hi')\n")

    with pytest.raises(KernelLayoutError, match="lies inside the input a"):
        run_local(tmp_path / "s.py", inputs=[f"a={d1}", f"a/b={d2}"], root=tmp_path / "sandbox")
    with pytest.raises(KernelLayoutError, match="the slug must be a plain name"):
        parse_input_spec(f".={d1}")

    assert list(d1.iterdir()) == []


def test_a_kernel_ends_when_its_run_local_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import time

    script = tmp_path / "s.py"
    script.write_text("import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(300)\n")
    supervisor = subprocess.Popen([sys.executable, "-c", "import sys\nfrom kaggle_kit.local.emulate import run_local\n"
                                   f"run_local({str(script)!r}, root={str(tmp_path / 'sandbox')!r})"])  # fmt: skip
    pid_file = tmp_path / "sandbox" / "working" / "pid"
    for _ in range(600):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    kernel = psutil.Process(int(pid_file.read_text()))

    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait()

    outlived = False
    try:
        kernel.wait(timeout=30)
    except psutil.TimeoutExpired:
        outlived = True
        kernel.kill()  # end what we started before failing below
    assert not outlived, "the kernel outlived its run-local"


def test_a_working_dir_over_its_size_limit_is_not_ok(run_kernel):
    from kaggle_kit.local.report import TOO_MUCH_OUTPUT

    script = """
        open("big.bin", "wb").truncate(25 * 10**9)  # sparse: 25 GB as Kaggle counts it, no disk used here
    """

    run = run_kernel(script)

    assert run.report.verdict == TOO_MUCH_OUTPUT, run.explain()
    assert run.report.output_bytes == 25 * 10**9


DAEMON = """
    import os, time
    from pathlib import Path
    if os.fork() == 0:  # a daemon: fork, setsid, fork; it leaves the kernel's group and process tree
        os.setsid()
        middle = os.getpid()
        if os.fork() == 0:
            Path("../daemon.pid").write_text(str(os.getpid()))
            while os.getppid() == middle:  # allocate only once out of the kernel's tree (re-parented)
                time.sleep(0.01)
            block = b"\\x01" * int({gib} * 2**30)
            time.sleep(300)
        os._exit(0)
    os.wait()
    while not Path("../daemon.pid").exists():
        time.sleep(0.01)
    time.sleep({stay})
    print("kernel finished")
"""


@pytest.mark.parametrize(("stay", "verdict"), [(0, OK), (120, OUT_OF_TIME)], ids=["kernel-ends", "time-out-kill"])
def test_a_daemon_the_kernel_leaves_behind_is_ended_with_the_kernel(stay, verdict, run_kernel, tmp_path):
    run = run_kernel(DAEMON.format(gib=0, stay=stay), memory="1GiB", time="5s")

    daemon = int((tmp_path / "sandbox-kernel-0/daemon.pid").read_text())
    assert run.report.verdict == verdict, run.explain()
    assert not psutil.pid_exists(daemon)  # ended and reaped, not left running (nor a zombie) after run-local


def test_memory_held_by_a_daemon_that_left_the_kernel_counts_against_the_limit(run_kernel, tmp_path):
    run = run_kernel(DAEMON.format(gib=1.5, stay=60), memory="1GiB")

    daemon = int((tmp_path / "sandbox-kernel-0/daemon.pid").read_text())
    assert run.report.verdict == OUT_OF_MEMORY, run.explain()
    assert "kernel finished" not in run.stdout
    assert not psutil.pid_exists(daemon)


def test_a_run_local_kernel_gets_none_of_the_users_kaggle_credentials(tmp_path):
    import os
    import subprocess

    script = tmp_path / "env.py"
    script.write_text("import json, os\nfrom pathlib import Path\n"
                      "found = sorted(str(p) for p in Path.home().rglob('*') if 'kaggle' in str(p).lower())\n"
                      "open('env.json', 'w').write(json.dumps({**os.environ, 'FOUND': found}))\n")  # fmt: skip
    canary = "canary-key-5f1e0c2a9b"
    home = tmp_path / "user-home"
    for folder in (home / ".kaggle", home / ".config/kaggle"):
        folder.mkdir(parents=True)
        (folder / "kaggle.json").write_text(json.dumps({"username": "someone", "key": canary}))
    env = {**os.environ, "KAGGLE_KEY": canary, "KAGGLE_API_TOKEN": canary + "-token", "KAGGLE_USERNAME": "someone",
           "KAGGLE_CONFIG_DIR": str(tmp_path / "user-kaggle"), "HOME": str(home)}  # fmt: skip

    proc = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", "run-local", str(script), "--root",
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    seen = (tmp_path / "run/working/env.json").read_text()
    assert canary not in seen
    assert "KAGGLE_USERNAME" not in seen
    assert "user-kaggle" not in seen
    assert "KAGGLE_KIT_ROOT" in seen  # the file is the kernel's environment
    assert json.loads(seen)["FOUND"] == []  # its home is its own: no ~/.kaggle, no ~/.config/kaggle to read


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"memory_kind": "uss"}, "memory_kind='uss': use 'pss' or 'rss'"),
    ({"grace_s": -1}, "grace_s=-1 must be >= 0"),
])  # fmt: skip
def test_enforcement_settings_are_refused_where_they_are_written(kwargs, message):
    with pytest.raises(UsageError, match=message):
        Enforcement(**kwargs)
