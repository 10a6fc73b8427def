"""Durable writes: a file either keeps its old content or has the whole new one, even after a kill or power cut."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "file_sha256",
    "atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_named_by_digest",
    "fsync_dir", "remove_stale_temps", "remove_stale_temps_in",
]  # fmt: skip

log = logging.getLogger(__name__)

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Yield a temp file beside `path`; on success it replaces `path` durably, on error it vanishes.

    `mode` is "wb" or "w" (text, UTF-8). The temp file is hidden (leading dot) and lives in the same directory, so
    ``os.replace`` is an atomic rename on the same file system.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode a plain open() would
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # makes the rename itself survive a power cut


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the path of a temp file beside `path`, for writers that need a name (numpy's memmap); on success it
    is fsynced and replaces `path` durably, with a plain open()'s mode; on error it vanishes."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically and return the path."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_write_named_by_digest(
    directory: str | os.PathLike, stem: str, suffix: str, write: Callable[[IO[bytes]], Any]
) -> tuple[Path, str]:
    """Stream `write(f)` into ``<directory>/<stem>-<first 16 hex of its SHA-256><suffix>`` atomically.

    The file carries its own checksum in its name, so it can be verified with nothing beside it. Returns the path
    and the full SHA-256 (hex). The digest is computed while writing: no second read, no copy in RAM.
    """
    directory = Path(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as raw:
            hashing = _HashingWriter(raw)
            write(hashing)
            raw.flush()
            os.fsync(raw.fileno())
        digest = hashing.sha256.hexdigest()
        path = directory / f"{stem}-{digest[:16]}{suffix}"
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return path, digest


def remove_stale_temps_in(folder: str | os.PathLike) -> list[Path]:
    """Delete every temp file a killed atomic write left directly in `folder` (``.<name>.<8 random chars>.tmp``);
    return them. For a kernel's working dir as the kernel starts, before anything writes there again."""
    return remove_stale_temps(Path(folder) / "-", r"[^/]+")


def remove_stale_temps(path: str | os.PathLike, name_regex: str | None = None) -> list[Path]:
    """Delete temp files that `atomic_open(path)` left beside `path` when a kill landed mid-write; return them.

    Only names of exactly that shape (``.<name>.<8 random chars>.tmp``) are touched; `name_regex` matches several
    names at once (``atomic_write_named_by_digest``'s stems). Call it when the code that owns `path` starts, while no
    other writer of `path` runs (e.g. under its lock).
    """
    path = Path(path)
    pattern = re.compile(rf"\.(?:{name_regex or re.escape(path.name)})\.[a-z0-9_]{{8}}\.tmp")
    removed = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    for candidate in candidates:
        if pattern.fullmatch(candidate.name) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    if removed:
        log.info("removed %d temp file(s) a killed write left beside %s", len(removed), path)
    return removed


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, f: IO[bytes]):
        self.f, self.sha256 = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory entry to disk (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read 1 MiB at a time: weights files are hundreds of MB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
