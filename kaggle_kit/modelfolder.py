"""A trained model as one verified folder: every file a prediction needs, and a manifest of their digests.

Train once, predict anywhere: a kernel that finished training writes its model as a folder (the final weights of
each stage, every setting that shapes prediction, the label ids, tuned rules and thresholds), which a later kernel
attaches (a previous run's output, or a dataset) and predicts from without training again. The manifest
(``model-manifest.json``: format version, kind, SHA-256 of every file, the settings) is written last and
atomically, so a folder with a manifest was complete when written. `ModelFolder.load` checks every file against it
and refuses, in one line naming the file, a missing file, a changed byte, a folder of another kind or a newer format.
The pipelines own their folders' contents (``imaterialist.model.FashionModel``, ``classifier.ClassifierModel``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.atomic import atomic_write_bytes, atomic_write_json, file_sha256, fsync_dir, remove_stale_temps
from kaggle_kit.errors import UsageError
from kaggle_kit.kernel import Kernel

__all__ = [
    "ModelFolder",
    "ModelFolderError",
    "MANIFEST_NAME",
    "FORMAT_VERSION",
    "find_model_folder",
    "trained_model",
    "carry_model",
]

MANIFEST_NAME = "model-manifest.json"
FORMAT_VERSION = 1


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
        atomic_write_json(path / MANIFEST_NAME, manifest)
        return cls(path, kind, json.loads(json.dumps(dict(settings))), digests)

    @classmethod
    def load(cls, path: str | os.PathLike, kind: str) -> ModelFolder:
        """The model folder at `path`, verified: every file listed is there with its digest, the kind is `kind`
        and the format one this kaggle_kit reads. Raises `ModelFolderError` naming the file otherwise."""
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
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFolderError(f"{manifest_path}: format {version!r} is newer than this kaggle_kit reads "
                                   f"({FORMAT_VERSION}); upgrade kaggle_kit", str(manifest_path))  # fmt: skip
        if manifest.get("kind") != kind:
            raise ModelFolderError(f"{manifest_path}: a {manifest.get('kind')!r} model, not {kind!r}",
                                   str(manifest_path))  # fmt: skip
        for name, digest in manifest["files"].items():
            file = path / str(name)
            if Path(str(name)).name != name:
                raise ModelFolderError(f"{manifest_path} names {name!r}, not a file in the folder", str(name))
            if not file.is_file():
                raise ModelFolderError(f"{file} is missing from the model folder", str(file))
            if file_sha256(file) != digest:
                raise ModelFolderError(f"{file} differs from the one the model was saved with (SHA-256 mismatch)",
                                       str(file))  # fmt: skip
        return cls(path, kind, dict(manifest.get("settings") or {}), dict(manifest["files"]))

    def file(self, name: str) -> Path:
        """The path of one of the model's files."""
        if name not in self.files:
            raise ModelFolderError(f"{self.path / MANIFEST_NAME} lists no {name}", name)
        return self.path / name

    def read_json(self, name: str) -> Any:
        """One of the model's JSON files, parsed (verified when loaded)."""
        return json.loads(self.file(name).read_text())


def trained_model(kernel: Kernel, name: str, model: str | os.PathLike | None = None, retrain: bool = False
                  ) -> tuple[Path | None, str]:  # fmt: skip
    """(the model folder a kernel should predict from, whose it is: "given", "attached" or "own"), or (None, "") to
    train. `name`: the folder's name (``imaterialist-model``). `model`: a kernel's "model" setting, an attached
    input's slug or a path (the folder itself, or one holding `name`). Without it, a finished model in working/ (a
    rerun of this kernel) or directly in an attached input (a previous run's output; carried into working/ by
    `carry_model`) is used unless `retrain`."""
    if model is not None:
        path = kernel.input_or_path(model)
        return (path / name if (path / name / MANIFEST_NAME).is_file() else path), "given"
    if retrain:
        return None, ""
    own = kernel.working_dir / name
    if (own / MANIFEST_NAME).is_file():
        remove_stale_temps(own / MANIFEST_NAME, r"[\w.-]+")  # this kernel's own output: litter a killed write left
        return own, "own"
    found = find_model_folder((path for _slug, path in kernel.inputs()), name)
    if found is None:
        return None, ""
    return carry_model(found, own), "attached"


def carry_model(source: Path, dest: Path) -> Path:
    """Copy the verified model folder `source` (an attached input's) to `dest` in this kernel's working dir and
    return `dest`: the kernel's output then holds the model too, as the next run of a chain and ``dataset push``
    need. The manifest is copied last, so a kill mid-copy leaves a folder that is not a model."""
    kind = json.loads((source / MANIFEST_NAME).read_text()).get("kind")
    folder = ModelFolder.load(source, str(kind))
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
