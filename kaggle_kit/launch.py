"""A kernel script that re-runs itself on every GPU: one process (rank) per GPU, through ``torchrun``.

Kaggle's GPU kernel has two T4s; a plain script trains on one. ``launch_on_every_gpu()``, called near the top of a
kernel script, counts the GPUs that this torch can run (``nvidia-smi`` and torch's build flags, as the accelerator
check does: CUDA is never initialised, so the script can still start new processes) and, when there are two or more,
runs the same script again on that many ranks (``python -m torch.distributed.run --standalone``), waits for them and
exits with their exit code. One GPU or none: it returns at once and the script runs as it is.

The ranks count time from the kernel's start, not their own (KAGGLE_KIT_STARTED_AT is passed on), so a ``Deadline``
on rank 0 stops where the kernel's cutoff is. Each rank is told it is one (KAGGLE_KIT_RANKS) and never launches
again. SIGTERM and SIGINT to the script reach every rank. With KAGGLE_KIT_FAKE_GPUS (the local Kaggle grants a GPU
push two fake T4s) the ranks are CPU processes on gloo: the same code path, testable anywhere.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kaggle_kit.accelerator import granted_gpus, torch_archs
from kaggle_kit.errors import UsageError
from kaggle_kit.kernel import Kernel

__all__ = ["launch_on_every_gpu", "gpus_to_use", "is_rank", "join_ranks", "leave_ranks", "other_rank", "RANKS_ENV"]

RANKS_ENV = "KAGGLE_KIT_RANKS"  # set in each rank's environment: the number of ranks of the launch


def gpus_to_use(environ: Mapping[str, str] | None = None) -> int:
    """How many GPUs this machine has that this torch can run (0 without any), counted without initialising CUDA."""
    env = os.environ if environ is None else environ
    gpus = granted_gpus(env)
    if not gpus:
        return 0
    archs = torch_archs(env)
    return sum(g.arch in archs for g in gpus)


def is_rank(environ: Mapping[str, str] | None = None) -> bool:
    """True in a process started by ``launch_on_every_gpu`` (or any torchrun launch with more than one process)."""
    env = os.environ if environ is None else environ
    return bool(env.get(RANKS_ENV)) or int(env.get("WORLD_SIZE", "1") or 1) > 1


def launch_on_every_gpu(max_ranks: int | None = None, argv: Sequence[str] | None = None,
                        say=print) -> int:  # fmt: skip
    """Re-run this script on one rank per usable GPU when there are two or more (then exit with the ranks' exit
    code; this call does not return); otherwise return the number of ranks this process is one of (1 alone).
    `max_ranks` caps the ranks (1: never launch); `argv`: the script and its arguments (default ``sys.argv``)."""
    if max_ranks is not None and (isinstance(max_ranks, bool) or not isinstance(max_ranks, int) or max_ranks < 1):
        raise UsageError(f"launch_on_every_gpu(max_ranks={max_ranks!r}): a whole number from 1", max_ranks)
    if is_rank():
        join_ranks()
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    n = gpus_to_use()
    if max_ranks is not None:
        n = min(n, max_ranks)
    argv = list(sys.argv if argv is None else argv)
    if n < 2:
        return 1
    if not _a_script(argv):
        say(f"kaggle-kit: {n} GPUs, but this is not a script run by python (a notebook?): training on one")
        return 1
    env = dict(os.environ)
    env[RANKS_ENV] = str(n)
    env.setdefault("KAGGLE_KIT_STARTED_AT", repr(Kernel.current().started_at))  # every rank counts from the start
    if not torch_cuda_usable():
        env.setdefault("OMP_NUM_THREADS", "1")  # CPU ranks (fake GPUs): one thread each, as torchrun would
    say(f"kaggle-kit: launching this script on {n} ranks, one per GPU (torchrun)")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *argv]
    proc = subprocess.Popen(command, env=env)
    forwarded = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def forward(signum, _frame):
        proc.send_signal(signum)  # torchrun passes it on to every rank

    for sig in forwarded:
        signal.signal(sig, forward)
    try:
        code = proc.wait()
    finally:
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)
    sys.stdout.flush()
    raise SystemExit(code if code >= 0 else 128 - code)


def _a_script(argv: list[str]) -> bool:
    """Whether `argv` is a Python script that can be run again (a notebook's kernel is not: ipykernel)."""
    if not argv or not argv[0].endswith(".py") or not Path(argv[0]).is_file():
        return False
    return Path(argv[0]).name != "ipykernel_launcher.py" and "ipykernel" not in sys.modules


def torch_cuda_usable() -> bool:
    """Whether torch sees a CUDA device (reads NVML; initialises no CUDA context)."""
    import torch

    return torch.cuda.device_count() > 0


def join_ranks() -> bool:
    """In a launch (WORLD_SIZE > 1): start this rank's process group if nothing did, NCCL on its own GPU (LOCAL_RANK,
    set before any DataLoader picks a device) or gloo on the CPU, to be ended when the script ends. Returns whether
    the process is in a group of several."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1") or 1) < 2:
        return False
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        atexit.register(leave_ranks)  # a group left to the interpreter's exit can abort it (gloo: "terminate called")
    return True


def leave_ranks() -> None:
    """End this process's group: from here on it runs on its own."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def other_rank() -> bool:
    """True on a rank other than 0 of a launch, in its group: a process that writes no file (rank 0 writes them).
    Looked up without importing torch (a launch has imported it)."""
    dist = sys.modules.get("torch.distributed")
    return bool(dist is not None and dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)
