"""Stream a fastai learner's test predictions chunk by chunk into one sink: bounded RAM, few files, resumable.

fastai's ``get_preds`` gathers every batch, concatenates, activates and decodes, each a full copy of the test set's
predictions. Here each batch is activated (and optionally decoded) as it leaves the model and copied into a buffer
the size of one chunk; the chunk goes to the sink, the sink commits, and an atomic manifest records how far the run
got. The chunk size adapts to the kernel's measured memory (process tree, DataLoader workers included). Sizes are
bytes, times seconds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.learner import Learner
from fastprogress.fastprogress import progress_bar

from kaggle_kit.atomic import remove_stale_temps
from kaggle_kit.errors import UsageError
from kaggle_kit.kernel import Kernel
from kaggle_kit.memory import MemoryMonitor
from kaggle_kit.outputs import OutputBudget
from kaggle_kit.predict.batches import FLIPS, Forward, chunk_finisher, identity, predict_chunk, take
from kaggle_kit.predict.chunks import ChunkLimits, ChunkPlanner, ChunkWriter
from kaggle_kit.predict.identity import callable_identity, content_digest, items_digest, model_digest
from kaggle_kit.predict.progress import (
    ProgressManifest,
    RunFingerprint,
    SinkLock,
    SkippedItem,
    adopt_from_inputs,
    manifest_path_for,
)
from kaggle_kit.predict.ranks import Ranks
from kaggle_kit.predict.sinks import Sink
from kaggle_kit.status import (
    NEEDS_RESUME,
    STATUS_NAME,
    KernelStatus,
    StatusError,
    clear_predicting,
    mark_predicting,
    predictions_resumable,
)

__all__ = ["stream_predict", "PredictSummary", "progress_path", "is_placeholder"]

log = logging.getLogger(__name__)


@dataclass
class PredictSummary:
    """What one `stream_predict` call did. Sizes in bytes, times in seconds."""

    items: int  # items this run is responsible for (its shard)
    predicted: int  # items committed in this call
    done: int  # items committed so far, across resumes
    complete: bool
    chunks: int
    chunk_sizes: list[int]
    peak_memory_bytes: int
    seconds: float
    files: list[str]
    skipped: list[SkippedItem] = field(default_factory=list)  # per unreadable item, across resumes
    resumed_at: int = 0
    writer_seconds: float = 0.0  # the background writer's busy time: rows, conversion, fsync, manifest
    writer_waited_seconds: float = 0.0  # time the prediction loop waited for it (> 0: the writer was the bottleneck)
    refused: str | None = None  # why nothing was predicted (training stopped to be resumed), or None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def progress_path(sink: Sink) -> Path:
    """The manifest file that records a sink's committed progress: ``<first sink file>.progress.json``."""
    return manifest_path_for(sink.paths()[0])


def is_placeholder(pred: np.ndarray) -> bool:
    """True for the prediction given to an item that could not be read (all NaN)."""
    return bool(np.issubdtype(pred.dtype, np.floating) and np.isnan(pred).all())


