"""How far a streaming prediction got, proven against its files: the one owner of ``<sink file>.progress.json``.

`ProgressManifest` is the only code that creates, reads, checks, updates and commits a prediction manifest. For every
commit it records the items done, the sink's state, and what the sink's file must hold: its committed length in bytes
and the SHA-256 of the bytes added since the commit before. On resume (and before saying "already complete") it reads
the file once, front to back, and keeps the last commit whose bytes, and all bytes before them, still match; anything
after it is thrown away. A missing, cut or changed file therefore rewinds the run (or starts it over), with one log
line saying which; it never counts as done.

`SinkLock` keeps a second call off the same sink: an advisory ``flock`` on the sink's file, held for the whole call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kaggle_kit.atomic import atomic_write_json, fsync_dir
from kaggle_kit.errors import KaggleKitError, ResumeMismatchError
from kaggle_kit.events import record_event
from kaggle_kit.locks import ExclusiveLock, LockBusyError
from kaggle_kit.predict.identity import changed_paths

__all__ = [
    "ProgressManifest", "RunFingerprint", "SkippedItem", "Commit", "ProgressError", "SinkBusyError", "SinkLock",
    "manifest_path_for", "shard_problems",
]  # fmt: skip

log = logging.getLogger(__name__)

VERSION = 2
_BLOCK = 1 << 22


class ProgressError(KaggleKitError):
    """A progress manifest cannot be read or was written by another version: ``restart=True`` starts over."""


class SinkBusyError(LockBusyError):
    """Another process (or call) is writing the same sink right now."""


def manifest_path_for(first_file: Path) -> Path:
    """The manifest beside a sink's first file: ``<file>.progress.json``."""
    return first_file.with_name(first_file.name + ".progress.json")


@dataclass(frozen=True)
class RunFingerprint:
    """What identifies one prediction run in any process or kernel (see ``identity``): the items' digest and
    count, the shard (i, n), whether predictions are decoded, the activation's and the sink's identities, the TTA
    flips and the model's digest. Two runs with any field different never share a manifest."""

    items: str
    n_items: int = 0
    shard: tuple[int, int] = (0, 1)
    decode: bool = False
    act: Any = None
    tta: tuple[str, ...] = ()
    sink: Any = None
    model: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form stored in the manifest."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, raw: Any) -> RunFingerprint:
        """The fingerprint a manifest holds; a ValueError naming the field when it is not one."""
        if not isinstance(raw, dict) or not isinstance(raw.get("items"), str):
            raise ValueError(f"field 'fingerprint' is {raw!r:.80}, not a run fingerprint")
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        shard = known.get("shard", (0, 1))
        if not (isinstance(shard, list | tuple) and len(shard) == 2 and all(type(x) is int for x in shard)):
            raise ValueError(f"field 'shard' is {shard!r}, not [i, n]")
        return cls(**{**known, "shard": tuple(shard), "tta": tuple(known.get("tta", ()))})

    def differences(self, other: RunFingerprint) -> list[str]:
        """The names of the fields where `other` identifies another run."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [k for k in mine if mine[k] != theirs[k]]

    def describe_differences(self, recorded: RunFingerprint, limit: int = 3) -> str:
        """What differs between this run and the `recorded` one, for a refusal: the part ("items", "model" (its
        weights), "sink", "act", ...), down to the setting or value inside it that changed where one can be named
        (``sink: to_rows reads VOCAB``), with the recorded and new values where they are short."""
        mine, theirs = self.as_dict(), recorded.as_dict()
        said = []
        for key in self.differences(recorded):
            paths = changed_paths(theirs[key], mine[key], _PARTS.get(key, key))
            said += paths[:limit] or [_PARTS.get(key, key)]
        return "; ".join(said[: limit + 2])


_PARTS = {"items": "items (their names or content)", "model": "model weights", "n_items": "number of items"}


@dataclass(frozen=True)
class SkippedItem:
    """An item that could not be read: its position in the items (`index`), its name, and why."""

    index: int
    item: str
    reason: str

    @classmethod
    def from_dict(cls, raw: Any) -> SkippedItem:
        if not (isinstance(raw, dict) and isinstance(raw.get("item"), str)):
            raise ValueError("field 'skipped' must list objects with an 'item' string")
        return cls(int(raw.get("index", -1)), raw["item"], str(raw.get("reason", "")))


@dataclass
class Commit:
    """One durable step of a run: `done` items, the sink's state, and the file bytes that prove it."""

    done: int
    skipped: int  # how many entries of the manifest's `skipped` list existed at this commit
    sink_state: dict[str, Any]
    bytes: int  # committed length of the sink's file
    sha256: str  # digest of the file's bytes from the previous commit's length up to `bytes`
    content: str = ""  # `content_digest` of the items this commit added ("" : not recorded, e.g. rows of a frame)


