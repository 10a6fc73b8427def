"""How much RAM the kernel uses now, counted the way the platform counts it (bytes).

On Kaggle the kernel is a container: its cgroup's usage (minus reclaimable page cache) against the cgroup's limit
is what gets it killed. Where no real cgroup limit is set (a laptop, the emulator), the kernel is this process and
its children: DataLoader workers included, summed by PSS so pages they share with the parent count once.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import psutil

from kaggle_kit.errors import UsageError
from kaggle_kit.limits import KernelLimits

__all__ = ["MemoryMonitor", "process_tree_memory", "processes_memory", "cgroup_memory"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PSS_EVERY_S = 2.0  # an exact (PSS) reading at least this often; cheaper RSS-based estimates between them
EXACT_NEAR_LIMIT = 0.85  # share of the limit from which every reading is exact


def process_tree_memory(pid: int, kind: str = "pss") -> int:
    """Bytes held by process `pid` and all its descendants; `kind` is "pss" (shared pages split) or "rss".

    Processes that exit while being read are skipped. PSS falls back to RSS where smaps_rollup is unreadable.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    return processes_memory([p.pid for p in procs], kind)


def processes_memory(pids: list[int], kind: str = "pss") -> int:
    """Bytes held by the processes `pids` together ("pss" or "rss"); one that is gone counts 0."""
    return sum(_process_memory(pid, kind) for pid in pids)


def cgroup_memory(root: Path = _CGROUP_ROOT) -> tuple[int, int] | None:
    """(usage, limit) in bytes of this process's memory cgroup, or None when there is no real limit.

    Usage leaves out inactive file cache, which the kernel reclaims before it kills anything. A limit at or above
    the machine's RAM is no limit.
    """
    v2 = root / "memory.max"
    if v2.exists():
        usage_file, limit_file, stat_file, inactive_key = (
            v2.with_name("memory.current"),
            v2,
            "memory.stat",
            "inactive_file",
        )
    else:
        v1 = root / "memory"
        usage_file, limit_file = v1 / "memory.usage_in_bytes", v1 / "memory.limit_in_bytes"
        stat_file, inactive_key = "memory/memory.stat", "total_inactive_file"
    try:
        raw_limit = limit_file.read_text().strip()
        usage = int(usage_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if raw_limit == "max" or int(raw_limit) >= psutil.virtual_memory().total:
        return None
    try:
        for line in (root / stat_file).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key:
                usage -= int(value)
                break
    except (OSError, ValueError):
        pass
    return max(0, usage), int(raw_limit)


class MemoryMonitor:
    """Samples the kernel's memory use and keeps the recent peak; cheap enough to call once per batch.

    `limits` gives the profile's RAM limit; the effective limit is the smaller of it and a real cgroup limit.
    `source` is "auto" (cgroup on Kaggle when a limit is set there, else the process tree's PSS), "cgroup",
    "pss" or "rss"; PSS is read exactly every `PSS_EVERY_S` and near the limit, estimated from RSS between (see
    `_pss`). `pid` is the root of the process tree (this process by default). All sizes are bytes.
    """

    def __init__(
        self,
        limits: KernelLimits | None = None,
        *,
        pid: int | None = None,
        source: str = "auto",
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if source not in ("auto", "cgroup", "pss", "rss"):
            raise UsageError(f"source={source!r}; expected 'auto', 'cgroup', 'pss' or 'rss'")
        self.limits = limits or KernelLimits.from_env()
        self.pid = os.getpid() if pid is None else pid
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._peak_ever = 0
        self._exact = (-float("inf"), 0, 0)  # (when, PSS, RSS) of the last exact reading
        self.exact_samples = 0
        cgroup = cgroup_memory() if source in ("auto", "cgroup") else None
        on_kaggle = bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE"))
        if source == "cgroup" or (source == "auto" and cgroup is not None and on_kaggle):
            self.source = "cgroup"
        else:
            self.source = "pss" if source == "auto" else source
        self._cgroup_limit = cgroup[1] if cgroup else None

    @property
    def limit_bytes(self) -> int:
        """The RAM the kernel may use: the profile's limit, or a smaller real cgroup limit."""
        if self._cgroup_limit is not None:
            return min(self.limits.memory_bytes, self._cgroup_limit)
        return self.limits.memory_bytes

    def usage_bytes(self) -> int:
        """Sample now: the bytes the platform counts against the kernel. Records the sample for `peak_bytes`."""
        now = self._clock()
        if self.source == "cgroup":
            reading = cgroup_memory()
            usage = reading[0] if reading else self._pss(now)
        elif self.source == "pss":
            usage = self._pss(now)
        else:
            usage = process_tree_memory(self.pid, self.source)
        self._samples.append((now, usage))
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._samples.popleft()
        self._peak_ever = max(self._peak_ever, usage)
        return usage

    def _pss(self, now: float) -> int:
        """The tree's PSS: exact (``smaps_rollup``, ~20 ms with torch loaded) every `PSS_EVERY_S` and near the
        limit; in between the last exact figure plus the change in RSS (``statm``, ~1 ms), which follows private
        growth byte for byte and over-counts newly shared pages (a forked worker); pages a worker copies on write
        (shared -> private, RSS unchanged) show at the next exact reading. Cheap enough for every batch."""
        rss = process_tree_memory(self.pid, "rss")
        estimate = self._exact[1] + rss - self._exact[2]
        if now - self._exact[0] >= PSS_EVERY_S or estimate >= EXACT_NEAR_LIMIT * self.limit_bytes:
            self._exact = (now, process_tree_memory(self.pid, "pss"), rss)
            self.exact_samples += 1
            return self._exact[1]
        return max(0, estimate)

    def headroom_bytes(self) -> int:
        """Bytes left before the limit, from a fresh sample (negative once over it)."""
        return self.limit_bytes - self.usage_bytes()

    def peak_bytes(self, window_s: float | None = None) -> int:
        """The highest sample in the last `window_s` seconds (default: the monitor's window); 0 before any sample.

        ``window_s=float("inf")`` gives the peak since the monitor was created.
        """
        if window_s == float("inf"):
            return self._peak_ever
        horizon = self._clock() - (self.window_s if window_s is None else window_s)
        return max((b for t, b in self._samples if t >= horizon), default=0)

    def reset_peak(self) -> None:
        """Forget earlier samples (e.g. at the start of a phase whose own peak is wanted)."""
        self._samples.clear()
        self._peak_ever = 0


def _process_memory(pid: int, kind: str) -> int:
    if kind == "pss":
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass  # no smaps_rollup (old kernel, macOS) or the process is gone: fall back to RSS
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return 0
