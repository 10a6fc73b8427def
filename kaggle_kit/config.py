"""A kernel script's settings in one place, overridable by the JSON file named in KAGGLE_KIT_CONFIG.

Tests and the demo run the very same kernel script at tiny sizes by pointing KAGGLE_KIT_CONFIG at a small JSON file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KaggleKitError

__all__ = ["load_settings", "ConfigError", "STANDARD_CHECKS", "one_of", "whole_at_least", "non_empty_list"]


class ConfigError(KaggleKitError):
    """The settings file is missing, not JSON, or holds a key or value the kernel does not know."""


def load_settings(
    defaults: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    checks: Mapping[str, Callable[[Any], str | None]] | None = None,
) -> dict[str, Any]:
    """`defaults` updated from the JSON object in the file named by KAGGLE_KIT_CONFIG (if set), every value checked.

    Each value must have its default's type: a bool is not an int, an int default takes whole numbers only, a float
    default takes any number, list elements follow the default list's, a None default takes anything. Then the
    ranges and agreements every kernel here relies on (`STANDARD_CHECKS`: batch sizes and epochs positive,
    0 < valid_pct < 1, num_workers >= 0, sizes/epochs/lrs of one length, ...) and any `checks` (setting name ->
    function returning a complaint or None). All of it runs before any long work; one error names the file, the
    setting and what it should be.
    """
    env = os.environ if environ is None else environ
    settings = dict(defaults)
    raw_path = env.get("KAGGLE_KIT_CONFIG")
    if not raw_path:
        return settings
    path = Path(raw_path)
    try:
        overrides = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"KAGGLE_KIT_CONFIG={raw_path!r} cannot be read: {exc.strerror}", raw_path) from None
    except ValueError as exc:
        raise ConfigError(f"KAGGLE_KIT_CONFIG file {path} is not JSON: {exc}", raw_path) from None
    except RecursionError:
        raise ConfigError(f"KAGGLE_KIT_CONFIG file {path} is nested too deep to be settings", raw_path) from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"KAGGLE_KIT_CONFIG file {path} must hold a JSON object of settings", raw_path)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(map(repr, unknown))} in {path}; known settings: "
            f"{', '.join(sorted(defaults))}",
            unknown,
        )
    for key, value in overrides.items():
        expected = _type_complaint(value, defaults[key])
        if expected:
            raise ConfigError(f"setting {key!r}={value!r} in {path} should be {expected}", key)
        settings[key] = float(value) if isinstance(defaults[key], float) and value is not None else value
    for key, check in {**STANDARD_CHECKS, **(checks or {})}.items():
        complaint = check(settings) if key.startswith("*") else check(settings[key]) if key in settings else None
        if complaint:
            raise ConfigError(f"setting {key.lstrip('*')} in {path}: {complaint}", key)
    return settings


def one_of(*choices: Any) -> Callable[[Any], str | None]:
    """A check for ``load_settings``: the value must be one of `choices`."""
    return lambda v: None if v in choices else f"{v!r} must be {' or '.join(map(json.dumps, choices))}"


def whole_at_least(least: int, unit: str = "") -> Callable[[Any], str | None]:
    """A check for ``load_settings``: null, or a whole number >= `least` (in `unit`)."""

    def check(v: Any) -> str | None:
        whole = isinstance(v, int) and not isinstance(v, bool)
        return None if v is None or (whole and v >= least) else f"{v!r} must be null or a whole number >= {least}" + (
            f" ({unit})" if unit else "")  # fmt: skip

    return check


def non_empty_list(v: Any) -> str | None:
    """A check for ``load_settings``: a list of at least one value."""
    return None if isinstance(v, list) and v else f"{v!r} must be a list of at least one value"


def _type_complaint(value: Any, default: Any) -> str | None:
    """What `value` should be, given `default`, or None when it fits."""
    if default is None or value is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else f"a whole number like {default!r}"
    if isinstance(default, float):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else f"a number like {default!r}"
    if isinstance(default, list):
        if not isinstance(value, list):
            return f"a list like {default!r}"
        bad = [v for v in value if default and _type_complaint(v, default[0])]
        return f"a list of {_type_complaint(bad[0], default[0])}s" if bad else None
    return None if isinstance(value, type(default)) else f"a {type(default).__name__} like {default!r}"


def _positive(value: Any) -> str | None:
    values = value if isinstance(value, list) else [value]
    return None if all(v is None or v > 0 for v in values) else f"{value!r} must be positive"


def _same_lengths(settings: Mapping[str, Any]) -> str | None:
    lists = {k: settings[k] for k in ("sizes", "epochs", "lrs") if isinstance(settings.get(k), list)}
    if len(lists) > 1 and len({len(v) for v in lists.values()}) > 1:
        return f"{', '.join(f'{k}={v!r}' for k, v in lists.items())} need one value each per stage (the same length)"
    return None


STANDARD_CHECKS: dict[str, Callable[[Any], str | None]] = {
    **{key: _positive for key in ("bs", "stage2_bs", "sizes", "epochs", "lrs", "crop_size", "stage2_epochs",
                                  "stage2_lr", "size", "lr", "max_train_images", "checkpoint_every")},
    "valid_pct": lambda v: None if v is None or 0 < v < 1 else f"{v!r} must be between 0 and 1, e.g. 0.2",
    "num_workers": whole_at_least(0),  # null: one per CPU core the kernel has
    "seed": lambda v: None if v is None or v >= 0 else f"{v!r} must be 0 or more",
    "reserve": lambda v: None if v is None or v >= 0 else f"{v!r} minutes must be 0 or more",
    "*stages": _same_lengths,
}  # fmt: skip
