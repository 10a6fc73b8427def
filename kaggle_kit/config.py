"""A kernel script's settings in one place, overridable by the JSON file named in KAGGLE_KIT_CONFIG.

Tests and the demo run the very same kernel script at tiny sizes by pointing KAGGLE_KIT_CONFIG at a small JSON file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KaggleKitError

__all__ = ["load_settings", "ConfigError"]


class ConfigError(KaggleKitError):
    """The settings file is missing, not JSON, or holds a key or value the kernel does not know."""


def load_settings(defaults: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`defaults` updated from the JSON object in the file named by KAGGLE_KIT_CONFIG (if set).

    An unknown key is an error that lists the known ones; a value whose type differs from the default's (int vs
    float aside, None allowing anything) is an error too, so a typo fails before hours of work.
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
        default = defaults[key]
        numeric = isinstance(default, int | float) and isinstance(value, int | float)
        if default is not None and value is not None and not numeric and not isinstance(value, type(default)):
            raise ConfigError(
                f"setting {key!r}={value!r} in {path} should be a {type(default).__name__} like {default!r}", key
            )
        settings[key] = value
    return settings
