"""What a Kaggle kernel may use: RAM (bytes), wall time (seconds), output files and working-dir size (bytes).

Human values ("17GB", "2GiB", "90s", "9h") are parsed here, once; everywhere else time is float seconds and size
is int bytes. Decimal units are powers of 1000 (as Kaggle writes "17 GB"), binary units powers of 1024.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from kaggle_kit.errors import LimitsError

__all__ = [
    "KernelLimits", "PROFILES", "DEFAULT_PROFILE", "parse_size", "parse_duration", "format_size", "available_cpus",
]  # fmt: skip

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_DURATION_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_COMPOUND_DURATION = re.compile(r"^\s*(?:([0-9.]+)h)?\s*(?:([0-9.]+)m)?\s*(?:([0-9.]+)s)?\s*$", re.IGNORECASE)


_MAX_BYTES = 1e15  # sanity caps: a typo, not a kernel
_MAX_SECONDS = 365 * 24 * 3600.0


def parse_size(raw: str | int | float, name: str = "size") -> int:
    """Bytes from an int or a string like "17GB", "2GiB", "512MiB", "1e9"; `name` labels the error."""
    if isinstance(raw, bool):
        raise LimitsError(f"{name}={raw!r} is not a size; use bytes or a unit, e.g. '17GB' or '2GiB'", raw)
    if isinstance(raw, int | float):
        value, unit = float(raw), ""
    else:
        match = _NUMBER_UNIT.match(str(raw))
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise LimitsError(f"{name}={raw!r} is not a size; use bytes or a unit, e.g. '17GB' or '2GiB'", raw)
        value, unit = float(match.group(1)), match.group(2).lower()
    scaled = value * _SIZE_UNITS[unit]
    if not 0 < scaled < _MAX_BYTES:  # also NaN and infinity ("1e999")
        raise LimitsError(f"{name}={raw!r} must be a positive size under 1 PB, e.g. '17GB'", raw)
    return int(scaled)


def parse_duration(raw: str | int | float, name: str = "duration") -> float:
    """Seconds from a number or a string like "90s", "9h", "30min", "1h30m"; `name` labels the error."""
    if isinstance(raw, bool):
        raise LimitsError(f"{name}={raw!r} is not a duration; use seconds or a unit, e.g. '90s' or '9h'", raw)
    if isinstance(raw, int | float):
        seconds = float(raw)
    else:
        match = _NUMBER_UNIT.match(str(raw))
        if match and match.group(2).lower() in _DURATION_UNITS:
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        else:
            compound = _COMPOUND_DURATION.match(str(raw))
            if not compound or not any(compound.groups()):
                raise LimitsError(
                    f"{name}={raw!r} is not a duration; use seconds or a unit, e.g. '90s', '30min' or '9h'", raw
                )
            try:
                h, m, s = (float(g) if g else 0.0 for g in compound.groups())
            except ValueError:
                raise LimitsError(f"{name}={raw!r} is not a duration; e.g. '90s', '30min' or '9h'", raw) from None
            seconds = h * 3600 + m * 60 + s
    if not 0 < seconds < _MAX_SECONDS:  # also NaN and infinity ("1e999")
        raise LimitsError(f"{name}={raw!r} must be a positive duration under a year, e.g. '9h'", raw)
    return seconds


def format_size(n_bytes: float) -> str:
    """Human form of a byte count in binary units, e.g. 1.50 GiB."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} TiB"


