"""What run-local starts is run-local's until it ends: the kernel's processes, found and watched, all of them ended.

A kernel script can start processes that leave its process tree: a daemon forks, calls ``setsid`` and forks again,
and its parent exits. ``killpg`` and ``PR_SET_PDEATHSIG`` reach only the script's own group and process, so such a
daemon would run on after the kernel, uncounted by the memory watch. Here:
- the supervisor (the process calling `run_local`) is a *child subreaper* while kernels run
  (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux): an orphan of the kernel is re-parented to it, not to init;
- every kernel carries a run token in its environment (`RUN_TOKEN_ENV`), which its descendants inherit;
- `KernelProcesses` is the kernel's tree plus the supervisor's adopted children that were seen in that tree before
  or carry its token; the watchdog sums their memory, and `kill` ends them all, then reaps the adopted ones.
A process that both leaves the tree before it is ever seen and clears its environment cannot be told from another
kernel's; without cgroups (not ours to write on these machines) that is the one way out, and it is documented.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import psutil

from kaggle_kit.errors import UsageError
from kaggle_kit.limits import KernelLimits
from kaggle_kit.local.report import OUT_OF_MEMORY, OUT_OF_TIME
from kaggle_kit.memory import PSS_EVERY_S, processes_memory

__all__ = [
    "Enforcement", "KernelProcesses", "Watchdog", "subreaper", "end_with_supervisor", "end_leftovers", "RUN_TOKEN_ENV",
    "SLOW_SAMPLE_S",
]  # fmt: skip

log = logging.getLogger(__name__)

RUN_TOKEN_ENV = "KAGGLE_KIT_RUN_TOKEN"
SLOW_SAMPLE_S = 0.25  # the watchdog's period while memory is flat and under half the limit
_ADOPTED_EVERY_S = 0.25  # how often the supervisor's adopted children are looked at between kills
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36
_subreaper_lock = threading.Lock()
_subreaper_users = 0


@contextlib.contextmanager
def subreaper():
    """While inside, this process adopts the orphans of every process it started (Linux; elsewhere a no-op).

    Counted across threads (a local Kaggle runs several kernels at once): the flag is cleared when the last user
    leaves, so a long-lived caller (a test session) does not keep adopting unrelated orphans."""
    global _subreaper_users
    with _subreaper_lock:
        if _subreaper_users == 0:
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        _subreaper_users += 1
    try:
        yield
    finally:
        with _subreaper_lock:
            _subreaper_users -= 1
            if _subreaper_users == 0:
                _prctl(_PR_SET_CHILD_SUBREAPER, 0)


def end_with_supervisor() -> None:
    """In the kernel's process, before the script starts: die with SIGKILL when run-local dies (Linux prctl).

    A run-local that is itself SIGKILLed can stop nothing; without this its kernel would run on with no limits.
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def end_leftovers(token: str) -> list[int]:
    """SIGKILL every process that carries the run token `token`: what a kernel left running when its supervisor was
    itself killed (SIGKILL reaches nobody's cleanup), found and ended by the next supervisor of the same run (a
    local Kaggle started again on its root). Returns their pids. Only processes of that kernel carry the token."""
    ended = []
    if not token:
        return ended
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(RUN_TOKEN_ENV) == token:
                proc.kill()
                ended.append(proc.pid)
        except psutil.Error:
            continue  # gone, or not ours to read
    return ended