def stream_predict(
    learn: Learner,
    items: Sequence[Any] | pd.DataFrame,
    sink: Sink,
    *,
    bs: int | None = None,
    chunk_size: int | None = None,
    decode: bool = False,
    act: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tta: str | Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    num_workers: int | None = None,
    chunk_limits: ChunkLimits | None = None,
    kernel: Kernel | None = None,
    monitor: MemoryMonitor | None = None,
    reserve_s: float | None = None,
    progress: bool = True,
    restart: bool = False,
    allow_unfinished: bool = False,
) -> PredictSummary:
    """Predict `items` with `learn` and write them through `sink`, chunk by chunk; resume where a killed run stopped.

    `items`: what ``learn.dls.test_dl`` accepts (file paths, a DataFrame). `bs`: batch size (default the learner's).
    `chunk_size`: items per commit (rounded up to a multiple of `bs`); default: adapted to `chunk_limits`
    (``ChunkLimits``: the kernel's measured memory under 80% of its limit, one chunk's predictions under 256 MiB,
    one chunk's time under 120 s, what a kill can cost).
    `decode`: write the loss function's decoded predictions (class ids, masks) instead of activations.
    `act`: activation (default the loss function's). `tta`: "hflip", "vflip" or a list of them; the model's
    activated outputs on the flipped images (flipped back for masks) are averaged with the plain one, batch by batch.
    `shard=(i, n)`: predict only items i, i+n, i+2n, ... (see ``sinks.merge_shards``); by default it comes from
    KAGGLE_KIT_SHARD="i/n", which a bundle pushed with ``kaggle-kit push --shards n`` sets.
    Stops early, committed and resumable, when the kernel has less than `reserve_s` plus one chunk's time left
    (default: 5% of the kernel's time limit, at most 60 s: a minute of a 9-hour kernel, 2 s of a 40-second one); the
    kernel's status then says needs-resume (``status.mark_predicting``), so ``mark_done`` keeps it and ``chain``
    pushes another run, which resumes the predictions from the attached output.
    `restart=True` throws away the sink's files and their manifest first (whatever run they belong to) and predicts
    from the first item: for outputs that are cheap to redo, or when the model changed on purpose.
    In a kernel whose training a ``Deadline`` stopped to be resumed (its status file says needs-resume), the model is
    unfinished: nothing is predicted or written, a warning says so and the summary's `refused` says why (run the
    kernel again; it resumes training, then predicts). `allow_unfinished=True` predicts all the same.
    Writes the sink's files and ``<sink file>.progress.json`` beside them; nothing else.
    Started on N processes (torchrun, accelerate launch), every rank makes the same call: each predicts its share of
    every chunk and rank 0 alone writes, the same bytes as one process (``kaggle_kit.predict.ranks``).
    """
    bs = int(bs or learn.dls.bs)
    n_total = len(items)
    if shard is None and os.environ.get("KAGGLE_KIT_SHARD"):  # set by a bundle pushed with --shards
        shard = _shard_from_env(os.environ["KAGGLE_KIT_SHARD"])
    shard_i, n_shards = _check_args(n_total, bs, chunk_size, shard)
    flips = _tta_flips(tta)
    positions = np.arange(shard_i, n_total, n_shards)
    kernel = kernel or Kernel.current()
    unfinished = None if allow_unfinished else _unfinished_training(kernel)
    if unfinished:
        log.warning("stream_predict: %s; no predictions written (run the kernel again to resume training, or pass "
                    "allow_unfinished=True)", unfinished)  # fmt: skip
        return PredictSummary(items=len(positions), predicted=0, done=0, complete=False, chunks=0, chunk_sizes=[],
                              peak_memory_bytes=0, seconds=0.0, files=[], refused=unfinished)  # fmt: skip
    monitor = monitor or MemoryMonitor(kernel.limits)
    forward = Forward(learn, bs, num_workers, act or getattr(learn.loss_func, "activation", identity),
                      chunk_finisher(getattr(learn.loss_func, "decodes", identity) if decode else None, sink), flips,
                      monitor)  # fmt: skip
    ranks = Ranks.current()
    roots = [("input", Path(os.path.abspath(kernel.input_dir))), ("working", Path(os.path.abspath(kernel.working_dir)))]
    digest = items_digest(items, roots)
    if ranks is not None:  # every rank, before anything is written: a rank with other items would mix rows
        ranks.agree((n_total, digest, (shard_i, n_shards)), "items")
    if (
        ranks is not None and not ranks.main
    ):  # another process of a multi-GPU launch: predicts its share, writes nothing
        return _follow_rank0(ranks, forward, items, positions)
    first, manifest_path = Path(os.path.abspath(sink.paths()[0])), progress_path(sink)
    fingerprint = RunFingerprint(items=digest, n_items=n_total, shard=(shard_i, n_shards),
                                 decode=decode, act=callable_identity(act, "act"), tta=tuple(flips),
                                 sink=sink.signature(), model=model_digest(learn.model))  # fmt: skip
    files = [str(p) for p in [*sink.paths(), manifest_path]]
    new_files = [p for p in [*sink.paths(), manifest_path] if not p.exists()]
    OutputBudget(kernel.working_dir, kernel.limits).check_new_files(len(new_files), what="stream_predict")
    started = time.monotonic()
    with SinkLock(first):  # one writer per sink, for the whole call
        for path in [*sink.paths(), manifest_path]:
            remove_stale_temps(path)
        if restart:  # under the lock: nobody else is writing these files
            log.info("restart=True: starting %s over", first)
            manifest_path.unlink(missing_ok=True)
            for path in sink.paths():
                if path.exists():
                    os.truncate(path, 0)  # in place: the lock on the first file stays held
        manifest = _verified_progress(first, manifest_path, fingerprint, len(positions), kernel, restart)
        if manifest.done:  # the same names may hold other pixels now: those items are predicted again
            manifest = manifest.content_checked(lambda lo, hi: content_digest(take(items, positions[lo:hi])),
                                                manifest_path)  # fmt: skip
        resumed_at = manifest.done
        if ranks is not None:
            ranks.broadcast(manifest.complete)  # already complete: the other ranks have nothing to predict
        if manifest.complete:
            log.info("predictions in %s are already complete (%d items, verified)", first, manifest.done)
            return _shared(ranks, PredictSummary(items=len(positions), predicted=0, done=manifest.done,
                                                 complete=True, chunks=0, chunk_sizes=[], peak_memory_bytes=0,
                                                 seconds=0.0, files=files, skipped=manifest.skipped,
                                                 resumed_at=resumed_at))  # fmt: skip
        if reserve_s is None:
            reserve_s = kernel.limits.margin_s(60.0, 0.05)
        planner = ChunkPlanner(bs, monitor, chunk_size, chunk_limits or ChunkLimits())
        chunk_sizes, writer = _predict_chunks(_ChunkRun(forward, items, positions, sink, manifest, manifest_path,
                                                        planner, kernel, reserve_s, progress, ranks))  # fmt: skip
    if not manifest.complete:  # stopped before the cutoff: the job needs another run, which resumes from here
        mark_predicting(kernel.working_dir, first.name, manifest.done, len(positions))
    else:
        clear_predicting(kernel.working_dir, first.name)
    if manifest.skipped:
        log.warning(
            "%d item(s) could not be read and got placeholder predictions: %s",
            len(manifest.skipped),
            ", ".join(s.item for s in manifest.skipped[:5]),
        )
    return _shared(ranks, PredictSummary(
        items=len(positions),
        predicted=manifest.done - resumed_at,
        done=manifest.done,
        complete=manifest.complete,
        chunks=len(chunk_sizes),
        chunk_sizes=chunk_sizes,
        peak_memory_bytes=monitor.peak_bytes(float("inf")),
        seconds=round(time.monotonic() - started, 3),
        files=files,
        skipped=manifest.skipped,
        resumed_at=resumed_at,
        writer_seconds=round(writer.busy_s, 3),
        writer_waited_seconds=round(writer.waited_s, 3),
    ))  # fmt: skip


