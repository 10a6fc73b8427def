"""kaggle_kit: run long fastai image jobs inside Kaggle kernels without losing them to the platform's limits.

``import kaggle_kit as kk`` is cheap: names that need torch or fastai (``kk.stream_predict``, ``kk.Deadline``...)
are imported on first use, so ``kaggle-kit push`` and ``status`` start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from kaggle_kit.errors import KaggleKitError, KernelLayoutError, LimitsError, OutputLimitError, ResumeMismatchError
from kaggle_kit.kernel import Kernel
from kaggle_kit.limits import KernelLimits, parse_duration, parse_size
from kaggle_kit.memory import MemoryMonitor
from kaggle_kit.outputs import OutputBudget
from kaggle_kit.rle import rle_decode, rle_encode, rle_encode_resized

__version__ = "0.1.0"

# public name -> module that defines it; loaded lazily because these modules import torch/fastai
_LAZY = {
    "run_local": "kaggle_kit.emulate",
    "RunReport": "kaggle_kit.emulate",
    "stream_predict": "kaggle_kit.predict",
    "PredictSummary": "kaggle_kit.predict",
    "is_placeholder": "kaggle_kit.predict",
    "ArraySink": "kaggle_kit.sinks",
    "CsvSink": "kaggle_kit.sinks",
    "merge_shards": "kaggle_kit.sinks",
    "ProgressError": "kaggle_kit.progress",
    "SinkBusyError": "kaggle_kit.progress",
    "IdentityError": "kaggle_kit.identity",
    "load_settings": "kaggle_kit.config",
    "Deadline": "kaggle_kit.deadline",
    "TrainingGuard": "kaggle_kit.guard",
    "TrainingError": "kaggle_kit.guard",
    "use_offline_weights": "kaggle_kit.weights",
    "CheckpointSaver": "kaggle_kit.checkpoint",
    "mark_done": "kaggle_kit.status",
    "read_status": "kaggle_kit.status",
    "clean_images": "kaggle_kit.data",
    "tags_rows": "kaggle_kit.writers",
    "top_k_rows": "kaggle_kit.writers",
    "TagsRows": "kaggle_kit.writers",
    "TopKRows": "kaggle_kit.writers",
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