@dataclass(frozen=True)
class KernelLimits:
    """The limits of one kernel session.

    `memory_bytes`: RAM the whole kernel may hold before the platform kills it (exit code 137).
    `time_s`: wall-clock seconds from the kernel's start to its cutoff.
    `max_files`: files the working dir may hold at the end (Kaggle keeps at most this many outputs).
    `working_bytes`: bytes the saved working dir may hold.
    `cpus`: CPU cores the kernel gets (Kaggle's machines have 4; None: all of this machine's). ``run_local`` pins the
    kernel to that many; ``Kernel.cpus`` says how many it really has.
    """

    memory_bytes: int = 17 * 10**9
    time_s: float = 9 * 3600.0
    max_files: int = 500
    working_bytes: int = 20 * 10**9
    profile: str = "card"
    cpus: int | None = None

    @classmethod
    def profile_named(cls, name: str) -> KernelLimits:
        """The limits of a named profile: "card" (default), "cpu" or "gpu"."""
        try:
            return PROFILES[name]
        except KeyError:
            raise LimitsError(f"unknown limits profile {name!r}; choose one of {', '.join(PROFILES)}", name) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KernelLimits:
        """The profile named by KAGGLE_KIT_PROFILE (default "card") with KAGGLE_KIT_* overrides applied."""
        env = os.environ if environ is None else environ
        limits = cls.profile_named(env.get("KAGGLE_KIT_PROFILE") or DEFAULT_PROFILE)
        return limits.with_overrides(
            memory=env.get("KAGGLE_KIT_MEMORY_LIMIT") or None,
            time=env.get("KAGGLE_KIT_TIME_LIMIT") or None,
            max_files=env.get("KAGGLE_KIT_MAX_FILES") or None,
            names=("KAGGLE_KIT_MEMORY_LIMIT", "KAGGLE_KIT_TIME_LIMIT", "KAGGLE_KIT_MAX_FILES"),
        )

    def with_overrides(
        self,
        memory: str | int | None = None,
        time: str | float | None = None,
        max_files: str | int | None = None,
        names: tuple[str, str, str] = ("memory", "time", "max_files"),
        cpus: int | None = None,
    ) -> KernelLimits:
        """A copy with any given value parsed and replaced; None keeps the current one."""
        changes: dict[str, object] = {}
        if cpus is not None:
            if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
                raise LimitsError(f"cpus={cpus!r} is not a CPU count; use a whole number >= 1, e.g. 4", cpus)
            changes["cpus"] = cpus
        if memory is not None:
            changes["memory_bytes"] = parse_size(memory, names[0])
        if time is not None:
            changes["time_s"] = parse_duration(time, names[1])
        if max_files is not None:
            raw = str(max_files).strip()
            if not raw.isdigit() or int(raw) <= 0:
                raise LimitsError(
                    f"{names[2]}={max_files!r} is not a file count; use a positive integer, e.g. 500", max_files
                )
            changes["max_files"] = int(raw)
        return replace(self, **changes) if changes else self

    def margin_s(self, most_s: float, share: float) -> float:
        """A time margin scaled to this kernel: `share` of its time limit, at most `most_s` seconds. A minute kept
        free in a 9-hour kernel is a rounding error; in a 40-second rehearsal run it is the whole run."""
        return min(most_s, share * self.time_s)

    def to_env(self) -> dict[str, str]:
        """The KAGGLE_KIT_* variables that recreate these limits in a child process."""
        return {
            "KAGGLE_KIT_PROFILE": self.profile,
            "KAGGLE_KIT_MEMORY_LIMIT": str(self.memory_bytes),
            "KAGGLE_KIT_TIME_LIMIT": repr(self.time_s),
            "KAGGLE_KIT_MAX_FILES": str(self.max_files),
        }

    def as_dict(self) -> dict[str, object]:
        """Plain dict for reports."""
        return asdict(self)


DEFAULT_PROFILE = "card"
PROFILES: dict[str, KernelLimits] = {
    # the product card: 17 GB RAM, 9 h, 500 output files
    "card": KernelLimits(17 * 10**9, 9 * 3600.0, 500, 20 * 10**9, "card"),
    # today's Kaggle sessions: CPU 30 GB / 12 h / 4 cores, GPU (two T4s) 29 GB / 12 h / 4 vCPUs; 20 GB saved working
    # dir each
    "cpu": KernelLimits(30 * 10**9, 12 * 3600.0, 500, 20 * 10**9, "cpu", cpus=4),
    "gpu": KernelLimits(29 * 10**9, 12 * 3600.0, 500, 20 * 10**9, "gpu", cpus=4),
}


def available_cpus() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (``cpu.max``), at least
    1. What a kernel pinned by ``run_local --cpus`` or limited by a container really has."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)