def _shared(ranks: Ranks | None, summary: PredictSummary) -> PredictSummary:
    """Rank 0's summary, handed to the other ranks of a multi-process launch (they return it too)."""
    if ranks is not None:
        ranks.broadcast(summary)
        ranks.barrier()  # every rank leaves together: the files are written and committed
    return summary


def _unfinished_training(kernel: Kernel) -> str | None:
    """Why this kernel's model is unfinished ("training stopped at stage/epoch/batch ... to be resumed"), from its
    status file, or None."""
    try:
        status = KernelStatus.load(kernel.working_dir)
    except StatusError:
        return None  # a damaged status says nothing either way; stream_predict never blocks on it
    if status is None or status.status != NEEDS_RESUME or predictions_resumable(status):
        return None
    return f"training stopped at {status.where()} to be resumed ({STATUS_NAME} says {NEEDS_RESUME})"


def _verified_progress(first: Path, manifest_path: Path, fingerprint: RunFingerprint, total: int, kernel: Kernel,
                       restart: bool = False):  # fmt: skip
    """This run's progress, checked against its files: from working/, else (unless `restart`) from an attached
    input, else fresh."""
    manifest = ProgressManifest.load(manifest_path, fingerprint)
    if manifest is not None:
        manifest = manifest.resume(first, manifest_path)
    if not restart and (manifest is None or not manifest.done):
        try:  # the same place in a previous kernel's output, attached as an input
            relative = first.parent.relative_to(os.path.abspath(kernel.working_dir))
        except ValueError:
            relative = None
        if relative is not None:
            folders = [folder for _slug, path in kernel.inputs() for folder in (path / relative, path)]
            manifest = adopt_from_inputs(first, manifest_path, folders, fingerprint) or manifest
    return manifest or ProgressManifest(fingerprint, total)


@dataclass
class _ChunkRun:
    """One stream_predict call as the chunk loop sees it: what to predict, where it goes, and the limits it keeps."""

    forward: Forward
    items: Any
    positions: np.ndarray  # the item positions this call predicts (its shard), in order
    sink: Sink
    manifest: ProgressManifest
    manifest_path: Path
    planner: ChunkPlanner
    kernel: Kernel
    reserve_s: float  # seconds kept free at the end
    progress: bool
    ranks: Ranks | None = None  # a multi-process launch: rank 0's loop, the others follow (`_follow_rank0`)