class KernelProcesses:
    """Every process of one kernel: the script's process `proc`, its descendants, and those that left the tree and
    were adopted by this (subreaper) process, told apart by the kernel's `token` (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen, token: str):
        self.proc, self.token = proc, token
        self._seen: dict[int, float] = {}  # pid -> create time of every process seen as the kernel's
        self._verdicts: dict[tuple[int, float], bool] = {}  # adopted (pid, create time) -> is it the kernel's
        self._adopted: list[psutil.Process] = []
        self._adopted_at = -_ADOPTED_EVERY_S

    def members(self, fresh: bool = False) -> list[psutil.Process]:
        """The kernel's processes now; adopted ones are looked for every `_ADOPTED_EVERY_S`, or now when `fresh`."""
        procs: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.proc.pid)
            procs.update({p.pid: p for p in (root, *root.children(recursive=True))})
        now = time.monotonic()
        if fresh or now - self._adopted_at >= _ADOPTED_EVERY_S:
            self._adopted_at, self._adopted = now, self._find_adopted(procs)
        for adopted in self._adopted:
            with contextlib.suppress(psutil.Error):
                procs.update({p.pid: p for p in (adopted, *adopted.children(recursive=True))})
        for p in procs.values():
            with contextlib.suppress(psutil.Error):
                self._seen.setdefault(p.pid, p.create_time())
        return list(procs.values())

    def memory(self, kind: str) -> int:
        """Bytes the kernel's processes hold together ("rss" or "pss")."""
        return processes_memory([p.pid for p in self.members()], kind)

    def kill(self, sig: signal.Signals) -> None:
        """Send `sig` to the script's group and to every process of the kernel (only processes it started)."""
        members = self.members(fresh=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
        for p in members:
            if p.pid != self.proc.pid:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(sig)
        if sig == signal.SIGKILL:
            self._reap([p for p in self._adopted if p.pid != self.proc.pid])

    def _find_adopted(self, tree: dict[int, psutil.Process]) -> list[psutil.Process]:
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return []
        found = []
        for child in children:
            if child.pid == self.proc.pid or child.pid in tree:
                continue
            try:
                key = (child.pid, child.create_time())
                if key not in self._verdicts:
                    self._verdicts[key] = self._seen.get(child.pid) == key[1] or self._carries_token(child)
            except psutil.Error:
                continue
            if self._verdicts[key]:
                found.append(child)
        return found

    def _carries_token(self, child: psutil.Process) -> bool:
        try:
            return child.environ().get(RUN_TOKEN_ENV) == self.token
        except psutil.Error:
            return False

    def _reap(self, adopted: list[psutil.Process], timeout_s: float = 5.0) -> None:
        """Collect the exit status of killed adopted processes, so none stays behind as a zombie of ours."""
        end = time.monotonic() + timeout_s
        for p in adopted:
            while True:
                try:
                    pid, _ = os.waitpid(p.pid, os.WNOHANG)
                except ChildProcessError:
                    break  # not (or no longer) our child: init or its own parent reaps it
                if pid or time.monotonic() >= end:
                    break
                time.sleep(0.01)


@dataclass(frozen=True)
class Enforcement:
    """How ``run_local`` enforces a kernel's limits: `grace_s` seconds between SIGTERM and SIGKILL at the time limit
    (and when a run is cancelled); the process tree sampled at least every `sample_every_s` seconds while memory is
    high or growing; its memory counted as "pss" (shared pages split between the processes that map them, as a
    cgroup charges them) or "rss" (each process's resident pages in full: higher with DataLoader workers)."""

    grace_s: float = 10.0
    sample_every_s: float = 0.02
    memory_kind: str = "pss"

    def __post_init__(self):
        if self.memory_kind not in ("pss", "rss"):
            raise UsageError(f"memory_kind={self.memory_kind!r}: use 'pss' or 'rss'", self.memory_kind)
        if not (self.grace_s >= 0 and self.sample_every_s > 0):
            raise UsageError(f"grace_s={self.grace_s} must be >= 0 and sample_every_s={self.sample_every_s} > 0",
                             (self.grace_s, self.sample_every_s))  # fmt: skip


class Watchdog:
    """Enforces memory and time limits on a kernel's processes; records the peak and the signals sent.

    Cheap by design (it must not eat the machine it measures): every sample reads the processes' RSS (``statm``,
    about 1 ms), which is never below PSS, so the exact and costly PSS (``smaps_rollup``, ~20 ms for a process with
    torch loaded) is read only when RSS reaches 85% of the limit, at a new RSS high, or every `PSS_EVERY_S`. The
    period is `sample_every_s` (20 ms) when memory is over half the limit or growing, `SLOW_SAMPLE_S` (250 ms)
    when flat.
    """

    def __init__(self, processes: KernelProcesses, limits: KernelLimits, enforcement: Enforcement = Enforcement()):
        self.processes, self.limits = processes, limits
        self.grace_s, self.memory_kind, self.fast_s = (enforcement.grace_s, enforcement.memory_kind,
                                                       enforcement.sample_every_s)  # fmt: skip
        self.peak_bytes = 0
        self.peak_at_s: float | None = None
        self.verdict: str | None = None
        self.signals: list[str] = []
        self.samples = self.exact_samples = 0
        self._term_at: float | None = None
        self._last_rss = self._rss_at_exact = 0
        self._exact_at = -PSS_EVERY_S
        self.timeline: list[list[float]] = []

    def check(self, elapsed_s: float) -> float:
        """Sample memory, enforce the limits; return the seconds to wait before the next check."""
        limit = self.limits.memory_bytes
        pids = [p.pid for p in self.processes.members()]
        rss = processes_memory(pids, "rss")
        usage = rss
        self.samples += 1
        if rss and (not self.timeline or elapsed_s - self.timeline[-1][0] >= max(1.0, elapsed_s / 1000)):
            self.timeline.append([round(elapsed_s, 2), rss])  # for the plot: ~1000 points; none once the tree is gone
        if self.memory_kind == "pss" and (rss >= 0.85 * limit or rss > 1.02 * self._rss_at_exact
                                          or elapsed_s - self._exact_at >= PSS_EVERY_S):  # fmt: skip
            usage = processes_memory(pids, "pss")
            self.exact_samples += 1
            self._exact_at, self._rss_at_exact = elapsed_s, rss
        elif self.memory_kind == "pss":
            usage = 0  # not exact: RSS under 85% of the limit says PSS is too; the peak comes from exact samples
        if usage > self.peak_bytes:
            self.peak_bytes, self.peak_at_s = usage, round(elapsed_s, 2)
        if usage >= limit and self.verdict is None:
            self.verdict = OUT_OF_MEMORY
            self._send(signal.SIGKILL, f"SIGKILL at {elapsed_s:.2f}s: memory {usage} >= {limit}")
        elif elapsed_s >= self.limits.time_s and self._term_at is None and self.verdict is None:
            self.verdict, self._term_at = OUT_OF_TIME, elapsed_s
            self._send(signal.SIGTERM, f"SIGTERM at {elapsed_s:.2f}s: time limit {self.limits.time_s}s")
        elif (
            self._term_at is not None
            and elapsed_s >= self._term_at + self.grace_s
            and "SIGKILL" not in str(self.signals)
        ):
            self._send(signal.SIGKILL, f"SIGKILL at {elapsed_s:.2f}s: {self.grace_s}s after SIGTERM")
        growing, self._last_rss = rss > 1.01 * self._last_rss, rss
        busy = growing or rss >= limit / 2 or self._term_at is not None
        to_time_limit = max(self.limits.time_s - elapsed_s, 0.0)
        return min(self.fast_s if busy else max(self.fast_s, SLOW_SAMPLE_S), max(to_time_limit, self.fast_s))

    def kill(self, sig: signal.Signals) -> None:
        """Send `sig` to every process of the kernel."""
        self.processes.kill(sig)

    def _send(self, sig: signal.Signals, why: str) -> None:
        self.signals.append(why)
        log.warning("kernel watchdog: %s", why)
        self.kill(sig)


def _prctl(option: int, value: int) -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
