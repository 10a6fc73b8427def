"""One chunk's predictions from a fastai learner, batch by batch: activated as they leave the model, averaged
over flipped inputs (TTA), finished (decoded, cast to the sink's dtype) on the device, copied into one buffer the size
of the chunk. An item the DataLoader cannot read gets a placeholder and a reason instead of failing the chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.torch_core import to_detach
from torch import nn

from kaggle_kit.errors import KaggleKitError
from kaggle_kit.memory import MemoryMonitor
from kaggle_kit.predict.sinks import Sink

__all__ = ["FLIPS", "Forward", "predict_chunk", "chunk_finisher", "take", "identity"]

log = logging.getLogger(__name__)

FLIPS = {"hflip": (-1,), "vflip": (-2,)}  # TTA name -> the tensor dims it flips (images are ... x H x W)


class _Collect(Callback):
    """Activates (and finishes: decodes, casts) each batch's predictions as they leave the model, hands them on."""

    order = 100  # after every callback that touches pred (MixedPrecision casts it back to float32)

    def __init__(self, act: Callable, finish: Callable, on_batch: Callable[[np.ndarray], None], monitor: MemoryMonitor):
        self.act, self.finish, self.on_batch, self.monitor = act, finish, on_batch, monitor

    def after_batch(self) -> None:
        pred = self.finish(self.act(self.learn.pred))
        self.on_batch(pred.detach().cpu().numpy())
        self.monitor.usage_bytes()  # per-batch sample: the chunk's peak, DataLoader workers included


class _Flipped(nn.Module):
    """The model's activated output averaged over the plain and flipped inputs (flipped back when spatial)."""

    def __init__(self, model: nn.Module, act: Callable, flips: list[str]):
        super().__init__()
        self.model, self.act, self.flips = model, act, flips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.model(x)).float()
        for name in self.flips:
            dims = FLIPS[name]
            pred = self.act(self.model(x.flip(dims))).float()
            if pred.ndim == x.ndim and pred.shape[-2:] == x.shape[-2:]:
                pred = pred.flip(dims)  # a mask: put its pixels back where they came from
            out = out + pred
        return out / (1 + len(self.flips))


@dataclass(frozen=True)
class Forward:
    """How items become predictions: `learn`'s model on batches of `bs` items (`num_workers` DataLoader workers;
    None: the learner's), `act` then `finish` applied to each batch as it leaves the model, averaged over the TTA
    `flips`, the `monitor` sampled after every batch."""

    learn: Any
    bs: int
    num_workers: int | None
    act: Callable
    finish: Callable
    flips: list[str]
    monitor: MemoryMonitor


def predict_chunk(forward: Forward, chunk_items, on_progress: Callable[[int], Any] = lambda _: None):
    """Predictions for one chunk: (array, ok mask, {position in chunk: reason} for unreadable items).
    `on_progress(n)`: n items of the chunk predicted so far."""
    try:
        return (*_predict_readable(forward, chunk_items, on_progress), {})
    except Exception as exc:
        bad = _unreadable(forward.learn, chunk_items)
        if not bad:
            raise
        log.warning("chunk failed (%s); %d unreadable item(s) get placeholders", exc, len(bad))
    keep = [i for i in range(len(chunk_items)) if i not in bad]
    if keep:
        good, _ = _predict_readable(forward, take(chunk_items, keep), on_progress)
        preds = np.empty((len(chunk_items), *good.shape[1:]), dtype=good.dtype)
        preds[keep] = good
    else:
        preds = np.empty((len(chunk_items), 1), dtype=np.float32)
    ok = np.ones(len(chunk_items), dtype=bool)
    ok[list(bad)] = False
    preds[~ok] = _placeholder(preds.dtype)
    return preds, ok, bad


def _keep_local(b, cpu: bool = True, gather: bool = True):
    """fastai's to_detach without the gather: each rank keeps its own predictions (``predict.ranks`` sends them to
    rank 0 with their places); the same as fastai's in one process."""
    return to_detach(b, cpu=cpu, gather=False)


def _predict_readable(forward: Forward, chunk_items, on_progress):
    learn, num_workers, act = forward.learn, forward.num_workers, forward.act
    dl = learn.dls.test_dl(chunk_items, bs=forward.bs, **({} if num_workers is None else {"num_workers": num_workers}))
    dl.to_detach = _keep_local  # this DataLoader only: under torchrun fastai would all-gather every batch to every rank
    buffer: list[np.ndarray | None] = [None]
    filled = [0]

    def on_batch(batch: np.ndarray) -> None:
        if buffer[0] is None:  # one allocation per chunk, sized from the first batch: no concatenation copies
            buffer[0] = np.empty((len(chunk_items), *batch.shape[1:]), dtype=batch.dtype)
        buffer[0][filled[0] : filled[0] + len(batch)] = batch
        filled[0] += len(batch)
        on_progress(filled[0])

    model = learn.model
    if forward.flips:
        learn.model, act = _Flipped(model, act, forward.flips), identity
    try:
        with learn.no_bar():
            learn.get_preds(dl=dl, with_preds=False, with_targs=False, reorder=False,  # in order: and our own dl
                            cbs=[_Collect(act, forward.finish, on_batch, forward.monitor)])  # fmt: skip
    finally:
        learn.model = model
    if filled[0] != len(chunk_items):
        raise KaggleKitError(f"the model gave {filled[0]} predictions for {len(chunk_items)} items", filled[0])
    return buffer[0], np.ones(len(chunk_items), dtype=bool)


def chunk_finisher(decodes: Callable | None, sink: Sink) -> Callable[[torch.Tensor], torch.Tensor]:
    """What happens to activated predictions before they leave the device: `decodes`, then the sink's float type
    (an ``ArraySink(dtype="float16")``): converted by torch on the device, half the bytes copied and buffered."""
    requested = getattr(sink, "requested_dtype", None)
    store = torch.from_numpy(np.empty(0, requested)).dtype if requested is not None and requested.kind == "f" else None

    def finish(pred: torch.Tensor) -> torch.Tensor:
        if decodes is not None:
            pred = decodes(pred)
        return pred.to(store) if store is not None and pred.is_floating_point() else pred

    return finish


def _unreadable(learn, chunk_items) -> dict[int, str]:
    """Items of the chunk that the test DataLoader cannot turn into a sample, with the reason."""
    dl = learn.dls.test_dl(chunk_items, num_workers=0)
    bad = {}
    for i in range(len(chunk_items)):
        try:
            dl.do_item(i)
        except Exception as exc:  # any failure to read one item is that item's problem, not the run's
            bad[i] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return bad


def _placeholder(dtype: np.dtype):
    if np.issubdtype(dtype, np.floating):
        return np.nan
    return -1 if np.issubdtype(dtype, np.signedinteger) else np.iinfo(dtype).max


def take(items, index):
    """The items at positions `index`: always by position, never by a Series' or DataFrame's labels."""
    if isinstance(items, pd.DataFrame):
        return items.iloc[list(index)]
    if isinstance(items, pd.Series):
        return items.iloc[list(index)].tolist()
    return [items[int(i)] for i in index]


def identity(x):
    return x
