"""What the local Kaggle gives the kernels pushed to it: each run's limits, the session cap and the weekly GPU quota.

Kaggle gives 30 GPU hours a week (``kaggle quota``; the client's ``quota_view``). A rehearsal runs a 12-hour GPU
session in a few minutes, so the quota is kept at the real scale: a GPU run that used `s` seconds of a rehearsal's
`time_s` limit used ``s * profile_time / time_s`` seconds of quota, what the same run would cost on Kaggle. The
quota refreshes a week after the local Kaggle first answered it (Kaggle refreshes on Saturdays). Without a quota
(the default) the local Kaggle answers none, and a chain pushes as it would for an account Kaggle gives no figures.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from kaggle_kit.accelerator import FAKE_GPUS_ENV, T4_X2
from kaggle_kit.errors import UsageError
from kaggle_kit.limits import KernelLimits

__all__ = ["Platform", "quota_answer", "granted_env", "run_stopper", "WEEKLY_GPU_QUOTA_S", "QUOTA_MESSAGE"]

WEEKLY_GPU_QUOTA_S = 30 * 3600.0  # Kaggle's weekly GPU hours
_WEEK_S = 7 * 24 * 3600.0
# what a GPU run stopped by the quota ends with (assumed: Kaggle's own wording is not documented)
QUOTA_MESSAGE = "Your GPU quota ran out: the session was stopped when it reached 0 hours left."


@dataclass(frozen=True)
class Platform:
    """What the local Kaggle gives each pushed run: `memory_bytes` (bytes) and `time_s` (seconds) replace the
    profile's limits (None keeps them: a 9-hour kernel is rehearsed with ``time_s=180``); `max_running` versions
    run at once (Kaggle's session cap), the others wait QUEUED; `gpu_quota_s`: the weekly GPU quota in seconds at
    the real scale (see the module docstring; None: no quota, ``WEEKLY_GPU_QUOTA_S`` is Kaggle's); `grace_s`:
    seconds between SIGTERM and SIGKILL at the time limit."""

    memory_bytes: int | None = None
    time_s: float | None = None
    max_running: int = 2
    gpu_quota_s: float | None = None
    grace_s: float = 5.0

    def __post_init__(self):
        if self.max_running < 1:
            raise UsageError(f"max_running={self.max_running}: at least 1 version must be able to run",
                             self.max_running)  # fmt: skip
        if self.gpu_quota_s is not None and not self.gpu_quota_s >= 0:
            raise UsageError(f"gpu_quota_s={self.gpu_quota_s}: a quota is 0 seconds or more", self.gpu_quota_s)

    def limits(self, profile: str) -> KernelLimits:
        """The limits of a run on the machine `profile` ("cpu" or "gpu") here."""
        return KernelLimits.profile_named(profile).with_overrides(self.memory_bytes, self.time_s)

    def quota_time_s(self, profile: str, used_s: float) -> float | None:
        """Seconds (of this rehearsal's clock) a run on `profile` may last before the quota, of which `used_s` is
        spent, ends it; None when no quota bounds it (a CPU run, or no quota)."""
        if profile != "gpu" or self.gpu_quota_s is None:
            return None
        real = KernelLimits.profile_named(profile).time_s
        return max(0.0, self.gpu_quota_s - used_s) / (real / self.time_s if self.time_s else 1.0)

    def quota_used_s(self, profile: str, elapsed_s: float) -> float:
        """Quota seconds a run of `elapsed_s` real seconds on `profile` used: none on a CPU, the elapsed time
        scaled from this rehearsal's time limit to the profile's on a GPU."""
        if profile != "gpu":
            return 0.0
        real = KernelLimits.profile_named(profile).time_s
        return elapsed_s * (real / self.time_s if self.time_s else 1.0)


def quota_answer(platform: Platform, gpu_runs_used_s: Iterable[float], first_asked: float | None = None) -> dict:
    """The JSON of GetAcceleratorQuotaStatistics (what ``quota_view`` parses): the GPU quota used by
    `gpu_runs_used_s` (quota seconds per finished or running GPU run), its total and when it refreshes."""
    if platform.gpu_quota_s is None:
        return {}
    used = sum(gpu_runs_used_s)
    refresh = datetime.fromtimestamp((first_asked or time.time()) + _WEEK_S, UTC).replace(tzinfo=None)
    return {
        "quotaRefreshTime": refresh.isoformat(timespec="milliseconds") + "Z",
        "gpuQuota": {"timeUsed": f"{used:.3f}s", "totalTimeAllowed": f"{platform.gpu_quota_s:.3f}s"},
    }


def granted_env(profile: str) -> dict[str, str]:
    """The GPUs a version on `profile` is given, as the kernel's accelerator check sees them
    (``kaggle_kit.accelerator``): Kaggle's two T4s on "gpu", none on "cpu"; KAGGLE_KIT_FAKE_GPUS set by you wins
    (e.g. to rehearse a P100)."""
    if FAKE_GPUS_ENV in os.environ:
        return {}
    return {FAKE_GPUS_ENV: T4_X2 if profile == "gpu" else ""}


def run_stopper(cancel: threading.Event, quota_s: float | None) -> tuple[threading.Event, threading.Event]:
    """(stop, out_of_quota) for one run: `stop` is set when `cancel` is (the service stops), or after `quota_s`
    seconds (then `out_of_quota` too): a GPU run the quota ends is stopped from outside, as Kaggle would, while the
    kernel itself still sees its session's time limit. Setting `stop` ends the watching thread."""
    stop, out_of_quota = threading.Event(), threading.Event()

    def watch() -> None:
        end = None if quota_s is None else time.monotonic() + max(quota_s, 0.5)
        while not stop.is_set():
            if cancel.wait(0.1):
                stop.set()
            elif end is not None and time.monotonic() >= end:
                out_of_quota.set()
                stop.set()

    threading.Thread(target=watch, name="local-kaggle run stopper", daemon=True).start()
    return stop, out_of_quota
