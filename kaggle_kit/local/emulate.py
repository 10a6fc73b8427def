"""Run a kernel script locally in a Kaggle-shaped sandbox, with the kernel's limits enforced for real.

The sandbox is a root holding ``input/<slug>`` (links to the given paths) and ``working/`` (the script's current
directory). The script runs in its own process group; a watchdog samples the memory of its whole process tree
(DataLoader workers included) every few milliseconds and SIGKILLs the group at the limit, so the run ends with exit
code 137 as on Kaggle. At the time limit the group gets SIGTERM, then SIGKILL after a grace period. Output files
are counted at the end. A JSON run report is written outside ``working/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

from kaggle_kit.errors import KernelLayoutError
from kaggle_kit.events import EVENTS_ENV
from kaggle_kit.limits import KernelLimits
from kaggle_kit.local.bundle_only import bundle_only_launcher
from kaggle_kit.local.report import (
    ERROR,
    EVENTS_NAME,
    OK,
    OUT_OF_MEMORY,
    OUT_OF_TIME,
    REPORT_NAME,
    STOPPED,
    TOO_MANY_FILES,
    TOO_MUCH_OUTPUT,
    RunReport,
)
from kaggle_kit.local.sandbox import input_beside, input_hints, make_sandbox
from kaggle_kit.local.supervise import (
    RUN_TOKEN_ENV,
    Enforcement,
    KernelProcesses,
    Watchdog,
    end_with_supervisor,
    subreaper,
)
from kaggle_kit.outputs import OutputBudget
from kaggle_kit.status import KernelStatus, StatusError

__all__ = ["run_local", "parse_input_spec"]

log = logging.getLogger(__name__)

# A kernel on Kaggle has no Kaggle credentials; the emulated one gets none of the user's either
CREDENTIAL_ENV = ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_CONFIG_DIR", "KAGGLE_API_V1_TOKEN_PATH")


def parse_input_spec(spec: str) -> tuple[str, Path]:
    """ "[SLUG=]PATH" -> (slug, path); the slug defaults to the path's name and may hold "/" for the new layout
    (e.g. "competitions/imaterialist-fashion-2019-FGVC6=./data")."""
    slug, sep, raw = spec.partition("=")
    path = Path(raw if sep else slug).expanduser()
    slug = slug.strip("/") if sep else path.resolve().name
    if not path.exists():
        raise KernelLayoutError(f"--input {spec!r}: {path} does not exist", spec)
    if not slug or slug in (".", "..") or ".." in Path(slug).parts or "." in Path(slug).parts[:1]:
        raise KernelLayoutError(f"--input {spec!r}: the slug must be a plain name like 'my-dataset'", spec)
    return slug, path.resolve()


def run_local(
    script: str | os.PathLike,
    *,
    inputs: Mapping[str, str | os.PathLike] | Sequence[str] = (),
    limits: KernelLimits | None = None,
    root: str | os.PathLike | None = None,
    working: str | os.PathLike | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    enforcement: Enforcement | None = None,
    report_path: str | os.PathLike | None = None,
    stdout: IO | None = None,
    stderr: IO | None = None,
    python_args: Sequence[str] = (),
    plot: bool = False,
    bundle_only: bool = False,
    cancel: threading.Event | None = None,
    run_token: str | None = None,
) -> RunReport:
    """Run `script` with Python in a Kaggle-shaped sandbox under `limits` and return its report.

    `inputs`: {slug: path} or "[SLUG=]PATH" strings, linked as ``input/<slug>``.
    `root`: the sandbox (default ``./kaggle-kit-runs/<script>-<time>``). `working`: a directory to use (and keep)
    as ``working/``, e.g. a previous run's, to resume in "the same kernel"; default: a fresh ``root/working``.
    `env`: extra environment variables (e.g. KAGGLE_KIT_CONFIG). `enforcement`: how the limits are enforced
    (``Enforcement``: 10 s between SIGTERM and SIGKILL, memory as PSS sampled every 20 ms).
    The report is also written as JSON to `report_path` (default ``root/run-report.json``). `python_args` go to the
    interpreter before the script (e.g. ["-S"] to run without site-packages, as a bundle would on Kaggle).
    `plot`: also draw the run against its limits beside the report (same name, .png; ``kaggle_kit.local.runplot``).
    `bundle_only`: hide the installed kaggle_kit from the script, so a bundle runs on its own embedded copy (as on
    Kaggle, where kaggle_kit is not installed) and a script that is not a bundle fails to import it.
    `cancel`: when this event is set, the kernel is ended as at a stop (SIGTERM, the grace, SIGKILL; verdict
    "stopped"), e.g. by a local Kaggle shutting down.
    `run_token`: the token every process of the kernel carries (default: a new one), which a supervisor started
    after this one was killed can look for (``supervise.end_leftovers``).
    """
    script = Path(script).resolve()
    if not script.is_file():
        raise KernelLayoutError(f"kernel script {script} does not exist", str(script))
    limits = limits or KernelLimits.from_env()
    pairs = inputs.items() if isinstance(inputs, Mapping) else (parse_input_spec(s) for s in inputs)
    if root is None:  # a fresh folder per run: two runs started in the same second never share one
        runs = Path.cwd() / "kaggle-kit-runs"
        runs.mkdir(exist_ok=True)
        root = tempfile.mkdtemp(prefix=f"{script.stem}-{datetime.now():%Y%m%d-%H%M%S}-", dir=runs)
    root = Path(root).resolve()
    working_dir = make_sandbox(root, [(str(s), Path(p)) for s, p in pairs], working)
    for hint in input_hints(script, root / "input"):
        log.warning("%s", hint)
    report_path = Path(report_path) if report_path else root / REPORT_NAME
    if report_path.resolve().is_relative_to(working_dir.resolve()):
        raise KernelLayoutError(
            f"the run report {report_path} must not be inside working/ (it would count as an output file)",
            str(report_path),
        )

    events = report_path.parent / EVENTS_NAME
    events.unlink(missing_ok=True)  # a root used again: only this run's moments
    started_at = time.time()
    child_env = {
        **os.environ,
        **(env or {}),
        **limits.to_env(),
        EVENTS_ENV: str(events),
        "KAGGLE_KIT_ROOT": str(root),
        "KAGGLE_KIT_STARTED_AT": repr(started_at),
        "PYTHONUNBUFFERED": "1",
    }
    child_env.pop("KAGGLE_KERNEL_RUN_TYPE", None)  # the script must see the sandbox, not a real /kaggle
    for key in CREDENTIAL_ENV:
        child_env.pop(key, None)
    child_env.update(_kernel_home(root, child_env))
    child_env[RUN_TOKEN_ENV] = run_token or uuid.uuid4().hex  # inherited by whatever the kernel starts
    cpus = _pinned_cpus(limits.cpus, limits.profile)
    if cpus is not None:  # torch and numpy size their thread pools by it: as many threads as the kernel has cores
        child_env.setdefault("OMP_NUM_THREADS", str(len(cpus)))
    launch = bundle_only_launcher() if bundle_only else []
    with subreaper(), input_beside(working_dir, root / "input"):  # ../input from any working dir, as on Kaggle
        proc = subprocess.Popen(
            [sys.executable, *python_args, *launch, str(script), *args],
            cwd=working_dir,
            env=child_env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=lambda: _in_kernel_process(cpus),
        )
        enforcement = enforcement or Enforcement()
        watch = Watchdog(KernelProcesses(proc, child_env[RUN_TOKEN_ENV]), limits, enforcement)
        stopped_by = _supervise(proc, watch, started_at, enforcement.grace_s, cancel)
        elapsed = time.time() - started_at
        watch.kill(signal.SIGKILL)  # whatever the script left behind: its group, its daemons

    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    used = OutputBudget(working_dir, limits).usage()
    if stopped_by is not None:
        verdict, code = STOPPED, 128 + stopped_by
    elif watch.verdict == OUT_OF_MEMORY:
        verdict, code = OUT_OF_MEMORY, 137
    elif watch.verdict == OUT_OF_TIME:
        verdict = OUT_OF_TIME
    elif used.files > limits.max_files:
        verdict = TOO_MANY_FILES
    elif used.bytes > limits.working_bytes:  # Kaggle would not save this working dir: the run is not ok
        verdict = TOO_MUCH_OUTPUT
    else:
        verdict = OK if code == 0 else ERROR
    report = RunReport(
        script=str(script),
        exit_code=code,
        verdict=verdict,
        peak_memory_bytes=watch.peak_bytes,
        peak_at_s=watch.peak_at_s,
        started_at=started_at,
        elapsed_s=round(elapsed, 3),
        output_files=used.files,
        output_bytes=used.bytes,
        root=str(root),
        working_dir=str(working_dir),
        limits=limits,
        signals=watch.signals,
        samples=watch.samples,
        exact_samples=watch.exact_samples,
        memory_timeline=watch.timeline,
        **_kernel_says(working_dir),
    )
    report.write(report_path)
    if plot:
        from kaggle_kit.local.runplot import plot_run

        try:
            plot_run(report, report_path.with_suffix(".png"), started_at)
        except Exception as exc:  # noqa: BLE001 - a picture must never cost the run's report
            log.warning("could not draw %s: %s", report_path.with_suffix(".png"), exc)
    log.info("%s", report.summary())
    if stopped_by == signal.SIGINT:
        raise KeyboardInterrupt  # the kernel is stopped and reported; Ctrl-C still ends whoever called us
    return report


def _kernel_home(root: Path, env: Mapping[str, str]) -> dict[str, str]:
    """A home of the kernel's own (``root/home``), as on Kaggle, where it holds no credentials: the kernel cannot read
    ``~/.kaggle`` or ``~/.config/kaggle``. The user's caches (torch weights, matplotlib's font cache) and their
    ``pip --user`` packages stay where they are, so nothing is downloaded or rebuilt."""
    real = Path(env.get("HOME") or Path.home())
    home = root / "home"
    (home / ".config").mkdir(parents=True, exist_ok=True)
    config = Path(env.get("XDG_CONFIG_HOME") or real / ".config")
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": env.get("XDG_CACHE_HOME") or str(real / ".cache"),
        "MPLCONFIGDIR": env.get("MPLCONFIGDIR") or str(config / "matplotlib"),
        "PYTHONUSERBASE": env.get("PYTHONUSERBASE") or str(real / ".local"),  # site.getuserbase()'s rule
    }


def _supervise(proc: subprocess.Popen, watch: Watchdog, started_at: float, grace_s: float,
               cancel: threading.Event | None) -> int | None:  # fmt: skip
    """Watch the kernel until it ends; the signal that stopped it early (SIGTERM, SIGINT), or None."""
    try:
        with _signals_raise_stop():
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    raise _Stop(signal.SIGTERM, "run-local was cancelled: the kernel was stopped")
                time.sleep(watch.check(time.time() - started_at))
    except _Stop as stop:  # a CI cancel or Ctrl-C: end the kernel as Kaggle would (TERM, grace, KILL), then report
        watch.kill(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            watch.kill(signal.SIGKILL)
            proc.wait()
        watch.signals.append(stop.why)
        return stop.signum
    except BaseException:
        watch.kill(signal.SIGKILL)  # never leave a kernel running behind an interrupted emulator
        proc.wait()
        raise
    return None


def _kernel_says(working_dir: Path) -> dict[str, str | None]:
    """The kernel's own status after the run (``kaggle-kit-status.json``): a run can be ok and still need a resume."""
    try:
        status = KernelStatus.load(working_dir)
    except StatusError as exc:
        return {"kernel_status": f"unreadable ({exc})"}
    if status is None:
        return {}
    where = status.where() if status.epoch is not None else None
    return {"kernel_status": status.status, "kernel_position": where}


