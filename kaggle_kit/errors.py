"""The exceptions kaggle_kit raises: one base class, each holding the offending value.

Every exception passes its whole message to ``super().__init__`` so it pickles across the emulator's processes.
"""

from __future__ import annotations

__all__ = [
    "KaggleKitError", "LimitsError", "KernelLayoutError", "OutputLimitError", "ResumeMismatchError", "UsageError",
]  # fmt: skip


class KaggleKitError(Exception):
    """Base of every error kaggle_kit raises on purpose; ``value`` is what was wrong."""

    def __init__(self, message: str, value: object = None):
        super().__init__(message)
        self.value = value

    def __reduce__(self):
        return (type(self), (self.args[0], self.value))


class LimitsError(KaggleKitError, ValueError):
    """A limit (size, duration, file count or profile name) could not be parsed or is out of range."""


class KernelLayoutError(KaggleKitError, FileNotFoundError):
    """An input or directory the kernel needs is missing or ambiguous."""


class OutputLimitError(KaggleKitError):
    """A write would take the kernel's working dir past its output-file or byte limit."""


class ResumeMismatchError(KaggleKitError):
    """Saved progress belongs to a run with other arguments (items, shard, model, sink); resuming would mix them."""


class UsageError(KaggleKitError, ValueError):
    """A command-line argument or a setting is wrong: fix the call (the CLI exits with code 2)."""
