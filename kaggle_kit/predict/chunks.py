"""The two halves of a streaming prediction's chunk loop: how big the next chunk may be, and writing it out.

`ChunkPlanner` sizes chunks (whole batches) from the memory the previous chunk measured; `ChunkWriter` writes and
commits each chunk in a background thread while the next one is predicted. Sizes in bytes, times in seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.errors import UsageError
from kaggle_kit.memory import MemoryMonitor
from kaggle_kit.predict.identity import content_digest
from kaggle_kit.predict.progress import ProgressManifest, SkippedItem
from kaggle_kit.predict.sinks import Sink

__all__ = ["ChunkLimits", "ChunkPlanner", "ChunkWriter"]

log = logging.getLogger(__name__)


class ChunkWriter:
    """Writes and commits chunks in a background thread, one at a time and in order, while the next one predicts.

    The model's kernels release the GIL, so the sink's conversion, the fsync and the manifest overlap with compute.
    A chunk is committed (sink durable, then manifest replaced) before the next one is written. Only this thread
    touches the manifest while chunks are in flight; the caller reads it after `wait`.
    """

    def __init__(self, sink: Sink, manifest: ProgressManifest, manifest_path: Path):
        self.sink, self.manifest, self.manifest_path = sink, manifest, manifest_path
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.busy_s = 0.0  # seconds spent writing and committing (rows, conversion, fsync, manifest)
        self.waited_s = 0.0  # seconds the prediction loop waited for the previous chunk's commit

    def submit(
        self, chunk_items, index: np.ndarray, preds: np.ndarray, ok: np.ndarray, skipped: dict[int, str], done: int
    ) -> None:
        """Write `preds` of `chunk_items` (at positions `index`) once the previous chunk is committed."""
        started = time.perf_counter()
        self.wait()
        self.waited_s += time.perf_counter() - started
        self._thread = threading.Thread(target=self._commit, args=(chunk_items, index, preds, ok, skipped, done),
                                        name="kaggle-kit-writer", daemon=True)  # fmt: skip
        self._thread.start()

    def wait(self, raise_errors: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None and raise_errors:
            error, self._error = self._error, None
            raise error

    def _commit(self, chunk_items, index, preds, ok, skipped, done) -> None:
        started = time.perf_counter()
        try:
            self.sink.write(chunk_items, preds, ok, index)
            bad = [SkippedItem(int(index[i]), _describe(chunk_items, i), reason) for i, reason in skipped.items()]
            content = content_digest(chunk_items)  # the files were just read: from the page cache
            self.manifest.record(done, self.sink.commit(), bad, content)
            self.manifest.commit(self.manifest_path)  # the commit point: sink state, count and file digest together
        except BaseException as exc:  # handed to the main thread at its next submit or wait
            self._error = exc
        finally:
            self.busy_s += time.perf_counter() - started


@dataclass(frozen=True)
class ChunkLimits:
    """How big one chunk of ``stream_predict`` may grow (it commits once per chunk): the kernel's measured memory
    stays under `memory_fraction` of its limit, one chunk's predictions under `max_bytes` (bytes), one chunk's time
    under `commit_every_s` (seconds: what a kill can cost). `stream_predict(chunk_size=N)` fixes the size instead."""

    memory_fraction: float = 0.8
    max_bytes: int = 256 << 20
    commit_every_s: float = 120.0

    def __post_init__(self):
        if not 0 < self.memory_fraction < 1:
            raise UsageError(f"memory_fraction={self.memory_fraction} must be between 0 and 1, e.g. 0.8",
                             self.memory_fraction)  # fmt: skip
        if self.max_bytes <= 0 or self.commit_every_s <= 0:
            raise UsageError(f"max_bytes={self.max_bytes} and commit_every_s={self.commit_every_s} must be positive",
                             (self.max_bytes, self.commit_every_s))  # fmt: skip


class ChunkPlanner:
    """Picks each chunk's size (a multiple of bs) from the memory the previous chunk measured."""

    def __init__(self, bs: int, monitor: MemoryMonitor, fixed: int | None, limits: ChunkLimits):
        self.bs, self.monitor, self.limits = bs, monitor, limits
        self.size = -(-fixed // bs) * bs if fixed else 2 * bs  # a small probe first, unless told
        self.fixed = fixed is not None
        self.seconds_per_item = 0.0

    def next_size(self) -> int:
        return self.size

    def observe(self, n: int, base: int, peak: int, pred_bytes_per_item: float, seconds: float) -> None:
        self.seconds_per_item = seconds / max(1, n)
        if self.fixed:
            return
        target = self.monitor.limit_bytes * self.limits.memory_fraction
        # one chunk fills while the previous one is written: three chunk-sized buffers at worst
        per_item = max(3 * pred_bytes_per_item, (peak - base) / max(1, n), 1.0)
        budget = min(self.limits.max_bytes, target - self.monitor.usage_bytes())
        if peak > target:
            size = self.size // 2
            share = 100 * self.limits.memory_fraction
            log.warning("memory peaked at %d bytes, over %.0f%% of the limit: halving the chunk", peak, share)
        else:
            size = min(int(budget // per_item), int(self.limits.commit_every_s / max(self.seconds_per_item, 1e-6)))
        self.size = max(self.bs, size // self.bs * self.bs)


def _describe(items, position) -> str:
    if isinstance(items, pd.DataFrame):
        return str(items.iloc[int(position)].to_dict())
    return str(items[int(position)])
