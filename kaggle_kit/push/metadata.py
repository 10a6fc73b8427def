"""kernel-metadata.json: read, complete with safe defaults, and validate with one line per problem."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from kaggle_kit.atomic import atomic_write_bytes
from kaggle_kit.errors import UsageError

__all__ = [
    "MetadataError", "load_metadata", "write_metadata", "validate_metadata", "check_kernel_ref", "METADATA_NAME",
    "ACCELERATORS", "uses_gpu",
]  # fmt: skip

log = logging.getLogger(__name__)

METADATA_NAME = "kernel-metadata.json"
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_OWNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # no leading dot: never "." or ".."
_BOOLS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")
_KNOWN = {"id", "id_no", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu", "enable_tpu",
          "enable_internet", "dataset_sources", "competition_sources", "kernel_sources", "model_sources",
          "machine_shape", "keywords", "docker_image", "docker_image_pinning_type"}  # fmt: skip


# machine_shape names kaggle-kit knows, with what a kernel gets (kaggle-cli PR #1198; the client's retired list)
ACCELERATORS = {
    "NvidiaTeslaT4": "GPU T4 x2 (two 16 GB T4s: fp16, both used only by a multi-process launch)",
    "TpuV5E8": "TPU v5e-8 (kaggle-kit's kernels are written for GPUs)",
}
_RETIRED = {
    "NvidiaTeslaP100": "retired: Kaggle runs it on NvidiaTeslaT4 instead, and the P100 fails on the image's torch "
    "(kaggle-cli #1151); ask for NvidiaTeslaT4",
    "TpuV38": "retired: Kaggle runs it on TpuV5E8 instead",
    "Tpu1VmV38": "retired: Kaggle runs it on TpuV5E8 instead",
}


class MetadataError(UsageError):
    """kernel-metadata.json is missing, not JSON, or breaks a rule Kaggle enforces; `value` lists the problems."""


def load_metadata(kernel_dir: str | os.PathLike) -> dict[str, Any]:
    """The kernel folder's metadata with defaults filled in (internet off: competitions require it; private)."""
    path = Path(kernel_dir) / METADATA_NAME
    try:
        meta = json.loads(path.read_text())
    except OSError:
        raise MetadataError(
            f"{path} not found; a kernel folder needs {METADATA_NAME} beside its script", str(path)
        ) from None
    except ValueError as exc:
        raise MetadataError(f"{path} is not JSON: {exc}", str(path)) from None
    if not isinstance(meta, dict):
        raise MetadataError(f"{path} must hold a JSON object", str(path))
    meta.setdefault("enable_internet", False)
    meta.setdefault("is_private", True)
    meta.setdefault("enable_gpu", False)
    for key in ("dataset_sources", "competition_sources", "kernel_sources", "model_sources"):
        meta.setdefault(key, [])
    return meta