class _Stop(BaseException):
    """run-local was asked to stop (SIGTERM or SIGINT)."""

    def __init__(self, signum: int, why: str | None = None):
        super().__init__(signum)
        self.signum = signum
        self.why = why or f"run-local got {signal.Signals(signum).name}: the kernel was stopped"


@contextlib.contextmanager
def _signals_raise_stop():
    """While running a kernel, SIGTERM and SIGINT raise `_Stop` (main thread only: signals cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, _frame):
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_SAID: set[str] = set()  # warnings said once per process (each rehearsal run would repeat them)


def _pinned_cpus(wanted: int | None, profile: str) -> set[int] | None:
    """The cores to pin a kernel that asks for `wanted` of them to: the first `wanted` this process may use; None
    (no pinning) when it asks for none, or for more than this machine has (said once)."""
    if wanted is None:
        return None
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < wanted:
        message = (f"kaggle-kit: the {profile} profile gives a kernel {wanted} CPU cores; this machine has "
                   f"{len(mine)}, so it gets those")  # fmt: skip
        if message not in _SAID:
            _SAID.add(message)
            log.warning("%s", message)
        return None
    return set(mine[:wanted])


def _in_kernel_process(cpus: set[int] | None) -> None:
    """In the kernel's process before the script starts: die with run-local, and keep to its cores."""
    end_with_supervisor()
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