@dataclass
class ProgressManifest:
    """The record of one prediction run (see the module docstring). Units: items and bytes."""

    fingerprint: RunFingerprint
    total: int
    commits: list[Commit] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)  # one per unreadable item, in the order met

    @property
    def done(self) -> int:
        return self.commits[-1].done if self.commits else 0

    @property
    def complete(self) -> bool:
        return self.done == self.total

    @property
    def sink_state(self) -> dict[str, Any] | None:
        return self.commits[-1].sink_state if self.commits else None

    # --- reading ----------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, fingerprint: RunFingerprint) -> ProgressManifest | None:
        """The manifest at `path` if it belongs to the run `fingerprint` names; None if there is none.

        Raises `ProgressError` for a file that is not a manifest of this version and `ResumeMismatchError` for one of
        another run, each saying what to pass instead (never to delete a file: it may be under read-only input/).
        """
        if not path.exists():
            return None
        manifest = cls.read(path)
        differ = fingerprint.differences(manifest.fingerprint)
        if differ:
            raise ResumeMismatchError(
                f"{path} holds progress of another run: {fingerprint.describe_differences(manifest.fingerprint)}; "
                "pass what that run was given to resume it, or restart=True to start over",
                differ,
            )
        return manifest

    @classmethod
    def read(cls, path: Path, advice: str = "pass restart=True to start its predictions over") -> ProgressManifest:
        """The manifest at `path`, whatever run it records: its format checked field by field; `ProgressError`
        naming the file when it is missing or not a manifest of this version, with `advice` (what `merge` reads
        shards with, advice of its own)."""
        delete = advice
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != VERSION:
                raise ProgressError(
                    f"{path} is a progress manifest of version {raw.get('version')!r}, this kaggle_kit writes "
                    f"{VERSION}" + (f"; {delete}" if delete else ""),
                    str(path),
                )
            manifest = cls(RunFingerprint.from_dict(_typed(raw, "fingerprint", dict)), _typed(raw, "total", int),
                           [_commit(c) for c in _typed(raw, "commits", list)], _skipped(raw))  # fmt: skip
        except ProgressError:
            raise
        except FileNotFoundError:
            raise ProgressError(f"{path} is missing", str(path)) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            said = f"{path} is not a readable progress manifest ({exc})"
            raise ProgressError(said + (f"; {delete}" if delete else ""), str(path)) from None
        return manifest

    def verified(self, file: Path) -> ProgressManifest:
        """This manifest cut back to the last commit that `file` still proves (reads `file` once)."""
        good = 0
        try:
            with open(file, "rb") as f:
                position = 0
                for commit in self.commits:
                    if commit.bytes < position or _digest(f, commit.bytes - position) != commit.sha256:
                        break
                    state = commit.sink_state
                    if state.get("bytes") != commit.bytes or state.get("sha256") != commit.sha256:
                        break  # a sink resumes from this state: it must be what the file proves, never a hand edit
                    position = commit.bytes
                    good += 1
        except FileNotFoundError:
            pass
        return self._cut(good)

    def resume(self, file: Path, path: Path) -> ProgressManifest:
        """Check `file` against this manifest, log what was found, and commit the verified record to `path`."""
        verified = self.verified(file)
        if verified.done == self.done:
            if self.complete and file.stat().st_size > self.commits[-1].bytes:
                log.warning("%s grew after the run completed: cutting it back to the committed %d bytes", file,
                            self.commits[-1].bytes)  # fmt: skip
                os.truncate(file, self.commits[-1].bytes)
            elif self.done:
                log.info("resuming predictions at item %d of %d (%s verified)", self.done, self.total, file)
            return self
        what = "is missing" if not file.exists() else "does not hold what the manifest recorded (cut or changed)"
        if verified.done:
            log.warning("%s %s: rewinding from item %d to %d, the last commit it still proves", file, what,
                        self.done, verified.done)  # fmt: skip
        else:
            log.warning("%s %s: starting its %d items over", file, what, self.total)
        verified.commit(path)
        return verified

    # --- writing ----------------------------------------------------------------------------------------------------

    def record(self, done: int, sink_state: dict[str, Any], skipped: Iterable[SkippedItem], content: str = "") -> None:
        """Add a commit: `done` items, the sink state `sink.commit()` returned, new unreadable items and the
        `content_digest` of the items it added."""
        self.skipped += list(skipped)
        self.commits.append(Commit(done, len(self.skipped), dict(sink_state), int(sink_state["bytes"]),
                                   str(sink_state["sha256"]), content))  # fmt: skip

    def content_checked(self, digest_of: Callable[[int, int], str], path: Path) -> ProgressManifest:
        """This manifest cut back to the last commit whose items still hold what they held when predicted
        (`digest_of(start, stop)`: the `content_digest` of the items at positions start..stop now); the cut record is
        committed to `path` and a warning says how many items are predicted again."""
        good, start = 0, 0
        for commit in self.commits:
            if commit.content and digest_of(start, commit.done) != commit.content:
                break
            good, start = good + 1, commit.done
        if good == len(self.commits):
            return self
        cut = self._cut(good)
        log.warning("%d item(s) from position %d hold other bytes than when they were predicted (same names, other "
                    "content: a new test set?): predicting them again", self.done - cut.done, cut.done)  # fmt: skip
        cut.commit(path)
        return cut

    def commit(self, path: Path) -> None:
        """Write the manifest atomically: the run's commit point, after the sink's bytes are durable."""
        atomic_write_json(path, {"version": VERSION, "fingerprint": self.fingerprint.as_dict(), "total": self.total,
                                 "done": self.done, "complete": self.complete,
                                 "skipped": [asdict(s) for s in self.skipped],
                                 "commits": [asdict(c) for c in self.commits]})  # fmt: skip
        record_event("commit", file=path.name, done=self.done)

    def _cut(self, n_commits: int) -> ProgressManifest:
        if n_commits == len(self.commits):
            return self
        commits = self.commits[:n_commits]
        skipped = self.skipped[: commits[-1].skipped] if commits else []
        return ProgressManifest(self.fingerprint, self.total, commits, skipped)


