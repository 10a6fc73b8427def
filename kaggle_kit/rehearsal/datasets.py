"""The datasets of a `LocalKaggle`: what the official client's dataset push asks, answered, and each version kept.

The client asks whether the dataset exists (GetDatasetStatus), starts one blob upload per file (StartBlobUpload:
a token and a URL), PUTs the bytes to that URL, then creates the dataset (CreateDataset) or a version of it
(CreateDatasetVersion) from the tokens. A version becomes a folder, ``<root>/<owner>/<slug>/<n>/``, which kernels
pushed with that dataset in `dataset_sources` get under ``/kaggle/input/datasets/<owner>/<slug>``. As Kaggle does
with the archives the client makes of subfolders (dir_mode "zip"), an uploaded ``.zip`` is unpacked into a folder
of its name: the subfolders arrive.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
import zipfile
from pathlib import Path
from typing import IO, Any

from kaggle_kit.atomic import atomic_write_json
from kaggle_kit.errors import UsageError
from kaggle_kit.push.dataset import check_dataset_ref

__all__ = ["LocalDatasets", "DATASET_METHODS"]

DATASET_METHODS = ("GetDatasetStatus", "StartBlobUpload", "CreateDataset", "CreateDatasetVersion")


class LocalDatasets:
    """The datasets pushed to a local Kaggle, kept under `root` (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._uploads = self.root / ".uploads"
        self._lock = threading.Lock()

    def latest(self, ref: str) -> Path | None:
        """The folder of the newest version of the dataset `ref` ("owner/slug"), or None."""
        versions = self._versions(ref)
        return versions[-1] if versions else None

    def answer(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP code, JSON answer) for one of `DATASET_METHODS`."""
        if method == "GetDatasetStatus":
            ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
            if self.latest(ref) is None:
                return 404, {"code": 404, "message": f"Dataset {ref} not found"}
            return 200, {"status": "ready"}
        if method == "StartBlobUpload":
            token = uuid.uuid4().hex
            self._uploads.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self._uploads / f"{token}.json", {"name": Path(str(body.get("name"))).name})
            return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}
        if method == "CreateDataset":
            ref = f"{body.get('ownerSlug')}/{body.get('slug')}"
            if not _valid(ref):
                return 400, {"code": 400, "message": f"The dataset id {ref!r} is not valid"}
            if self.latest(ref) is not None:
                return 200, {"status": "error", "error": f"The dataset {ref} already exists"}
            return 200, self._version(ref, body.get("files") or [])
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if not _valid(ref) or self.latest(ref) is None:
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}
        return 200, self._version(ref, (body.get("body") or {}).get("files") or [])

    def receive(self, token: str, stream: IO[bytes], length: int) -> bool:
        """Store the bytes of one started upload; False for a token no upload was started with."""
        if not token.isalnum() or not (self._uploads / f"{token}.json").is_file():
            return False
        with open(self._uploads / f"{token}.bin", "wb") as out:
            remaining = length
            while remaining > 0:
                block = stream.read(min(remaining, 1 << 20))
                if not block:
                    break
                out.write(block)
                remaining -= len(block)
        return True

    def _version(self, ref: str, files: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            number = len(self._versions(ref)) + 1
            folder = self.root / ref / str(number)
            staging = folder.with_name(f".{number}.incoming")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for entry in files:
                token = str(entry.get("token", ""))
                info, data = self._uploads / f"{token}.json", self._uploads / f"{token}.bin"
                if not token.isalnum() or not data.is_file():
                    return {"status": "error", "error": f"upload {token!r} was never received"}
                name = json.loads(info.read_text())["name"]
                if name.endswith(".zip"):  # a subfolder the client archived: Kaggle unpacks it
                    with zipfile.ZipFile(data) as archive:
                        _extract(archive, staging / name[:-4])
                else:
                    shutil.copyfile(data, staging / name)
            staging.rename(folder)  # a version appears whole or not at all
        return {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok", "versionNumber": number}

    def _versions(self, ref: str) -> list[Path]:
        if not _valid(ref):  # never a path: whatever a request names, nothing outside root is read or written
            return []
        base = self.root / ref
        if not base.is_dir():
            return []
        return sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def _valid(ref: str) -> bool:
    try:
        check_dataset_ref(ref)
    except UsageError:
        return False
    return True


def _extract(archive: zipfile.ZipFile, dest: Path) -> None:
    """Unpack `archive` into `dest`, refusing any member that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    for member in archive.infolist():
        target = (dest / member.filename).resolve()
        if not target.is_relative_to(dest.resolve()):
            raise ValueError(f"archive member {member.filename!r} escapes its folder")
        archive.extract(member, dest)
