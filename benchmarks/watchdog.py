"""Benchmark: the CPU that `run-local`'s watchdog takes from the machine it measures, on an idle kernel.

The kernel imports fastai (as every real one does) and sleeps. The previous watchdog read every process's PSS every
20 ms; today's reads the cheap RSS and takes PSS only near the limit, at a new high or every 2 s, sampling every
250 ms while memory is flat. Both watch the same kernel for the same time in one run.

    .venv/bin/python benchmarks/watchdog.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from kaggle_kit.limits import KernelLimits
from kaggle_kit.local.emulate import run_local
from kaggle_kit.memory import process_tree_memory

KERNEL = "import time, fastai.vision.all\nprint('ready', flush=True)\ntime.sleep({seconds})\n"


def cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def previous_watchdog(seconds: float) -> tuple[float, int]:
    """CPU seconds and samples of PSS every 20 ms on the same idle kernel."""
    proc = subprocess.Popen([sys.executable, "-c", KERNEL.format(seconds=seconds)], stdout=subprocess.PIPE)
    proc.stdout.readline()  # imports done: measure the idle part only
    start, started, samples = cpu_s(), time.monotonic(), 0
    while proc.poll() is None and time.monotonic() - started < seconds - 1:
        process_tree_memory(proc.pid, "pss")
        samples += 1
        time.sleep(0.02)
    used = cpu_s() - start
    proc.kill()
    proc.wait()
    return used / (time.monotonic() - started), samples


def todays_watchdog(seconds: float) -> tuple[float, int, int]:
    """CPU share of `run_local` on the same idle kernel, measured (like the previous one) once imports are done."""
    with tempfile.TemporaryDirectory() as tmp:
        script, log = Path(tmp) / "idle.py", Path(tmp) / "out"
        script.write_text(KERNEL.format(seconds=seconds))
        reports = []

        def run() -> None:
            with open(log, "w") as out:
                reports.append(run_local(script, limits=KernelLimits().with_overrides(memory="17GB"),
                                         root=Path(tmp) / "run", stdout=out, stderr=out))  # fmt: skip

        thread = threading.Thread(target=run)
        thread.start()
        while "ready" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.05)
        start, started = cpu_s(), time.monotonic()
        time.sleep(seconds - 1)  # this thread sleeps: the CPU used is the watchdog's
        share = (cpu_s() - start) / (time.monotonic() - started)
        thread.join()
        return share, reports[0].samples, reports[0].exact_samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    seconds = parser.parse_args().seconds
    old, old_samples = previous_watchdog(seconds)
    new, samples, exact = todays_watchdog(seconds)
    print(f"Idle kernel with fastai imported, {seconds:.0f} s\n")
    print("| watchdog | CPU while idle (share of one core) | samples (whole run) | exact (PSS) samples |")
    print("|---|---|---|---|")
    print(f"| previous: PSS every 20 ms | {old:.1%} | {old_samples} | {old_samples} |")
    print(f"| today: RSS, PSS when needed, adaptive period | {new:.1%} | {samples} | {exact} |")


if __name__ == "__main__":
    main()
