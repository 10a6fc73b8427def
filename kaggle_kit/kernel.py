"""Where the code runs: a Kaggle kernel or a local sandbox shaped like one, and how much of its time is left.

Times are float seconds (Unix time for instants). The clock is injectable so tests pass a fake one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from kaggle_kit.errors import KernelLayoutError, LimitsError
from kaggle_kit.limits import KernelLimits, available_cpus

__all__ = ["Kernel", "KAGGLE_ROOT", "in_kernel", "show_kit_logs"]

log = logging.getLogger(__name__)

KAGGLE_ROOT = Path("/kaggle")
# /kaggle/input/<slug> (old) and /kaggle/input/<kind>/[<owner>/]<slug> (current, since 2024)
_OWNED_KINDS = ("datasets", "notebooks", "models")
_UNOWNED_KINDS = ("competitions",)


def in_kernel(environ: Mapping[str, str] | None = None) -> bool:
    """True inside a Kaggle kernel (KAGGLE_KERNEL_RUN_TYPE) or a kernel run by ``run_local`` (KAGGLE_KIT_ROOT)."""
    env = os.environ if environ is None else environ
    return bool(env.get("KAGGLE_KERNEL_RUN_TYPE") or env.get("KAGGLE_KIT_ROOT"))


class _KernelLogHandler(logging.StreamHandler):
    """Prints the kit's records to stderr until the script configures logging itself (``logging.basicConfig``):
    from then on the root's handlers show them, so nothing is printed twice."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def show_kit_logs() -> None:
    """Make the kit's INFO lines (resuming at ..., stopping N s before the cutoff, predictions complete) visible in
    a kernel's log without any logging set-up; ``import kaggle_kit`` calls it inside a kernel. Quiet them with
    ``logging.getLogger("kaggle_kit").setLevel(logging.WARNING)``."""
    kit = logging.getLogger("kaggle_kit")
    if any(isinstance(h, _KernelLogHandler) for h in kit.handlers):
        return
    if kit.level == logging.NOTSET:
        kit.setLevel(logging.INFO)
    handler = _KernelLogHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    kit.addHandler(handler)


@dataclass
class Kernel:
    """One kernel session: its root (holding input/ and working/), limits and start time.

    `started_at` is the Unix time the kernel started; the time budget counts from it, not from this process.
    `clock` returns the current Unix time (``time.time`` unless a test injects another).
    """

    root: Path
    limits: KernelLimits = field(default_factory=KernelLimits)
    started_at: float = field(default_factory=time.time)
    on_kaggle: bool = False
    clock: Callable[[], float] = time.time

    @classmethod
    def current(cls, environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time) -> Kernel:
        """The kernel this process runs in, read from the environment.

        On Kaggle (KAGGLE_KERNEL_RUN_TYPE is set) the root is /kaggle. Elsewhere it is KAGGLE_KIT_ROOT (the
        emulator sets it), else /kaggle if it exists, else ./kaggle under the current directory.
        The start time is KAGGLE_KIT_STARTED_AT, else on Kaggle the earliest start of this process and its
        ancestors (all of them live in the kernel's container), else this process's own start.
        """
        env = os.environ if environ is None else environ
        on_kaggle = bool(env.get("KAGGLE_KERNEL_RUN_TYPE"))
        if env.get("KAGGLE_KIT_ROOT"):
            root = Path(env["KAGGLE_KIT_ROOT"])
        elif on_kaggle or KAGGLE_ROOT.is_dir():
            root = KAGGLE_ROOT
        else:
            root = Path.cwd() / "kaggle"
        raw_start = env.get("KAGGLE_KIT_STARTED_AT")
        if raw_start:
            try:
                started_at = float(raw_start)
            except ValueError:
                raise LimitsError(
                    f"KAGGLE_KIT_STARTED_AT={raw_start!r} is not a Unix time in seconds", raw_start
                ) from None
        else:
            started_at = _earliest_start(include_ancestors=on_kaggle)
        return cls(
            root=root, limits=KernelLimits.from_env(env), started_at=started_at, on_kaggle=on_kaggle, clock=clock
        )

    @property
    def input_dir(self) -> Path:
        """Read-only inputs: competition data, datasets, previous kernels' outputs."""
        return self.root / "input"

    @property
    def working_dir(self) -> Path:
        """The kernel's output dir (the current directory on Kaggle); files here count against the limits."""
        return self.root / "working"

    def elapsed_s(self) -> float:
        """Seconds since the kernel started."""
        return max(0.0, self.clock() - self.started_at)

    def remaining_s(self) -> float:
        """Seconds left before the kernel's cutoff (negative once past it)."""
        return self.limits.time_s - self.elapsed_s()

    elapsed = elapsed_s
    remaining = remaining_s

    @property
    def cpus(self) -> int:
        """CPU cores this kernel really has (its affinity, a container's CPU quota): what to size DataLoader workers
        by. Kaggle's GPU machine has 4 vCPUs for two T4s; ``run-local --cpus N`` gives a local run N."""
        return available_cpus()

    def workers(self, num_workers: int | None) -> int:
        """DataLoader workers: `num_workers` when given (a kernel's setting), else one per CPU core it has."""
        return self.cpus if num_workers is None else num_workers

    def inputs(self) -> Iterator[tuple[str, Path]]:
        """Every attached input as (slug, path), in both the old and the current /kaggle/input layouts."""
        if not self.input_dir.is_dir():
            return
        for entry in sorted(self.input_dir.iterdir()):
            if not entry.is_dir():
                continue
            if entry.name in _UNOWNED_KINDS:
                yield from ((p.name, p) for p in sorted(entry.iterdir()) if p.is_dir())
            elif entry.name in _OWNED_KINDS:
                for owner in sorted(p for p in entry.iterdir() if p.is_dir()):
                    yield from ((p.name, p) for p in sorted(owner.iterdir()) if p.is_dir())
            else:
                yield entry.name, entry

    def find_input(self, slug: str) -> Path:
        """The directory of the input `slug` ("owner/slug" also accepted), in whichever layout it was attached.

        Raises KernelLayoutError naming the inputs that are there if `slug` is missing or ambiguous.
        """
        owner, _, name = slug.rpartition("/")
        found = [p for s, p in self.inputs() if s == name and (not owner or p.parent.name == owner)]
        if len(found) == 1:
            return found[0]
        attached = ", ".join(sorted({s for s, _ in self.inputs()})) or "none"
        if not found:
            raise KernelLayoutError(
                f"input {slug!r} is not attached under {self.input_dir} (attached: {attached})", slug
            )
        raise KernelLayoutError(f"input {slug!r} is ambiguous: {', '.join(map(str, found))}; use 'owner/{name}'", slug)

    def input_or_path(self, value: str | os.PathLike | None) -> Path | None:
        """A setting that names data to use (weights, a model): an existing path as it is, else the slug of an
        attached input (``find_input``); None stays None."""
        if value is None:
            return None
        return Path(value) if Path(value).exists() else self.find_input(str(value))


def _earliest_start(include_ancestors: bool) -> float:
    """Start time of this process, or of its oldest ancestor when all ancestors belong to the kernel."""
    proc = psutil.Process()
    earliest = proc.create_time()
    if include_ancestors:
        try:
            for parent in proc.parents():
                earliest = min(earliest, parent.create_time())
        except psutil.Error as exc:  # a vanished or hidden ancestor: the ones seen so far still count
            log.debug("stopped walking ancestors: %s", exc)
    return earliest
