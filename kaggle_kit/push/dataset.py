"""`kaggle-kit dataset push`: publish a folder (a trained model) as a Kaggle dataset with the official client.

Subfolders are kept: the client uploads each one as a zip (dir_mode "zip"), which Kaggle unpacks. The official CLI's
default (`--dir-mode skip`) silently drops them, the classic lost-weights trap. `dataset-metadata.json` is
validated before any request and written for the user when missing, as `init` writes kernel metadata. A folder
without a valid model manifest (``kaggle_kit.modelfolder``) is refused unless `any_folder`, and so is a folder
holding a credential file. Credentials are the client's own, as for push: never printed, never uploaded.
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
from kaggle_kit.modelfolder import MANIFEST_NAME, ModelFolder
from kaggle_kit.push import api as kaggle_api

__all__ = ["push_dataset", "dataset_metadata", "DatasetPushResult", "DATASET_METADATA_NAME"]

log = logging.getLogger(__name__)

DATASET_METADATA_NAME = "dataset-metadata.json"
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{4,48}[a-z0-9]")  # Kaggle: 6 to 50 characters
_SECRETS = {"kaggle.json", "access_token", ".env", "credentials.json"}


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
        slug = dataset_id.partition("/")[2]
        meta = {"title": slug.replace("-", " ")[:50], "id": dataset_id, "licenses": [{"name": "CC0-1.0"}]}
    else:
        raise UsageError(f"{path} is missing: give --id owner/dataset-slug and it is written for you", str(path))
    _check(meta, path)
    if not path.exists():
        atomic_write_json(path, meta)
    return meta


def push_dataset(folder: str | os.PathLike, dataset_id: str | None = None, message: str = "",
                 any_folder: bool = False, api=None, quiet: bool = False) -> DatasetPushResult:  # fmt: skip
    """Create the dataset from `folder`, or add a version (`message`: its notes) when it exists; subfolders kept."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder", str(folder))
    secrets = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name in _SECRETS)
    if secrets:
        raise UsageError(f"{folder} holds {', '.join(secrets)}: a credential never travels; move it out", secrets)
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
    manifest = folder / MANIFEST_NAME
    try:
        kind = json.loads(manifest.read_text()).get("kind")
    except FileNotFoundError:
        raise UsageError(f"{folder} has no {MANIFEST_NAME}: not a trained model folder (pass --any to publish any "
                         "folder)", str(folder)) from None  # fmt: skip
    except (OSError, ValueError, AttributeError) as exc:
        raise UsageError(f"{manifest} cannot be read as a model manifest ({exc})", str(manifest)) from None
    ModelFolder.load(folder, str(kind))  # every file present, byte for byte, or one line naming the one that is not


def _check(meta: dict[str, Any], path: Path) -> None:
    ref = meta.get("id")
    owner, _, slug = str(ref).partition("/")
    if not isinstance(ref, str) or not owner or not _SLUG.fullmatch(slug):
        raise UsageError(f"{path}: id {ref!r} must be 'owner/dataset-slug' (slug: 6-50 lowercase letters, digits, "
                         "dashes)", ref)  # fmt: skip
    title = meta.get("title")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        raise UsageError(f"{path}: title {title!r} must have 6 to 50 characters", title)
    licenses = meta.get("licenses")
    if not (isinstance(licenses, list) and len(licenses) == 1 and isinstance(licenses[0], dict)
            and licenses[0].get("name")):  # fmt: skip
        raise UsageError(f'{path}: licenses must be exactly one, e.g. [{{"name": "CC0-1.0"}}]', licenses)
