"""Durable training checkpoints: self-verifying files, safe rotation, and discovery across kernels.

A checkpoint is one ``torch.save`` file of plain containers and tensors (loaded with ``weights_only=True``) named
``ckpt-s<stage>-e<epoch>-i<iteration>-<sha16>.pth``: zero-padded numbers, so string order is training order, and the
first 16 hex digits of the file's own SHA-256, so every file can be verified with nothing beside it. The manifest
``checkpoints.json`` is an index (replaced atomically after the data); when it is lost, cut or emptied, the files are
found and verified by name, and the newest valid one wins. Rotation removes only checkpoints older than the one just
saved. The previous kernel's checkpoints are found under /kaggle/input when its output is attached as an input.
This module owns ``checkpoints/`` (files, manifest, their temp files); what a checkpoint holds is ``resume``'s.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kaggle_kit.atomic import (
    atomic_open,
    atomic_write_json,
    atomic_write_named_by_digest,
    file_sha256,
    remove_stale_temps,
)
from kaggle_kit.errors import KaggleKitError, UsageError
from kaggle_kit.events import record_event
from kaggle_kit.kernel import Kernel

__all__ = [
    "CheckpointSaver",
    "CheckpointError",
    "find_latest_checkpoint",
    "prune_checkpoints",
    "MANIFEST_NAME",
    "CHECKPOINT_DIR",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "checkpoints.json"
INDEX_VERSION = 2  # checkpoints.json's format (an index: the files carry their own digests in their names)
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"ckpt-s(\d+)-e(\d+)-i(\d+)(?:-([0-9a-f]{16}))?\.pth")
_STEM_REGEX = r"ckpt-s\d+-e\d+-i\d+"


class CheckpointError(KaggleKitError):
    """No valid checkpoint could be read, or a checkpoint does not fit the training it should resume."""


@dataclass(frozen=True)
class _CheckpointFile:
    path: Path
    progress: tuple[int, int, int]  # (stage, epoch, iteration): training order
    sha256: str | None  # full digest (from the manifest) or the name's 16-digit prefix; None: cannot be verified


class CheckpointSaver:
    """Saves training states into `directory`, keeping the newest `keep` (2 by default: the output budget is small).

    ``save(state) -> Path`` writes atomically; ``load_latest() -> (state, path)`` verifies each file's checksum and
    falls back to the previous checkpoint, with a warning, when the newest is missing, torn or corrupt.
    `state` needs "stage", "epoch" and "iteration" (ints) for the file name.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        if keep < 1:
            raise UsageError(f"keep={keep} must be at least 1")
        self.directory = Path(directory)
        self.keep = keep

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_NAME

    def entries(self) -> list[dict[str, Any]]:
        """The manifest's entries, oldest first ([] when there is none or it is unreadable)."""
        try:
            raw = json.loads(self.manifest_path.read_text())
            version = raw.get("version")
            if type(version) is not int or not 1 <= version <= INDEX_VERSION:
                log.warning("%s is an index of version %r, not one this kaggle_kit reads (up to %d): finding the "
                            "checkpoints by name", self.manifest_path, version, INDEX_VERSION)  # fmt: skip
                return []
            entries = raw["checkpoints"]
            return [e for e in entries if isinstance(e, dict) and _NAME.fullmatch(str(e.get("file")))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []

    def files(self) -> list[_CheckpointFile]:
        """Every checkpoint file in the directory, oldest first, with the checksum to verify it by."""
        found, indexed = self._scan()
        if found and not indexed:
            log.warning("%s is missing or unreadable: found %d checkpoint file(s) by name", self.manifest_path,
                        len(found))  # fmt: skip
        return found

    def save(self, state: dict[str, Any]) -> Path:
        """Write `state` durably and return its path; then drop older checkpoints beyond `keep`. Streams to disk."""
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.directory / "ckpt", _STEM_REGEX)
        remove_stale_temps(self.manifest_path)
        progress = (int(state.get("stage", 0)), int(state.get("epoch", 0)), int(state.get("iteration", 0)))
        started = time.perf_counter()
        path, digest = atomic_write_named_by_digest(
            self.directory, "ckpt-s{:02d}-e{:04d}-i{:07d}".format(*progress), ".pth", lambda f: torch.save(state, f)
        )
        kept = self._rotate(path, progress)
        entries = [{"file": f.path.name, "sha256": digest if f.path == path else f.sha256,
                    "stage": f.progress[0], "epoch": f.progress[1], "iteration": f.progress[2]}
                   for f in kept]  # fmt: skip
        atomic_write_json(self.manifest_path, {"version": INDEX_VERSION, "checkpoints": entries})
        log.info("checkpoint %s saved in %.2fs (%d bytes)", path, time.perf_counter() - started, path.stat().st_size)
        record_event("checkpoint", file=path.name)
        return path

    def load_latest(self) -> tuple[dict[str, Any], Path]:
        """The newest checkpoint whose checksum verifies, as (state, path). Raises CheckpointError if none does."""
        return _load_first_valid(self.directory, self.files())

    def exists(self) -> bool:
        """True when the directory holds at least one checkpoint file."""
        return bool(self.files())

    def _scan(self) -> tuple[list[_CheckpointFile], bool]:
        """The checkpoint files, oldest first, and whether the manifest indexed any of them."""
        if not self.directory.is_dir():
            return [], False
        known = {e["file"]: e.get("sha256") for e in self.entries()}
        found = []
        for path in self.directory.iterdir():
            match = _NAME.fullmatch(path.name)
            if match and path.is_file():
                progress = (int(match[1]), int(match[2]), int(match[3]))
                found.append(_CheckpointFile(path, progress, known.get(path.name) or match[4]))
        found.sort(key=lambda f: (f.progress, f.path.stat().st_mtime_ns))
        return found, any(f.path.name in known for f in found)

    def _rotate(self, new: Path, progress: tuple[int, int, int]) -> list[_CheckpointFile]:
        """Delete checkpoints older than `new` beyond `keep`, never one newer; return those left, oldest first."""
        files, _indexed = self._scan()
        older = [f for f in files if f.path != new and f.progress <= progress]
        newer = [f for f in files if f.path != new and f.progress > progress]
        keep_older = older[len(older) - (self.keep - 1) :] if self.keep > 1 else []
        for f in older:
            if f not in keep_older:
                f.path.unlink(missing_ok=True)
        if newer:
            log.info("keeping %d checkpoint(s) newer than %s: %s", len(newer), new.name,
                     ", ".join(f.path.name for f in newer))  # fmt: skip
        mine = next(f for f in files if f.path == new)
        return sorted([*keep_older, mine, *newer], key=lambda f: f.progress)


