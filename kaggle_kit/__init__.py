"""kaggle_kit: run long fastai image jobs inside Kaggle kernels without losing them to the platform's limits.

``import kaggle_kit as kk`` is cheap: names that need torch or fastai (``kk.stream_predict``, ``kk.Deadline``...)
are imported on first use, so ``kaggle-kit push`` and ``status`` start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from kaggle_kit.errors import KaggleKitError, KernelLayoutError, LimitsError, OutputLimitError, ResumeMismatchError
from kaggle_kit.kernel import Kernel, in_kernel, show_kit_logs
from kaggle_kit.limits import KernelLimits, parse_duration, parse_size
from kaggle_kit.memory import MemoryMonitor
from kaggle_kit.outputs import OutputBudget
from kaggle_kit.vision.rle import rle_decode, rle_encode, rle_encode_resized

__version__ = "0.1.0"

if in_kernel():  # a kernel's log is all its user sees: the kit's INFO lines belong there without any set-up
    show_kit_logs()

# public name -> module that defines it; loaded lazily because these modules import torch/fastai
_LAZY = {
    "run_local": "kaggle_kit.local.emulate",
    "RunReport": "kaggle_kit.local.report",
    "stream_predict": "kaggle_kit.predict.stream",
    "PredictSummary": "kaggle_kit.predict.stream",
    "ChunkLimits": "kaggle_kit.predict.chunks",
    "is_placeholder": "kaggle_kit.predict.stream",
    "ArraySink": "kaggle_kit.predict.sinks",
    "CsvSink": "kaggle_kit.predict.sinks",
    "merge_shards": "kaggle_kit.predict.sinks",
    "ProgressError": "kaggle_kit.predict.progress",
    "SinkBusyError": "kaggle_kit.predict.progress",
    "IdentityError": "kaggle_kit.predict.identity",
    "load_settings": "kaggle_kit.config",
    "Deadline": "kaggle_kit.train.deadline",
    "TrainingGuard": "kaggle_kit.train.guard",
    "TrainingError": "kaggle_kit.train.guard",
    "use_offline_weights": "kaggle_kit.train.weights",
    "CheckpointSaver": "kaggle_kit.train.checkpoint",
    "mark_done": "kaggle_kit.status",
    "read_status": "kaggle_kit.status",
    "clean_images": "kaggle_kit.vision.clean",
    "tags_rows": "kaggle_kit.predict.writers",
    "top_k_rows": "kaggle_kit.predict.writers",
    "TagsRows": "kaggle_kit.predict.writers",
    "TopKRows": "kaggle_kit.predict.writers",
    "check_accelerator": "kaggle_kit.accelerator",
    "mixed_precision": "kaggle_kit.train.precision",
    "AcceleratorError": "kaggle_kit.accelerator",
    "launch_on_every_gpu": "kaggle_kit.launch",
    "distributed": "kaggle_kit.train.distributed",
    "main_process": "kaggle_kit.train.distributed",
    "rank_0_goes_on": "kaggle_kit.train.distributed",
}

__all__ = [
    "KaggleKitError", "KernelLayoutError", "LimitsError", "OutputLimitError", "ResumeMismatchError",
    "Kernel", "KernelLimits", "MemoryMonitor", "OutputBudget", "parse_duration", "parse_size", "rle_decode",
    "rle_encode", "rle_encode_resized",
    *_LAZY,
]  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kaggle_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
