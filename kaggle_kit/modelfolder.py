"""A trained model as one verified folder: every file a prediction needs, and a manifest of their digests.

Train once, predict anywhere: a kernel that finished training writes its model as a folder (the final weights of
each stage, every setting that shapes prediction, the label ids, tuned rules and thresholds), which a later kernel
attaches (a previous run's output, or a dataset) and predicts from without training again. The manifest
(``model-manifest.json``: format version, kind, SHA-256 of every file, the settings, and a SHA-256 over all of these)
is written last and atomically, so a folder with a manifest was complete when written. `ModelFolder.load` checks
every file against it and refuses, in one line naming the file, a missing file, a changed byte, a manifest edited
by hand (its settings are under its own digest: a swapped `vocab` would flip every label), a folder of another kind
or a format this kaggle_kit does not read. A kernel that finds a model (`trained_model`) whose settings differ from
its own refuses it in one line naming them, rather than predicting from a model its settings do not describe.
The pipelines own their folders' contents (``imaterialist.model.FashionModel``, ``classifier.ClassifierModel``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.atomic import atomic_write_bytes, atomic_write_json, file_sha256, fsync_dir, remove_stale_temps
from kaggle_kit.errors import UsageError
from kaggle_kit.kernel import Kernel
from kaggle_kit.launch import other_rank

__all__ = [
    "ModelFolder",
    "submit",
    "load_weights",
    "is_count",
    "is_text",
    "is_flag",
    "ModelFolderError",
    "MANIFEST_NAME",
    "FORMAT_VERSION",
    "find_model_folder",
    "trained_model",
    "carry_model",
    "carry_reports",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "model-manifest.json"
FORMAT_VERSION = 2  # 2: the manifest carries a digest over its own content (1 had none: read, with a warning)


class ModelFolderError(UsageError):
    """A model folder that cannot be used as it is: the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class ModelFolder:
    """A verified model folder: its `path`, `kind` ("imaterialist", "classification"), the `settings` that shape
    prediction and the SHA-256 of each file (`files`)."""

    path: Path
    kind: str
    settings: dict[str, Any]
    files: dict[str, str]

    @classmethod
    def write(cls, path: str | os.PathLike, kind: str, files: Mapping[str, bytes], settings: Mapping[str, Any]
              ) -> ModelFolder:  # fmt: skip
        """Write `files` ({name: bytes}) into `path`, each atomically, then the manifest last. While it is written
        the folder has no manifest, so a kill in between leaves a folder `load` refuses, never a mixed one."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / MANIFEST_NAME).unlink(missing_ok=True)
        fsync_dir(path)
        digests = {}
        for name, data in files.items():
            if Path(name).name != name or name == MANIFEST_NAME:
                raise ModelFolderError(f"model file name {name!r} must be a plain file name", name)
            remove_stale_temps(path / name)  # what a kill inside an earlier write left
            atomic_write_bytes(path / name, data)
            digests[name] = hashlib.sha256(data).hexdigest()
        manifest = {"format": FORMAT_VERSION, "kind": kind, "files": digests, "settings": dict(settings)}
        manifest = json.loads(json.dumps(manifest))  # as `load` will read it back: int keys as strings, tuples lists
        manifest["digest"] = _manifest_digest(manifest)
        atomic_write_json(path / MANIFEST_NAME, manifest)
        return cls(path, kind, json.loads(json.dumps(dict(settings))), digests)

    @classmethod
    def load(cls, path: str | os.PathLike, kind: str | None = None) -> ModelFolder:
        """The model folder at `path`, verified: every file listed is there with its digest, the kind is `kind`
        (None: any) and the format one this kaggle_kit reads. Raises `ModelFolderError` naming the file otherwise."""
        path = Path(path)
        manifest_path = path / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise ModelFolderError(f"{manifest_path} is missing: {path} is not a finished model folder (a kernel "
                                   "writes it last, when training is done)", str(manifest_path)) from None  # fmt: skip
        except (OSError, ValueError) as exc:
            raise ModelFolderError(f"{manifest_path} cannot be read as a model manifest ({exc})",
                                   str(manifest_path)) from None  # fmt: skip
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ModelFolderError(f"{manifest_path} is not a model manifest", str(manifest_path))
        version = manifest.get("format")
        if type(version) is not int or version < 1:  # never a bool, a string or 0
            raise ModelFolderError(f"{manifest_path}: format {version!r} is not a model format (a whole number from "
                                   "1); the manifest was damaged or edited", str(manifest_path))  # fmt: skip
        if version > FORMAT_VERSION:
            raise ModelFolderError(f"{manifest_path}: format {version!r} is newer than this kaggle_kit reads "
                                   f"({FORMAT_VERSION}); upgrade kaggle_kit", str(manifest_path))  # fmt: skip
        if version >= 2 and manifest.get("digest") != _manifest_digest(manifest):
            raise ModelFolderError(f"{manifest_path} was edited after it was written (its digest does not match its "
                                   "settings and files); write the model again, or restore the manifest",
                                   str(manifest_path))  # fmt: skip
        if version == 1:
            log.warning("%s is format 1: its settings are under no digest (a hand edit cannot be told); save the "
                        "model again with this kaggle_kit to protect them", manifest_path)  # fmt: skip
        if not isinstance(manifest.get("settings", {}), dict):
            raise ModelFolderError(f"{manifest_path}: settings must be an object, not {manifest['settings']!r:.60}",
                                   str(manifest_path))  # fmt: skip
        if not isinstance(manifest.get("kind"), str) or (kind is not None and manifest["kind"] != kind):
            what = f"a {manifest.get('kind')!r} model, not {kind!r}" if kind else "names no kind of model"
            raise ModelFolderError(f"{manifest_path}: {what}", str(manifest_path))
        for name, digest in manifest["files"].items():
            file = path / str(name)
            if Path(str(name)).name != name:
                raise ModelFolderError(f"{manifest_path} names {name!r}, not a file in the folder", str(name))
            if not file.is_file():
                raise ModelFolderError(f"{file} is missing from the model folder", str(file))
            if file_sha256(file) != digest:
                raise ModelFolderError(f"{file} differs from the one the model was saved with (SHA-256 mismatch)",
                                       str(file))  # fmt: skip
        return cls(path, manifest["kind"], dict(manifest.get("settings") or {}), dict(manifest["files"]))

    def check_settings(self, spec: Mapping[str, Callable[[Any], bool] | tuple[Callable[[Any], bool], str]]) -> None:
        """Refuse (one line naming the manifest and the setting) a setting that is missing or of the wrong type or
        range. `spec`: {name: check} or {name: (check, what it must be)}."""
        where = self.path / MANIFEST_NAME
        for name, rule in spec.items():
            check, expected = rule if isinstance(rule, tuple) else (rule, "")
            if name not in self.settings:
                raise ModelFolderError(f"{where}: settings lack {name}", name)
            value = self.settings[name]
            try:
                ok = bool(check(value))
            except (TypeError, ValueError, IndexError, KeyError):
                ok = False
            if not ok:
                raise ModelFolderError(f"{where}: setting {name}={value!r:.80} is not {expected or 'valid'}", name)

    def differing(self, expected: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """{setting: (the model's value, the expected one)} for each setting of `expected` the model has otherwise
        (values compared as JSON: a tuple and a list of the same items are the same)."""
        found = {}
        for name, value in expected.items():
            mine = self.settings.get(name)
            if json.dumps(mine, sort_keys=True) != json.dumps(value, sort_keys=True, default=str):
                found[name] = (mine, value)
        return found

    def file(self, name: str) -> Path:
        """The path of one of the model's files."""
        if name not in self.files:
            raise ModelFolderError(f"{self.path / MANIFEST_NAME} lists no {name}", name)
        return self.path / name

    def read_json(self, name: str) -> Any:
        """One of the model's JSON files, parsed (verified when loaded)."""
        return json.loads(self.file(name).read_text())


def is_count(value: Any) -> bool:
    """A positive whole number (never a bool): sizes, batch sizes, k."""
    return type(value) is int and value > 0


def is_text(value: Any) -> bool:
    """A non-empty string."""
    return isinstance(value, str) and bool(value)


def is_flag(value: Any) -> bool:
    """A JSON boolean."""
    return type(value) is bool


def load_weights(model: Any, path: Path) -> None:
    """Load a state dict saved by ``torch.save`` at `path` into `model` (weights only); one-line `ModelFolderError`
    for a file that is not a torch file or holds another architecture's shapes."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a state dict")
        model.load_state_dict(state)
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelFolderError(f"{path} does not load into the model its settings describe ({first})",
                               str(path)) from None  # fmt: skip


def trained_model(kernel: Kernel, name: str, model: str | os.PathLike | None = None, retrain: bool = False,
                  expected: Mapping[str, Any] | None = None) -> tuple[Path | None, str]:  # fmt: skip
    """(the model folder a kernel should predict from, whose it is: "given", "attached" or "own"), or (None, "") to
    train. `name`: the folder's name (``imaterialist-model``). `model`: a kernel's "model" setting, an attached
    input's slug or a path (the folder itself, or one holding `name`): predicted from as it is. Without it, a
    finished model in working/ (a rerun of this kernel) or directly in an attached input (a previous run's output;
    carried into working/ by `carry_model`) is used unless `retrain`, and only if its settings are the kernel's
    `expected` prediction settings: a model found that its settings no longer describe is refused in one line naming
    what differs, with the two ways out (retrain, or name the model to predict from it as it is)."""
    if model is not None:
        path = kernel.input_or_path(model)
        return (path / name if (path / name / MANIFEST_NAME).is_file() else path), "given"
    if retrain:
        return None, ""
    own = kernel.working_dir / name
    if (own / MANIFEST_NAME).is_file():
        remove_stale_temps(own / MANIFEST_NAME, r"[\w.-]+")  # this kernel's own output: litter a killed write left
        _check_expected(own, expected, "this kernel's own model")
        return own, "own"
    found = find_model_folder((path for _slug, path in kernel.inputs()), name)
    if found is None:
        return None, ""
    _check_expected(found, expected, "the attached model")
    if other_rank():  # rank 0 carries it on; the other ranks of a launch read it where it is
        return found, "attached"
    carried = carry_model(found, own)
    carry_reports(found.parent, kernel.working_dir)
    return carried, "attached"


def submit(model: Any, model_dir: Path, test_files: list[Path], whose: str = "own", path: str = "submission.csv",
           **predict: Any) -> Any:  # fmt: skip
    """Stream the submission for `test_files` from a loaded `model` (``ClassifierModel``, ``FashionModel``: anything
    with ``predict(test_files, path, **predict)``), then, when every test image has its rows, mark the kernel done,
    saying which model it came from (`whose`: "own", "given" or "attached", as ``trained_model`` says). Returns the
    prediction summary; an incomplete one leaves the status needs-resume for the next run."""
    from kaggle_kit.status import mark_done

    summary = model.predict(test_files, path, **predict)
    if summary.complete:
        source = {"own": "this kernel's own model"}.get(whose, f"the {whose} model")
        mark_done(submission=path, model=str(model_dir), predicted_from=source)
        log.info("%s written for %d test images (%d unreadable) from %s", path, summary.done, len(summary.skipped),
                 model_dir)  # fmt: skip
    return summary


def carry_reports(source: Path, dest: Path) -> list[Path]:
    """Copy the pictures and reports of the run that trained (``*.png``, ``*report*.json`` directly in its output
    `source`) into this kernel's output `dest`, where they are not already: a chain's last run only predicts, and
    its output should still show how the model did. Each copy is atomic; returns the copies."""
    copied = []
    for path in sorted(source.iterdir()) if source.is_dir() else []:
        wanted = path.suffix == ".png" or (path.suffix == ".json" and "report" in path.name)
        if wanted and path.is_file() and not path.is_symlink() and not (dest / path.name).exists():
            atomic_write_bytes(dest / path.name, path.read_bytes())
            copied.append(dest / path.name)
    return copied


def _check_expected(path: Path, expected: Mapping[str, Any] | None, whose: str) -> None:
    if not expected:
        return
    differs = ModelFolder.load(path).differing(expected)
    if differs:
        said = ", ".join(f"{k} {old!r:.40} (now {new!r:.40})" for k, (old, new) in differs.items())
        raise ModelFolderError(f"{whose} {path} was trained with other prediction settings: {said}; set "
                               f'"retrain": true to train with the new ones, or "model": "{path}" (or its input\'s '
                               "slug) to predict from it as it is", sorted(differs))  # fmt: skip


def carry_model(source: Path, dest: Path) -> Path:
    """Copy the verified model folder `source` (an attached input's) to `dest` in this kernel's working dir and
    return `dest`: the kernel's output then holds the model too, as the next run of a chain and ``dataset push``
    need. The manifest is copied last, so a kill mid-copy leaves a folder that is not a model."""
    folder = ModelFolder.load(source)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST_NAME).unlink(missing_ok=True)
    for file_name in folder.files:
        shutil.copyfile(source / file_name, dest / file_name)
    shutil.copyfile(source / MANIFEST_NAME, dest / MANIFEST_NAME)
    fsync_dir(dest)
    return dest


def find_model_folder(roots: Iterable[Path], name: str) -> Path | None:
    """The first folder named `name` holding a manifest, directly in one of `roots` (attached inputs): where a
    kernel finds a model a previous run wrote."""
    for root in roots:
        candidate = Path(root) / name
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    return None


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 over the manifest's content (everything but the digest itself), as canonical JSON."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
