"""Mixed precision where it pays: fp16 with a gradient scaler on a CUDA GPU, plain fp32 elsewhere.

A T4 (Kaggle's GPU kernel) runs fp16 on its tensor cores and has no bf16, so fp16 with fastai's ``MixedPrecision``
(a ``GradScaler``) is the choice there. On the CPU fastai's scaler is disabled and autocast to fp16 is slow, so the
learner stays fp32. The scaler's state is part of every ``Deadline`` checkpoint: a resumed run goes on with the scale
it had reached (``train.state``).
"""

from __future__ import annotations

from fastai.learner import Learner

__all__ = ["mixed_precision"]


def mixed_precision(learn: Learner, enabled: bool = True, cuda: bool | None = None) -> bool:
    """Train `learn` in fp16 with a gradient scaler (``learn.to_fp16()``) when `enabled` and a CUDA GPU is there
    (`cuda`; None: asks torch for a device count, which reads NVML and initialises no CUDA). Returns whether it did."""
    if cuda is None:
        import torch

        cuda = torch.cuda.device_count() > 0
    if enabled and cuda:
        learn.to_fp16()
        return True
    return False
