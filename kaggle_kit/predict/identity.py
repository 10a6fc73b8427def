"""What identifies a prediction run across processes and kernels: callables by name, items by where they live.

A resumed run must prove it is the same run as the one that wrote the files, in a new process (where memory
addresses differ) and in the next kernel (where the same test set may be mounted at another path). So identity is
built only from things that are the same there: a function's module and qualified name, an object's own
``signature()``, an item's path relative to the kernel's input (or working) dir. Never a memory address, a temp path
or a time.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import inspect
import json
import os
import re
import sysconfig
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

from kaggle_kit.errors import KaggleKitError

__all__ = [
    "IdentityError",
    "array_digest",
    "callable_identity",
    "changed_paths",
    "content_digest",
    "items_digest",
    "model_digest",
    "relative_item",
]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
_FOLLOW_DEPTH = 4  # calls deep: to_rows -> helper -> helper's helper -> ...
_LIBRARY_PATHS = tuple(sorted({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}))


class IdentityError(KaggleKitError, TypeError):
    """An argument has no identity that stays the same in the next process, so a resume could not be checked."""


def callable_identity(fn: Any, what: str = "to_rows") -> Any:
    """A JSON-able name for `fn` that is equal in every process running the same code.

    - a builtin or class: ``"module.qualname"``;
    - a Python function or lambda: its name plus what makes it behave differently: a digest of its code, its
      defaults, the values its closure holds and the plain module-level values it reads (JSON values as they are,
      arrays by digest, functions by this same rule), the values it reads from a module-level dict by a constant
      key (``CFG["k"]``: only those keys, so the rest of a settings dict may change), and the user's own
      module-level functions it calls, followed the same way a few calls deep; a value of any other kind raises
      `IdentityError`. So ``top_k_rows(vocab, k=1)`` and ``k=2``, or two lambdas of one module, never pass for
      each other;
    - an object with a ``signature()`` method: its class plus what ``signature()`` returns (its settings);
    - a bound method: its function plus its object's ``signature()``, or else the object's attributes (as values);
    - a ``functools.partial``: its function plus its arguments, when they are values as above;
    - any other object whose ``repr`` carries no memory address (``nn.Sigmoid()``): its class and repr, plus its
      weights (a torch module) or its attributes, since a repr can stay the same while the state changes.
    Anything else raises `IdentityError` naming `what` and how to fix it.
    """
    if fn is None:
        return None
    if isinstance(fn, functools.partial):
        try:
            args = [[_value_identity(a, what) for a in fn.args],
                    {k: _value_identity(v, what) for k, v in sorted(fn.keywords.items())}]  # fmt: skip
        except IdentityError:
            args = None
        if args is None:
            raise IdentityError(
                f"{what}={fn!r}: a functools.partial can be identified only when its arguments are plain JSON values "
                f"(numbers, strings, lists); give a class with a signature() method instead",
                fn,
            )
        return {"partial": callable_identity(fn.func, what), "args": args}
    if inspect.ismethod(fn):
        owner = fn.__self__
        name = callable_identity(fn.__func__, what)
        if _has_signature(owner):
            return {"method": name, "self": _settings(owner, what)}
        return {"method": name, "self": {"class": _qualified(type(owner)), "state": _object_state(owner, what)}}
    if inspect.isfunction(fn):
        return _function_identity(fn, what)
    if inspect.isbuiltin(fn) or inspect.isclass(fn):
        return _qualified(fn)
    if _has_signature(fn):
        return {"class": _qualified(type(fn)), "settings": _settings(fn, what)}
    text = repr(fn)
    if not _ADDRESS.search(text):  # a repr can stay the same while the state it hides changes: the state counts too
        return {"class": _qualified(type(fn)), "repr": text, "state": _callable_state(fn, what)}
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


def content_digest(items: Any) -> str:
    """SHA-256 over what the files among `items` hold (size and bytes, in order): the same names with other pixels
    (a code competition's rerun on its private test set) are other items. Items that are not files (rows of a
    frame, arrays) add nothing here: `items_digest` covers them. Read just after prediction read the same files,
    so from the page cache, in the writer's thread."""
    if isinstance(items, pd.DataFrame):
        return ""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, str | os.PathLike) and os.path.isfile(item):
            with open(item, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            h.update(f"{os.path.getsize(item)}:{digest}\n".encode())
        else:
            h.update(b"-\n")
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


def changed_paths(old: Any, new: Any, where: str) -> list[str]:
    """Where two JSON values differ, as readable paths ("sink settings to_rows reads VOCAB ["dog"] (now ["cat"])")."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                found += changed_paths(old.get(key), new.get(key), f"{where} {_STEPS.get(key, key)}")
        return found
    shown_old, shown_new = json.dumps(old), json.dumps(new)
    if len(shown_old) + len(shown_new) <= 80:
        return [f"{where} {shown_old} (now {shown_new})"]
    return [f"{where} changed"]


_STEPS = {"globals": "reads", "closure": "holds"}  # how a function's identity reads in a refusal


def _function_identity(fn: Any, what: str, depth: int = 0, seen: frozenset = frozenset()) -> dict[str, Any]:
    """A Python function by name, code, defaults, closure values, the plain globals it reads, the values it reads
    from a module-level dict by a constant key (``CFG["k"]``, ``CFG.get("k")``), and the user's own module-level
    functions it calls (followed the same way, `_FOLLOW_DEPTH` calls deep; a recursive call counts by name)."""
    code = fn.__code__
    closure = {}
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell (a name bound later): nothing it could behave by yet
            value = None
        closure[name] = _value_identity(value, f"{what} (its closure's {name!r})", depth)
    module_values: dict[str, Any] = {}
    keys_read = _constant_keys(code)
    for name in sorted(set(_names_read(code))):
        if name not in fn.__globals__:
            continue
        value = fn.__globals__[name]
        if _is_plain(value):
            module_values[name] = _value_identity(value, f"{what} (the module-level {name!r})", depth)
        elif isinstance(value, dict):  # only the keys it reads: a settings dict may change elsewhere between kernels
            for key in sorted((k for k in keys_read.get(name, ()) if k in value), key=repr):
                module_values[f"{name}[{key!r}]"] = _value_identity(value[key], f"{what} ({name}[{key!r}])", depth)
        elif _is_users_function(value) and value is not fn:
            if value in seen or depth >= _FOLLOW_DEPTH:
                module_values[name] = {"function": _qualified(value), "code": _code_digest(value.__code__)}
            else:
                module_values[name] = _function_identity(value, f"{what} (the function {name!r} it calls)", depth + 1,
                                                         seen | {fn})  # fmt: skip
    return {
        "function": _qualified(fn),
        "code": _code_digest(code),
        "defaults": [_value_identity(v, f"{what} (a default)", depth) for v in fn.__defaults__ or ()],
        "kwdefaults": {
            k: _value_identity(v, f"{what} (a default)", depth) for k, v in sorted((fn.__kwdefaults__ or {}).items())
        },  # fmt: skip
        "closure": closure,
        "globals": module_values,
    }


def _value_identity(value: Any, what: str, depth: int = 0) -> Any:
    """A value a function behaves by, as JSON: plain values as they are, arrays by digest, callables by identity."""
    if depth > 20:
        raise IdentityError(f"{what}: nested too deep to identify", None)
    if value is None or isinstance(value, bool | int | float | str):
        return value if not isinstance(value, float) or np.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return _value_identity(value.item(), what, depth)
    if isinstance(value, PurePath):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return [_value_identity(v, what, depth + 1) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_value_identity(v, what, depth + 1) for v in value), key=json.dumps)
    if isinstance(value, dict):
        pairs = sorted(value.items(), key=lambda kv: str(kv[0]))
        return {str(k): _value_identity(v, what, depth + 1) for k, v in pairs}
    if isinstance(value, np.ndarray | pd.Series | pd.Index):
        return {"array": array_digest(np.asarray(value))}
    if isinstance(value, pd.DataFrame):
        return {"frame": hashlib.sha256(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes()
                                        + ",".join(map(str, value.columns)).encode()).hexdigest()}  # fmt: skip
    if inspect.isfunction(value):
        return _function_identity(value, what, depth + 1)
    if inspect.ismodule(value):
        return {"module": value.__name__}
    if callable(value):
        return callable_identity(value, what)
    if _has_signature(value):
        return {"class": _qualified(type(value)), "settings": _settings(value, what)}
    raise IdentityError(
        f"{what} holds a {_qualified(type(value))}, which has no identity that stays the same in the next process, so "
        "a resumed run could not be checked; pass plain values (numbers, strings, lists, arrays) or give the class "
        "a signature() method returning its settings",
        type(value).__qualname__,
    )


def _object_state(owner: Any, what: str) -> Any:
    state = getattr(owner, "__dict__", None)
    if state is None:
        raise IdentityError(
            f"{what}: a method of a {_qualified(type(owner))} object, which has no signature() and no attributes to "
            f"identify it by; give {type(owner).__name__} a signature() method returning its settings",
            None,
        )
    return _value_identity(dict(state), f"{what} (an attribute of its {type(owner).__name__})")


def _is_plain(value: Any) -> bool:
    """A module-level value a function's behaviour may hang on: a number, string, list, tuple, set or array.

    Not a dict: a script's settings dict (``settings["reserve_s"]``) is read by everything, and counting all of it
    would refuse a resume whose time reserve changed. Not a module, class or function: those have names.
    """
    return isinstance(value, bool | int | float | str | list | tuple | set | frozenset | np.ndarray | np.generic)


def _constant_keys(code: Any) -> dict[str, set]:
    """{global name: constant keys} for each ``NAME["key"]`` or ``NAME.get("key")`` in `code` and the code nested
    in it (comprehensions, inner functions)."""
    found: dict[str, set] = {}
    steps = list(dis.get_instructions(code))
    for i, step in enumerate(steps[:-2]):
        if step.opname not in ("LOAD_GLOBAL", "LOAD_NAME") or not isinstance(step.argval, str):
            continue
        after, then = steps[i + 1], steps[i + 2]
        if after.opname == "LOAD_CONST" and then.opname == "BINARY_SUBSCR":
            key = after.argval
        elif after.opname in ("LOAD_METHOD", "LOAD_ATTR") and after.argval == "get" and then.opname == "LOAD_CONST":
            key = then.argval
        else:
            continue
        if isinstance(key, str | int):
            found.setdefault(step.argval, set()).add(key)
    for const in code.co_consts:
        if inspect.iscode(const):
            for name, keys in _constant_keys(const).items():
                found.setdefault(name, set()).update(keys)
    return found


def _is_users_function(value: Any) -> bool:
    """A Python function of the user's own code (a script's helper), not the standard library's, an installed
    package's or the kit's: its code counts towards the identity of a function that calls it."""
    if not inspect.isfunction(value) or str(getattr(value, "__module__", "")).split(".")[0] == "kaggle_kit":
        return False
    return not value.__code__.co_filename.startswith(_LIBRARY_PATHS)


def _callable_state(fn: Any, what: str) -> Any:
    """What a callable object without ``signature()`` behaves by, besides its repr: a torch module's weights, or
    else its attributes as values (`IdentityError` when they are not)."""
    if hasattr(fn, "state_dict") and hasattr(fn, "parameters"):
        return model_digest(fn)
    state = getattr(fn, "__dict__", None)
    return _object_state(fn, what) if state else None


def _names_read(code: Any) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names += _names_read(const)
    return names


def _code_digest(code: Any) -> str:
    """SHA-256 of what a code object does (bytecode, constants, names), never where it lives (file, line)."""
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        if inspect.iscode(const):
            h.update(_code_digest(const).encode())
        elif isinstance(const, frozenset):  # its order follows the per-process string hash
            h.update(repr(sorted(map(repr, const))).encode())
        else:
            h.update(repr(const).encode())
        h.update(b"\0")
    shape = (code.co_names, code.co_varnames, code.co_freevars, code.co_argcount, code.co_kwonlyargcount)
    h.update(repr(shape).encode())
    return h.hexdigest()


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
