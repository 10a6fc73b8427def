"""Training on every rank of a launch: fastai's ``distrib_ctx`` made safe on gloo, and one rank going on after it.

    kk.launch_on_every_gpu()                      # top of the script: one rank per GPU
    ...
    with kk.distributed(learn):                   # DistributedDataParallel on each rank; nothing in one process
        learn.fit_one_cycle(10, 1e-3, cbs=kk.Deadline())
    kk.rank_0_goes_on()                           # the other ranks end here; rank 0 goes on alone

In a launch (WORLD_SIZE > 1) each rank is in a process group (``launch.join_ranks``: NCCL on its own GPU, gloo on the
CPU for fake GPUs). fastai's ``DistributedDL`` broadcasts each epoch's order as a CUDA tensor, which gloo cannot
take: here it goes through the group's own device. ``Deadline`` needs nothing more: rank 0 decides when to save and
stop and every rank follows (``train.deadline``). What a kernel does after training (validation pictures, the model
folder, the submission) is rank 0's: ``rank_0_goes_on`` ends the group, the other ranks exit, and rank 0 carries on
as a process on its own, so no file is written twice and no collective waits for a rank that left.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from fastai.learner import Learner

from kaggle_kit.launch import join_ranks, leave_ranks

__all__ = ["distributed", "main_process", "rank_0_goes_on"]


def main_process() -> bool:
    """True on rank 0 of a launch, and in a process on its own: where files are written."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@contextlib.contextmanager
def distributed(learn: Learner, sync_bn: bool | None = None) -> Iterator[Learner]:
    """Train `learn` on every rank of the launch this process is one of (see the module docstring); in a process on
    its own, `learn` as it is. `sync_bn`: synchronise batch norm across ranks (default: on CUDA only)."""
    if not join_ranks():
        yield learn
        return
    cuda = dist.get_backend() == "nccl"
    _gloo_safe_broadcast()
    import fastai.distributed  # noqa: F401  (adds distrib_ctx to Learner)

    with learn.distrib_ctx(sync_bn=cuda if sync_bn is None else sync_bn, cpu=not cuda):
        yield learn


def rank_0_goes_on() -> None:
    """After training on every rank: end the process group; rank 0 returns and goes on alone, the others exit (0)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    main = dist.get_rank() == 0
    dist.barrier()  # every rank has left the fit before the group ends
    leave_ranks()
    if not main:
        raise SystemExit(0)
    os.environ["WORLD_SIZE"] = "1"  # fastai reads it to gather predictions across ranks: there are none now


def _gloo_safe_broadcast() -> None:
    """fastai's DistributedDL broadcasts through a CUDA tensor: send it from the device the group's backend uses."""
    from fastai.distributed import DistributedDL

    if getattr(DistributedDL._broadcast, "_kaggle_kit", False):
        return

    def _broadcast(self, values, rank):
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.as_tensor(list(values), dtype=torch.long, device=device)
        dist.broadcast(tensor, rank)
        return tensor.cpu().tolist()

    _broadcast._kaggle_kit = True
    DistributedDL._broadcast = _broadcast
