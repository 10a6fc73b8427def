"""One process at a time: an exclusive advisory lock on a file, released by the kernel when its holder ends.

A lock left by a killed process never blocks (``flock`` dies with its holder). A second taker fails at once, with
the holder's pid read from /proc/locks (Linux) where it can be told.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from kaggle_kit.errors import KaggleKitError

__all__ = ["ExclusiveLock", "LockBusyError"]


class LockBusyError(KaggleKitError):
    """Another process holds the lock; ``value`` is its pid, or None when it cannot be told."""


class ExclusiveLock:
    """``with ExclusiveLock(path, busy): ...``: hold an exclusive flock on `path` (created empty if missing).

    `busy(who)` makes the one-line message when another process holds it (`who`: "process 1234" or "another
    process"); `error` is the `LockBusyError` subclass raised with it.
    """

    def __init__(self, path: str | os.PathLike, busy: Callable[[str], str],
                 error: type[LockBusyError] = LockBusyError):  # fmt: skip
        self.path = Path(path)
        self._busy, self._error = busy, error
        self._fd: int | None = None

    def acquire(self) -> ExclusiveLock:
        """Take the lock now, or raise `error` naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _flock_holder(fd)
            os.close(fd)
            raise self._error(self._busy(f"process {holder}" if holder else "another process"), holder) from None
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the next process take it (closing the only descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExclusiveLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _flock_holder(fd: int) -> int | None:
    """The pid holding a flock on the file behind `fd`, from /proc/locks (Linux); None if it cannot be told."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None