def _typed(raw: Any, key: str, kind: type) -> Any:
    """`raw[key]` if it is a `kind` (an int is never a bool or a float); a ValueError naming the field otherwise."""
    if not isinstance(raw, dict) or key not in raw:
        raise ValueError(f"no field {key!r}")
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
        raise ValueError(f"field {key!r} is {value!r}, not a {'non-negative int' if kind is int else kind.__name__}")
    return value


def _commit(raw: Any) -> Commit:
    """One commit read back, every field of its type (whether its sink state agrees is `verified`'s to check)."""
    content = raw.get("content", "") if isinstance(raw, dict) else ""
    if not isinstance(content, str):
        raise ValueError(f"field 'content' is {content!r:.40}, not a digest")
    return Commit(_typed(raw, "done", int), _typed(raw, "skipped", int), _typed(raw, "sink_state", dict),
                  _typed(raw, "bytes", int), _typed(raw, "sha256", str), content)  # fmt: skip


def _skipped(raw: dict) -> list[SkippedItem]:
    return [SkippedItem.from_dict(entry) for entry in _typed(raw, "skipped", list)]


def adopt_from_inputs(
    file: Path, manifest_path: Path, candidates: Iterable[Path], fingerprint: RunFingerprint
) -> ProgressManifest | None:
    """Continue from an earlier kernel's output: the furthest verified run of `fingerprint` among `candidates`.

    Each candidate is a folder that may hold ``file.name`` and its manifest (an attached input). The chosen file is
    copied into `file` (in place, so a lock on it holds) and its verified manifest committed to `manifest_path`.
    """
    best: tuple[ProgressManifest, Path] | None = None
    for folder in candidates:
        source = folder / file.name
        try:
            found = ProgressManifest.load(manifest_path_for(source), fingerprint)
        except KaggleKitError as exc:  # an input may hold another run's files: not this run's to resume
            log.info("not resuming from %s: %s", source, exc)
            continue
        if found is not None and (found := found.verified(source)).done and (best is None or found.done > best[0].done):
            best = (found, source)
    if best is None:
        return None
    manifest, source = best
    with open(source, "rb") as src, open(file, "r+b") as dst:
        dst.truncate(0)
        shutil.copyfileobj(src, dst, _BLOCK)
        dst.flush()
        os.fsync(dst.fileno())
    manifest.commit(manifest_path)
    fsync_dir(file.parent)
    log.info("continuing predictions from %s: %d of %d items already done", source, manifest.done, manifest.total)
    return manifest