def _predict_chunks(run: _ChunkRun) -> tuple[list[int], ChunkWriter]:
    """The chunk loop: predict a chunk while the previous one is written; return the chunks' sizes and the writer."""
    planner, monitor = run.planner, run.forward.monitor
    bar = progress_bar(range(len(run.positions)), leave=False) if run.progress else None
    show = bar.update if bar else identity
    show(0)
    if run.manifest.done:
        show(run.manifest.done)
    run.sink.open(len(run.positions), run.manifest.sink_state)
    writer = ChunkWriter(run.sink, run.manifest, run.manifest_path)
    chunk_sizes: list[int] = []
    monitor.usage_bytes()
    start = run.manifest.done
    try:
        while start < len(run.positions):
            size = min(planner.next_size(), len(run.positions) - start)
            stop = bool(chunk_sizes) and run.kernel.remaining_s() < run.reserve_s + planner.seconds_per_item * size
            if run.ranks is not None:
                run.ranks.broadcast((start, 0 if stop else size))  # every rank: the same chunk, or the same stop
            if stop:
                log.warning("stopping predictions at %d of %d items: %.0fs left in the kernel", start,
                            len(run.positions), run.kernel.remaining_s())  # fmt: skip
                break
            index = run.positions[start : start + size]
            chunk_start, base = time.monotonic(), monitor.usage_bytes()
            chunk_items = take(run.items, index)
            if run.ranks is None:
                preds, ok, skipped = predict_chunk(run.forward, chunk_items, lambda k, s=start: show(s + k))
            else:
                preds, ok, skipped = run.ranks.gather_chunk(len(index), *_predict_share(run.ranks, run.forward,
                                                                                        run.items, index))  # fmt: skip
            writer.submit(chunk_items, index, preds, ok, skipped, start + len(index))  # written while the next predicts
            peak = monitor.peak_bytes(time.monotonic() - chunk_start + 1)
            planner.observe(len(index), base, peak, preds.nbytes / max(1, len(index)), time.monotonic() - chunk_start)
            chunk_sizes.append(len(index))
            start += len(index)
            del preds
        if run.ranks is not None and start >= len(run.positions):
            run.ranks.broadcast((start, 0))  # the end, as the followers see it
        writer.wait()
    finally:
        writer.wait(raise_errors=False)
        run.sink.close()
    if run.manifest.complete:
        show(len(run.positions))
    return chunk_sizes, writer


def _predict_share(ranks: Ranks, forward: Forward, items, index):
    """This rank's share of a chunk, predicted: (preds, ok, unreadable) in share order; empty when it has none."""
    mine = ranks.share(index)
    if not len(mine):
        return None, None, {}
    return predict_chunk(forward, take(items, mine))


def _follow_rank0(ranks: Ranks, forward: Forward, items, positions) -> PredictSummary:
    """A rank other than 0: predict its share of every chunk rank 0 announces and send it there; write nothing.
    Returns rank 0's summary (broadcast when it is done)."""
    if not ranks.broadcast(None):  # rank 0 found the predictions incomplete
        while True:
            start, size = ranks.broadcast(None)
            if size == 0:
                break
            index = positions[start : start + size]
            ranks.gather_chunk(len(index), *_predict_share(ranks, forward, items, index))
    summary = ranks.broadcast(None)
    ranks.barrier()
    return summary


def _check_args(n_total, bs, chunk_size, shard) -> tuple[int, int]:
    if n_total == 0:
        raise UsageError("stream_predict got no items to predict", 0)
    if bs <= 0 or (chunk_size is not None and chunk_size <= 0):
        raise UsageError(f"bs={bs} and chunk_size={chunk_size} must be positive", (bs, chunk_size))
    shard_i, n_shards = shard or (0, 1)
    if not (isinstance(shard_i, int) and isinstance(n_shards, int) and 0 <= shard_i < n_shards):
        raise UsageError(f"shard={shard!r} must be (i, n) with 0 <= i < n, e.g. (0, 4)", shard)
    return shard_i, n_shards


def _shard_from_env(raw: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in raw.split("/"))
    except ValueError:
        raise UsageError(f"KAGGLE_KIT_SHARD={raw!r} must be 'i/n', e.g. '0/4'", raw) from None
    return i, n


def _tta_flips(tta) -> list[str]:
    flips = [] if not tta else [tta] if isinstance(tta, str) else list(tta)
    unknown = [f for f in flips if f not in FLIPS]
    if unknown:
        raise UsageError(f"tta={tta!r}: unknown augmentation {unknown[0]!r}; use 'hflip' and/or 'vflip'", tta)
    return flips
