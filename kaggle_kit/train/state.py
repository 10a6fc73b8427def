"""Everything a fastai fit needs to continue exactly: capture it as plain tensors and containers, and put it back.

The state holds the model, optimizer (and mixed-precision scaler), the recorder's history and smoothed loss, the
state of callbacks that have one (TrackerCallback's best value and patience; any callback with state_dict /
load_state_dict), the schedule position, and the Python, NumPy, torch and CUDA random states. Everything is
converted to types ``torch.load(weights_only=True)`` accepts.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import numpy as np
import torch
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Learner

__all__ = [
    "capture_rng",
    "restore_rng",
    "capture_learner",
    "restore_learner",
    "fit_signature",
    "plain",
    "bare_model",
    "base_loader",
    "world_size",
]


def plain(obj: Any) -> Any:
    """`obj` with numpy values, fastcore L's and tensors on devices turned into weights_only-loadable types."""
    if isinstance(obj, torch.Tensor):  # fastai's TensorBase subclasses are not weights_only-loadable
        return obj.detach().cpu().clone().as_subclass(torch.Tensor)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, list) or type(obj).__name__ == "L":
        return [plain(v) for v in obj]
    return obj


def capture_rng() -> dict[str, Any]:
    """The Python, NumPy, torch and (if present) CUDA random states."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     cached], "torch": torch.get_rng_state()}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back random states captured by `capture_rng`."""
    random.setstate(_tuples(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def bare_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, out of the DistributedDataParallel wrapper a launch puts around it while it trains (so a
    checkpoint's weights have the same names on one process as on several)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def base_loader(dl: Any) -> Any:
    """The DataLoader itself, out of fastai's DistributedDL wrapper (which shares its generator and items)."""
    return dl.dl if type(dl).__name__ == "DistributedDL" and hasattr(dl, "dl") else dl


def world_size() -> int:
    """The number of ranks training together (1 in a process on its own)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def fit_signature(learn: Learner) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue this fit: epochs, batches per epoch, batch size, the model's
    parameter shapes, the optimiser and its fixed hyper-parameters (weight decay, eps, ...), and the schedule itself:
    each scheduled hyper-parameter (lr, mom) sampled at 21 points of the fit, per parameter group, so a changed
    ``lr_max``, ``div``, ``div_final`` or ``pct_start`` is another fit, not a schedule mixed from two. And the number
    of ranks: a checkpoint of a 2-GPU fit holds two ranks' random states and batches of half the data per step."""
    schedulers = [cb for cb in learn.cbs if isinstance(cb, ParamScheduler)]
    scheds = {name: fn for cb in schedulers for name, fn in cb.scheds.items()}
    shapes = [[name, list(t.shape)] for name, t in bare_model(learn.model).state_dict().items()]
    hypers = learn.opt.hypers if learn.opt is not None else []
    train = base_loader(learn.dls.train)
    return {
        "n_epoch": int(learn.n_epoch),
        "n_iter": len(learn.dls.train),
        "bs": int(train.bs or 0),
        "n_items": int(train.n or 0),
        "ranks": world_size(),
        "schedule": sorted(scheds),
        "schedule_values": {name: [_rounded(fn(i / 20)) for i in range(21)] for name, fn in sorted(scheds.items())},
        "lr": [] if scheds.get("lr") else [_rounded(h["lr"]) for h in hypers],
        "optimizer": getattr(learn.opt_func, "__qualname__", type(learn.opt_func).__name__),
        "hypers": [{k: _rounded(v) for k, v in sorted(h.items()) if k not in scheds} for h in hypers],
        "shapes": hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16],
    }


def _rounded(value: Any) -> Any:
    """A hyper-parameter as JSON, to 9 significant digits (float noise is not another schedule)."""
    array = np.asarray(value, dtype=float).ravel() if not isinstance(value, bool) else None
    if array is None:
        return value
    values = [float(f"{x:.9g}") for x in array]
    return values[0] if len(values) == 1 else values


def capture_learner(learn: Learner) -> dict[str, Any]:
    """Model, optimizer, scaler, recorder and callback states of `learn`, as plain containers."""
    state: dict[str, Any] = {"model": plain(bare_model(learn.model).state_dict())}
    if learn.opt is not None:
        state["opt"] = plain(learn.opt.state_dict())
    scaler = getattr(learn, "scaler", None)
    if scaler is not None and hasattr(scaler, "state_dict"):
        state["scaler"] = plain(scaler.state_dict())
    rec = getattr(learn, "recorder", None)
    if rec is not None and hasattr(rec, "lrs"):
        state["recorder"] = {
            "lrs": plain(list(rec.lrs)), "iters": plain(list(rec.iters)),
            "losses": plain(torch.stack([torch.as_tensor(x).float() for x in rec.losses])) if rec.losses else None,
            "values": plain([list(v) for v in rec.values]),
            "smooth_count": int(rec.smooth_loss.count), "smooth_val": plain(rec.smooth_loss.val),
        }  # fmt: skip
    state["callbacks"] = {}
    for i, cb in enumerate(learn.cbs):
        key = f"{i}:{type(cb).__name__}"
        if isinstance(cb, ParamScheduler) and hasattr(cb, "hps"):
            state["callbacks"][key] = {"hps": plain(cb.hps)}
        elif isinstance(cb, TrackerCallback) and getattr(cb, "best", None) is not None:
            state["callbacks"][key] = {
                "best": float(cb.best),
                **({"wait": int(cb.wait)} if hasattr(cb, "wait") else {}),
            }
        elif hasattr(type(cb), "state_dict") and hasattr(type(cb), "load_state_dict"):  # not via Callback.__getattr__
            state["callbacks"][key] = {"state_dict": plain(cb.state_dict())}
    return state


def restore_learner(learn: Learner, state: dict[str, Any]) -> None:
    """Load a `capture_learner` state into `learn` (model and optimizer tensors go to the parameters' devices)."""
    bare_model(learn.model).load_state_dict(state["model"])
    if "opt" in state and learn.opt is not None:
        learn.opt.load_state_dict(_lists_to_fastai(state["opt"]))
        devices = {p: p.device for p, *_ in learn.opt.all_params()}
        for p, s in learn.opt.state.items():
            for k, v in list(s.items()):
                if isinstance(v, torch.Tensor):
                    s[k] = v.to(devices[p])
    if "scaler" in state and getattr(learn, "scaler", None) is not None:
        learn.scaler.load_state_dict(state["scaler"])
    rec = getattr(learn, "recorder", None)
    if rec is not None and "recorder" in state:
        r = state["recorder"]
        rec.lrs, rec.iters, rec.values = list(r["lrs"]), list(r["iters"]), [list(v) for v in r["values"]]
        rec.losses = list(r["losses"].unbind()) if r["losses"] is not None else []
        rec.smooth_loss.count, rec.smooth_loss.val = r["smooth_count"], r["smooth_val"]
    restore_callbacks(learn, state.get("callbacks", {}), include_schedulers=False)


def restore_callbacks(learn: Learner, saved: dict[str, Any], include_schedulers: bool) -> None:
    """Give callbacks back their saved state (schedulers' history only when `include_schedulers`)."""
    for i, cb in enumerate(learn.cbs):
        entry = saved.get(f"{i}:{type(cb).__name__}")
        if entry is None:
            continue
        if "hps" in entry:
            if include_schedulers:
                cb.hps = {k: list(v) for k, v in entry["hps"].items()}
        elif "best" in entry:
            cb.best = entry["best"]
            if "wait" in entry:
                cb.wait = entry["wait"]
        elif "state_dict" in entry:
            cb.load_state_dict(entry["state_dict"])


def _lists_to_fastai(sd: dict[str, Any]) -> dict[str, Any]:
    return {"state": list(sd["state"]), "hypers": [dict(h) for h in sd["hypers"]]}


def _tuples(obj: Any) -> Any:
    """random.setstate wants tuples where a round trip may give lists."""
    if isinstance(obj, list | tuple):
        return tuple(_tuples(v) for v in obj)
    return obj
