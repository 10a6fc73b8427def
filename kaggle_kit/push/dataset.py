"""`kaggle-kit dataset push`: publish a folder (a trained model) as a Kaggle dataset with the official client.

Subfolders are kept: the client uploads each one as a zip (dir_mode "zip"), which Kaggle unpacks. The official CLI's
default (`--dir-mode skip`) silently drops them, the classic lost-weights trap. `dataset-metadata.json` is
validated before any request and written for the user when missing, as `init` writes kernel metadata. A folder
without a valid model manifest (``kaggle_kit.modelfolder``) is refused unless `any_folder`. Before any request:
- only the regular files inside the folder travel: a symbolic link, a credential's name or a file whose bytes hold
  the user's key or token is refused (``kaggle_kit.push.secrets``);
- the folder fits Kaggle's dataset limits: at most `DATASET_MAX_FILES` files (Kaggle's "The file count exceeds the
  maximum of 1000") and `DATASET_MAX_BYTES` in all (the private-dataset quota, "over 100 GB" since 2023; a dataset
  is pushed private), and no sparse file (a 20 GB file of holes would upload 20 GB of zeros);
- the id's owner and slug have Kaggle's shape, so no id can name a path.
Credentials are the client's own, as for push: never printed, never uploaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.atomic import atomic_write_json
from kaggle_kit.errors import UsageError
from kaggle_kit.limits import format_size
from kaggle_kit.modelfolder import MANIFEST_NAME, ModelFolder
from kaggle_kit.push import api as kaggle_api
from kaggle_kit.push.secrets import travelling_files

__all__ = [
    "push_dataset", "dataset_metadata", "check_dataset_ref", "DatasetPushResult", "DATASET_METADATA_NAME",
    "DATASET_MAX_FILES", "DATASET_MAX_BYTES",
]  # fmt: skip

log = logging.getLogger(__name__)

DATASET_METADATA_NAME = "dataset-metadata.json"
DATASET_MAX_FILES = 1000  # files in one version (Kaggle: "The file count exceeds the maximum of 1000")
DATASET_MAX_BYTES = 100 * 10**9  # bytes: the private-dataset quota (a pushed dataset is private)
_SPARSE_HOLES = 64 * 2**20  # bytes of holes that make a file "sparse" (a real weights file has none)
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{4,48}[a-z0-9]")  # Kaggle: 6 to 50 characters
_OWNER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,49}")  # a Kaggle user name: never ".", "..", "/" or empty


def check_dataset_ref(ref: object, where: str = "--id") -> str:
    """`ref` if it is 'owner/dataset-slug' as Kaggle spells one (owner: letters, digits, '-', '_'; slug: 6-50
    lowercase letters, digits, dashes), else a one-line `UsageError`: no id may name a path."""
    owner, _, slug = str(ref).partition("/")
    if not isinstance(ref, str) or not _OWNER.fullmatch(owner) or not _SLUG.fullmatch(slug):
        raise UsageError(f"{where}: id {ref!r} must be 'owner/dataset-slug' (owner: your Kaggle user name; slug: 6-50 "
                         "lowercase letters, digits, dashes)", ref)  # fmt: skip
    return ref


@dataclass(frozen=True)
class DatasetPushResult:
    """What Kaggle answered: the dataset's ref ("owner/slug"), its URL, and whether this push created it (version
    1) or added a version."""

    ref: str
    url: str
    created: bool


def dataset_metadata(folder: str | os.PathLike, dataset_id: str | None) -> dict[str, Any]:
    """The folder's dataset-metadata.json, checked; written first (private, CC0) when missing and `dataset_id`
    ("owner/slug") is given. One-line `UsageError` for anything Kaggle would refuse."""
    folder = Path(folder)
    path = folder / DATASET_METADATA_NAME
    if path.exists():
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: not readable JSON ({exc})", str(path)) from None
        if not isinstance(meta, dict):
            raise UsageError(f"{path}: must hold a JSON object", str(path))
        if dataset_id and meta.get("id") != dataset_id:
            raise UsageError(f"{path} has id {meta.get('id')!r}, not --id {dataset_id!r}; fix one of them", dataset_id)
    elif dataset_id:
        slug = check_dataset_ref(dataset_id).partition("/")[2]
        meta = {"title": slug.replace("-", " ")[:50], "id": dataset_id, "licenses": [{"name": "CC0-1.0"}]}
    else:
        raise UsageError(f"{path} is missing: give --id owner/dataset-slug and it is written for you", str(path))
    _check(meta, path)
    if not path.exists():
        atomic_write_json(path, meta)
    return meta


def push_dataset(folder: str | os.PathLike, dataset_id: str | None = None, message: str = "",
                 any_folder: bool = False, api=None, quiet: bool = False, max_bytes: int = DATASET_MAX_BYTES,
                 secrets: list[bytes] | None = None) -> DatasetPushResult:  # fmt: skip
    """Create the dataset from `folder`, or add a version (`message`: its notes) when it exists; subfolders kept.

    Everything in the module docstring is checked before the first request; `max_bytes` may lower the size limit
    (a rehearsal's local Kaggle keeps a real copy on this machine's disk); `secrets`: the user's key and tokens to
    look for (default: `user_secrets()` now; a rehearsal reads them before it swaps in throwaway credentials)."""
    folder = Path(folder)
    if dataset_id is not None:
        check_dataset_ref(dataset_id)
    if folder.is_symlink() or not folder.is_dir():
        raise UsageError(f"{folder} is not a folder" + (" (it is a symbolic link: give the folder itself)"
                                                         if folder.is_symlink() else ""), str(folder))  # fmt: skip
    travelling_files(folder, secrets, before_reading=lambda files: _check_size(folder, files, max_bytes))
    if not any_folder:
        _check_model(folder)
    meta = dataset_metadata(folder, dataset_id)
    ref = meta["id"]
    api = api or kaggle_api.client()
    try:
        exists = _exists(api, ref)
        if exists:
            response = api.dataset_create_version(str(folder), message or "new version", quiet=quiet, dir_mode="zip")
        else:
            response = api.dataset_create_new(str(folder), public=False, quiet=quiet, dir_mode="zip")
    except Exception as exc:  # the client raises ValueError / HTTPError with Kaggle's message
        raise kaggle_api.KaggleApiError(f"dataset push of {folder} failed: {exc}", str(folder)) from None
    if getattr(response, "error", None):
        raise kaggle_api.KaggleApiError(f"Kaggle refused the dataset {ref}: {response.error}", response.error)
    return DatasetPushResult(ref, getattr(response, "url", "") or f"https://www.kaggle.com/datasets/{ref}",
                             not exists)  # fmt: skip


def _exists(api, ref: str) -> bool:
    from requests.exceptions import HTTPError

    try:
        api.dataset_status(ref)
    except HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return False
        raise
    return True


def _check_model(folder: Path) -> None:
    if not (folder / MANIFEST_NAME).is_file():
        raise UsageError(f"{folder} has no {MANIFEST_NAME}: not a trained model folder (pass --any to publish any "
                         "folder)", str(folder))  # fmt: skip
    ModelFolder.load(folder)  # every file present, byte for byte, or one line naming the one that is not


def _check_size(folder: Path, files: list[Path], max_bytes: int) -> None:
    if len(files) > DATASET_MAX_FILES:
        raise UsageError(f"{folder} holds {len(files)} files: a Kaggle dataset version takes at most "
                         f"{DATASET_MAX_FILES}; zip small files together", len(files))  # fmt: skip
    total = 0
    for path in files:
        st = path.stat()
        holes = st.st_size - st.st_blocks * 512
        if holes > _SPARSE_HOLES and holes > st.st_size // 2:
            raise UsageError(f"{path} is a sparse file ({format_size(st.st_size)} long, "
                             f"{format_size(st.st_blocks * 512)} on disk): it would upload {format_size(holes)} of "
                             "zeros; write the real data, or leave it out", str(path))  # fmt: skip
        total += st.st_size
    if total > max_bytes:
        raise UsageError(f"{folder} holds {format_size(total)}: more than the {format_size(max_bytes)} a dataset push "
                         "may send (Kaggle's private-dataset quota, or the local Kaggle's free disk); publish less",
                         total)  # fmt: skip


def _check(meta: dict[str, Any], path: Path) -> None:
    check_dataset_ref(meta.get("id"), str(path))
    title = meta.get("title")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        raise UsageError(f"{path}: title {title!r} must have 6 to 50 characters", title)
    licenses = meta.get("licenses")
    if not (isinstance(licenses, list) and len(licenses) == 1 and isinstance(licenses[0], dict)
            and licenses[0].get("name")):  # fmt: skip
        raise UsageError(f'{path}: licenses must be exactly one, e.g. [{{"name": "CC0-1.0"}}]', licenses)
    resources = meta.get("resources", [])
    folder = path.parent
    if not (isinstance(resources, list) and all(isinstance(r, dict) and isinstance(r.get("path"), str)
                                                for r in resources)):  # fmt: skip
        raise UsageError(f'{path}: resources must be a list of objects with a "path", e.g. [{{"path": "weights.pth", '
                         f'"description": "..."}}], not {resources!r:.60}', resources)  # fmt: skip
    for resource in resources:
        named = (folder / resource["path"]).resolve()
        if not named.is_relative_to(folder.resolve()) or not named.exists():
            raise UsageError(f"{path}: resources names {resource['path']!r}, which is not in {folder}", resource)
    for key in ("subtitle", "description"):
        if key in meta and not isinstance(meta[key], str):
            raise UsageError(f"{path}: {key} must be a string, not {meta[key]!r:.60}", meta[key])
    if "keywords" in meta and not (isinstance(meta["keywords"], list)
                                   and all(isinstance(k, str) for k in meta["keywords"])):  # fmt: skip
        raise UsageError(f"{path}: keywords must be a list of strings", meta["keywords"])