def find_latest_checkpoint(kernel: Kernel, working_saver: CheckpointSaver) -> tuple[dict[str, Any], Path] | None:
    """The most advanced valid checkpoint in the working dir or under any attached input, or None.

    "Most advanced" is the highest (stage, epoch, iteration): a previous kernel's output attached as an input and
    this kernel's own newer saves are compared on training progress, not on file times. Starting from scratch while
    checkpoint files exist is logged as a warning naming them.
    """
    directories = [working_saver.directory]
    try:  # the same sub-folder in a previous kernel's output, e.g. checkpoints/stage2
        relative = working_saver.directory.relative_to(kernel.working_dir)
    except ValueError:
        relative = Path(CHECKPOINT_DIR)
    for _slug, path in kernel.inputs():
        directories += [path / relative, path]
    candidates = [(files[-1].progress, directory, files) for directory in directories
                  if (files := CheckpointSaver(directory).files())]  # fmt: skip
    for _progress, directory, files in sorted(candidates, key=lambda c: c[0], reverse=True):
        try:
            return _load_first_valid(directory, files)
        except CheckpointError as exc:
            log.warning("%s", exc)
    if candidates:
        names = ", ".join(str(f.path) for _p, _d, files in candidates for f in files)
        log.warning("starting from scratch: none of these checkpoint files is valid: %s", names)
    return None


def prune_checkpoints(folder: str | os.PathLike, model: Any = None, final_path: str | os.PathLike | None = None) -> int:
    """After a kernel is done: keep `model`'s weights once, as one state-dict file at `final_path` (written first,
    atomically; skipped when the weights are kept elsewhere, e.g. in a model folder), then delete the training
    checkpoints under `folder` (only files named as this module names them, its index and their temp files; emptied
    folders too). Returns the bytes freed: Kaggle keeps, and the user downloads, everything left in working/."""
    if model is not None and final_path is not None:
        with atomic_open(final_path) as f:
            torch.save(model.state_dict(), f)
    folder, freed = Path(folder), 0
    if not folder.is_dir():
        return 0
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders holding them
        if path.is_file() and (_NAME.fullmatch(path.name) or path.name == MANIFEST_NAME or ".tmp" in path.name):
            freed += path.stat().st_size
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
    return freed


def _load_first_valid(directory: Path, files: list[_CheckpointFile]) -> tuple[dict[str, Any], Path]:
    for f in reversed(files):
        if not f.path.is_file():
            log.warning("checkpoint %s is missing; trying the previous one", f.path)
            continue
        if f.sha256 is None or not file_sha256(f.path).startswith(f.sha256):
            log.warning("checkpoint %s fails its checksum (torn or corrupt copy); trying the previous one", f.path)
            continue
        try:
            return torch.load(f.path, map_location="cpu", weights_only=True), f.path
        except Exception as exc:  # unreadable for any reason: the previous checkpoint may still be good
            log.warning("checkpoint %s cannot be loaded (%s); trying the previous one", f.path, exc)
    raise CheckpointError(f"no valid checkpoint in {directory}", str(directory))
