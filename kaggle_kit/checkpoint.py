"""Durable training checkpoints: atomic files with a checksum manifest, rotation, and discovery across kernels.

A checkpoint is one ``torch.save`` file of plain containers and tensors (loaded with ``weights_only=True``) named
``ckpt-s<stage>-e<epoch>-i<iteration>.pth`` with zero-padded numbers, so string order is training order. A manifest
``checkpoints.json`` beside the files lists each with its SHA-256 and size; it is replaced atomically after the data,
and old files are removed only after that. The previous kernel's checkpoints are found under /kaggle/input when its
output is attached as an input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from kaggle_kit.atomic import atomic_open, atomic_write_json
from kaggle_kit.errors import KaggleKitError
from kaggle_kit.kernel import Kernel

__all__ = ["CheckpointSaver", "CheckpointError", "find_latest_checkpoint", "MANIFEST_NAME", "CHECKPOINT_DIR"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "checkpoints.json"
CHECKPOINT_DIR = "checkpoints"
_CHUNK = 1 << 22


class CheckpointError(KaggleKitError):
    """No valid checkpoint could be read, or a checkpoint does not fit the training it should resume."""


class CheckpointSaver:
    """Saves training states into `directory`, keeping the newest `keep` (2 by default: the output budget is small).

    ``save(state) -> Path`` writes atomically and updates the manifest; ``load_latest() -> (state, path)`` verifies the
    checksum and falls back to the previous checkpoint, with a warning, when the newest is torn or corrupt.
    `state` needs "stage", "epoch" and "iteration" (ints) for the file name.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep={keep} must be at least 1")
        self.directory = Path(directory)
        self.keep = keep

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_NAME

    def entries(self) -> list[dict[str, Any]]:
        """The manifest's entries, oldest first ([] when there is none or it is unreadable)."""
        try:
            return json.loads(self.manifest_path.read_text())["checkpoints"]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def save(self, state: dict[str, Any]) -> Path:
        """Write `state` durably and return its path; then drop checkpoints beyond `keep`. Streams to disk."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = (f"ckpt-s{int(state.get('stage', 0)):02d}-e{int(state.get('epoch', 0)):04d}-"
                f"i{int(state.get('iteration', 0)):07d}.pth")  # fmt: skip
        path = self.directory / name
        started = time.perf_counter()
        with atomic_open(path, "wb") as f:
            torch.save(state, f)
        entry = {"file": name, "sha256": _sha256(path), "bytes": path.stat().st_size,
                 "stage": int(state.get("stage", 0)), "epoch": int(state.get("epoch", 0)),
                 "iteration": int(state.get("iteration", 0)), "saved_at": time.time()}  # fmt: skip
        entries = [e for e in self.entries() if e["file"] != name and (self.directory / e["file"]).exists()]
        entries = [*entries, entry][-self.keep :]
        atomic_write_json(self.manifest_path, {"version": 1, "checkpoints": entries})
        kept = {e["file"] for e in entries}
        for old in self.directory.glob("ckpt-*.pth"):
            if old.name not in kept:
                old.unlink(missing_ok=True)
        log.info("checkpoint %s saved in %.2fs (%d bytes)", path, time.perf_counter() - started, entry["bytes"])
        return path

    def load_latest(self) -> tuple[dict[str, Any], Path]:
        """The newest checkpoint whose checksum verifies, as (state, path). Raises CheckpointError if none does."""
        return _load_first_valid(self.directory, self.entries())

    def exists(self) -> bool:
        """True when the directory holds at least one checkpoint file."""
        return any(self.directory.glob("ckpt-*.pth"))


def find_latest_checkpoint(kernel: Kernel, working_saver: CheckpointSaver) -> tuple[dict[str, Any], Path] | None:
    """The most advanced valid checkpoint in the working dir or under any attached input, or None.

    "Most advanced" is the highest (stage, epoch, iteration): a previous kernel's output attached as an input and
    this kernel's own newer saves are compared on training progress, not on file times.
    """
    directories = [working_saver.directory]
    try:  # the same sub-folder in a previous kernel's output, e.g. checkpoints/stage2
        relative = working_saver.directory.relative_to(kernel.working_dir)
    except ValueError:
        relative = Path(CHECKPOINT_DIR)
    for _slug, path in kernel.inputs():
        directories += [path / relative, path]
    candidates = []
    for directory in directories:
        entries = CheckpointSaver(directory).entries()
        if entries:
            best = entries[-1]
            candidates.append(((best["stage"], best["epoch"], best["iteration"]), directory, entries))
    for _progress, directory, entries in sorted(candidates, key=lambda c: c[0], reverse=True):
        try:
            return _load_first_valid(directory, entries)
        except CheckpointError as exc:
            log.warning("%s", exc)
    return None


def _load_first_valid(directory: Path, entries: list[dict[str, Any]]) -> tuple[dict[str, Any], Path]:
    if not entries:  # no manifest: try the files themselves, newest name first, without a checksum
        entries = [{"file": p.name, "sha256": None} for p in sorted(directory.glob("ckpt-*.pth"))]
    for entry in reversed(entries):
        path = directory / entry["file"]
        if not path.is_file():
            log.warning("checkpoint %s is missing; trying the previous one", path)
            continue
        if entry.get("sha256") and _sha256(path) != entry["sha256"]:
            log.warning("checkpoint %s fails its checksum (torn or corrupt copy); trying the previous one", path)
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=True), path
        except Exception as exc:  # unreadable for any reason: the previous checkpoint may still be good
            log.warning("checkpoint %s cannot be loaded (%s); trying the previous one", path, exc)
    raise CheckpointError(f"no valid checkpoint in {directory}", str(directory))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()
