"""What identifies a prediction run across processes and kernels: callables by name, items by where they live.

A resumed run must prove it is the same run as the one that wrote the files, in a new process (where memory
addresses differ) and in the next kernel (where the same test set may be mounted at another path). So identity is
built only from things that are the same there: a function's module and qualified name, an object's own
``signature()``, an item's path relative to the kernel's input (or working) dir. Never a memory address, a temp path
or a time.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

from kaggle_kit.errors import KaggleKitError

__all__ = ["IdentityError", "array_digest", "callable_identity", "items_digest", "model_digest", "relative_item"]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")


class IdentityError(KaggleKitError, TypeError):
    """An argument has no identity that stays the same in the next process, so a resume could not be checked."""


def callable_identity(fn: Any, what: str = "to_rows") -> Any:
    """A JSON-able name for `fn` that is equal in every process running the same code.

    - a function, lambda, builtin or class: ``"module.qualname"`` (a lambda is named by where it is defined);
    - an object with a ``signature()`` method: its class plus what ``signature()`` returns (its settings);
    - a bound method: its function's name plus its object's ``signature()`` when the object has one;
    - a ``functools.partial``: its function plus its arguments, when they are plain JSON values;
    - any other object whose ``repr`` carries no memory address (``nn.Sigmoid()``): its class and repr.
    Anything else raises `IdentityError` naming `what` and how to fix it.
    """
    if fn is None:
        return None
    if isinstance(fn, functools.partial):
        args = _json_or_none([fn.args, fn.keywords])
        if args is None:
            raise IdentityError(
                f"{what}={fn!r}: a functools.partial can be identified only when its arguments are plain JSON values "
                f"(numbers, strings, lists); give a class with a signature() method instead",
                fn,
            )
        return {"partial": callable_identity(fn.func, what), "args": args}
    if inspect.ismethod(fn):
        owner = fn.__self__
        name = _qualified(fn.__func__)
        return {"method": name, "self": _settings(owner, what)} if _has_signature(owner) else name
    if inspect.isfunction(fn) or inspect.isbuiltin(fn) or inspect.isclass(fn):
        return _qualified(fn)
    if _has_signature(fn):
        return {"class": _qualified(type(fn)), "settings": _settings(fn, what)}
    text = repr(fn)
    if not _ADDRESS.search(text):
        return {"class": _qualified(type(fn)), "repr": text}
    raise IdentityError(
        f"{what} (a {_qualified(type(fn))} object) has no name that stays the same in the next process, so a resumed "
        f"run could not be checked; give {type(fn).__name__} a signature() method returning its settings, or pass a "
        "function",
        text,
    )


def relative_item(item: Any, roots: Sequence[tuple[str, Path]]) -> Any:
    """`item` with a path under one of `roots` (label, dir) written as ``"label:relative/path"``; others unchanged."""
    if not isinstance(item, str | PurePath):
        return item
    text = os.fspath(item)
    if not os.path.isabs(text):
        return text
    for label, root in roots:
        root_text = os.fspath(root).rstrip(os.sep) + os.sep
        if text.startswith(root_text):
            return f"{label}:{text[len(root_text) :]}"
    return text


def items_digest(items: Sequence[Any] | pd.DataFrame, roots: Sequence[tuple[str, Path]] = ()) -> str:
    """SHA-256 of the items in order, paths taken relative to `roots` (see `relative_item`)."""
    h = hashlib.sha256()
    if isinstance(items, pd.DataFrame):
        frame = items.copy(deep=False)
        for column in frame.columns:
            if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
                frame[column] = [str(relative_item(v, roots)) for v in frame[column]]
        h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        h.update(",".join(map(str, frame.columns)).encode())
        return h.hexdigest()
    for item in items:
        h.update(str(relative_item(item, roots)).encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def model_digest(model: Any) -> str:
    """SHA-256 of a torch module's parameters and buffers (names and exact bytes)."""
    import torch  # here, not at the top: this module stays importable without torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        if tensor.numel():
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def array_digest(values: Any) -> str:
    """SHA-256 of an array's dtype, shape and bytes: a short stable stand-in for thresholds or weights."""
    array = np.ascontiguousarray(values)
    return hashlib.sha256(f"{array.dtype.str}{array.shape}".encode() + array.tobytes()).hexdigest()


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _has_signature(obj: Any) -> bool:
    return callable(getattr(type(obj), "signature", None))


def _settings(obj: Any, what: str) -> Any:
    settings = obj.signature()
    text = _json_or_none(settings)
    if text is None or _ADDRESS.search(json.dumps(text)):
        raise IdentityError(
            f"{what}: {type(obj).__name__}.signature() must return plain JSON values without memory addresses, "
            f"got {settings!r}",
            settings,
        )
    return text


def _json_or_none(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError):
        return None