def write_metadata(kernel_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write `meta` as the kernel folder's kernel-metadata.json (indented, atomic)."""
    path = Path(kernel_dir) / METADATA_NAME
    return atomic_write_bytes(path, (json.dumps(meta, indent=2) + "\n").encode())


def validate_metadata(meta: dict[str, Any], kernel_dir: str | os.PathLike) -> None:
    """Raise MetadataError listing every problem (one line each) before anything is sent to Kaggle."""
    problems = list(_problems(meta, Path(kernel_dir)))
    if problems:
        raise MetadataError(f"{Path(kernel_dir) / METADATA_NAME}: " + "; ".join(problems), problems)
    shape = meta.get("machine_shape")
    if shape in _RETIRED:
        log.warning("%s: machine_shape %s is %s", Path(kernel_dir) / METADATA_NAME, shape, _RETIRED[shape])
    elif shape is not None and shape not in ACCELERATORS:
        log.warning("%s: machine_shape %r is not one kaggle-kit knows (%s); Kaggle may refuse or replace it",
                    Path(kernel_dir) / METADATA_NAME, shape, ", ".join(ACCELERATORS))  # fmt: skip


def uses_gpu(meta: dict[str, Any]) -> bool:
    """True when the kernel asks for a GPU (`enable_gpu`, or a GPU `machine_shape`): its runs spend GPU quota."""
    shape = str(meta.get("machine_shape") or "")
    return meta.get("enable_gpu") is True or shape.startswith("Nvidia")


def check_kernel_ref(ref: str) -> str:
    """`ref` if it is a kernel's 'owner/kernel-slug' (no version, no path), else a one-line `UsageError` before any
    request is made."""
    owner, _, slug = str(ref).partition("/")
    if not _OWNER.match(owner) or not _SLUG.match(slug):
        raise UsageError(f"{ref!r} is not a kernel id: give owner/kernel-slug (lowercase letters, digits, hyphens), "
                         "e.g. your-name/my-fashion-kernel", ref)  # fmt: skip
    return ref


def slug_of(title: str) -> str:
    """The slug Kaggle derives from a title (the official client's python-slugify)."""
    from slugify import slugify

    return slugify(title)


def _problems(meta: dict[str, Any], kernel_dir: Path):
    unknown = sorted(set(meta) - _KNOWN)
    if unknown:
        yield f"unknown field(s) {', '.join(unknown)}"
    kernel_id = meta.get("id")
    owner, _, slug = str(kernel_id or "").partition("/")
    if not isinstance(kernel_id, str) or not _OWNER.match(owner) or not _SLUG.match(slug):
        yield f"id {kernel_id!r} must be 'owner/kernel-slug' (lowercase letters, digits, hyphens), without a version"
    title = meta.get("title")
    if not isinstance(title, str) or len(title) < 5:
        yield f"title {title!r} must have at least 5 characters"
    elif _SLUG.match(slug) and slug_of(title) != slug:
        yield f"title {title!r} becomes the slug {slug_of(title)!r}, not {slug!r}: make them match"
    code_file = meta.get("code_file")
    if not isinstance(code_file, str) or not code_file:
        yield "code_file is missing: name the kernel's script"
    elif not code_file.endswith(".py"):
        yield f"code_file {code_file!r} must be a Python script (.py)"
    elif not (kernel_dir / code_file).resolve().is_relative_to(kernel_dir.resolve()):
        yield f"code_file {code_file!r} must be inside {kernel_dir} (no absolute path, '..' or link out)"
    elif not (kernel_dir / code_file).is_file():
        yield f"code_file {code_file!r} does not exist in {kernel_dir}"
    if meta.get("language") != "python":
        yield f"language {meta.get('language')!r} must be 'python'"
    if meta.get("kernel_type") not in ("script", "notebook"):
        yield f"kernel_type {meta.get('kernel_type')!r} must be 'script' or 'notebook'"
    for key in _BOOLS:
        if key in meta and not isinstance(meta[key], bool):
            yield f"{key} {meta[key]!r} must be true or false"
    yield from _source_problems(meta, "dataset_sources", 2, "owner/dataset-slug")
    yield from _source_problems(meta, "kernel_sources", 2, "owner/kernel-slug")
    yield from _source_problems(meta, "competition_sources", 1, "competition-slug")
    yield from _source_problems(meta, "model_sources", 5, "owner/model/framework/variation/version")
    shape = meta.get("machine_shape")
    if shape is not None and not (isinstance(shape, str) and re.fullmatch(r"[A-Za-z0-9]+", shape)):
        yield f"machine_shape {shape!r} must be a name such as 'NvidiaTeslaT4'"


def _source_problems(meta, key, parts, form):
    sources = meta.get(key, [])
    if not isinstance(sources, list):
        yield f"{key} must be a list of '{form}'"
        return
    for source in sources:
        pieces = str(source).split("/")
        if not isinstance(source, str) or len(pieces) != parts or not all(pieces):
            yield f"{key} entry {source!r} must be '{form}'"
        elif parts < 5 and not all(_OWNER.match(p) for p in pieces):
            yield f"{key} entry {source!r} has characters Kaggle does not allow"