def shard_problems(paths: list[Path]) -> list[str]:
    """Why the shard outputs `paths` (given in order 0..n-1) are not a complete set, per their progress manifests,
    each read by `ProgressManifest.read` and checked against its file: a shard whose progress cannot be verified (no
    manifest, a damaged one, a file that does not hold what it recorded) is a problem, as is an unfinished one."""
    problems = []
    first: tuple[Path, RunFingerprint] | None = None
    for i, path in enumerate(paths):
        if not path.exists():
            continue  # a missing shard file is merge's own one-line error
        try:
            manifest = ProgressManifest.read(manifest_path_for(path), advice="")
        except ProgressError as exc:
            problems.append(f"the progress of {path} cannot be verified ({exc})")
            continue
        alike = dataclasses.replace(manifest.fingerprint, shard=(0, 1))
        if first is None:
            first = (path, alike)
        elif alike != first[1]:  # other items, another model or other settings: rows that do not belong together
            problems.append(f"{path} is a shard of another run than {first[0]}: "
                            f"{alike.describe_differences(first[1])}")  # fmt: skip
        shard, n = manifest.fingerprint.shard
        if n != len(paths):
            problems.append(f"{path} is shard {shard} of {n}, but {len(paths)} shard(s) were given")
        elif shard != i:
            problems.append(f"{path} is shard {shard}, given as shard {i}")
        proved = manifest.verified(path).done
        if proved < manifest.total:
            problems.append(f"{path} is unfinished ({proved} of {manifest.total} items verified)")
    return problems


class SinkLock(ExclusiveLock):
    """An exclusive advisory lock on a sink's first file for one call (created empty if missing).

    ``with SinkLock(path): ...``; a second holder fails at once with `SinkBusyError` naming the holder's pid.
    """

    def __init__(self, path: Path):
        super().__init__(path, lambda who: f"{path} is being written by {who}; wait for it to finish or stop it "
                         "before predicting again", SinkBusyError)  # fmt: skip


def _digest(f, n_bytes: int) -> str | None:
    """SHA-256 of the next `n_bytes` of `f`, or None if the file ends first."""
    h = hashlib.sha256()
    while n_bytes > 0:
        block = f.read(min(_BLOCK, n_bytes))
        if not block:
            return None
        h.update(block)
        n_bytes -= len(block)
    return h.hexdigest()
