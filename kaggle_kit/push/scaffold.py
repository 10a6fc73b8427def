"""`kaggle-kit init`: a new kernel folder (script + kernel-metadata.json) ready to rehearse, bundle and push.

The metadata's id is `<your Kaggle user name>/<folder name as a slug>` when the Kaggle credentials name the user
(KAGGLE_USERNAME, or kaggle.json in KAGGLE_CONFIG_DIR or ~/.kaggle); otherwise the placeholder owner, which `push`
refuses with a hint, so nothing is ever pushed under a made-up name.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from kaggle_kit.errors import UsageError
from kaggle_kit.push.metadata import load_metadata, write_metadata

__all__ = ["init_kernel", "kaggle_username", "KINDS", "PLACEHOLDER_OWNER"]

PLACEHOLDER_OWNER = "your-kaggle-username"
KINDS = {  # kind -> the kernels/ folder it starts from (None: the blank script below)
    "imaterialist": "imaterialist-fashion-2019",
    "classification": "image-classification",
    "imaterialist-predict": "imaterialist-predict",  # inference only: the model attached as a dataset
    "classification-predict": "classification-predict",
    "blank": None,
}

BLANK_SCRIPT = '''"""A kaggle-kit kernel. Settings first (a typo costs a second), heavy imports after.

Rehearse it locally under Kaggle's limits:  kaggle-kit run-local . --input SLUG=path/to/data
Push it (kaggle_kit bundled, internet off):  kaggle-kit push .
"""

import sys

import kaggle_kit as kk

SETTINGS = {
    "input": None,  # the slug of the attached dataset or competition to read
}
try:
    settings = kk.load_settings(SETTINGS)
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")

kernel = kk.Kernel.current()
inputs = sorted(p.name for p in kernel.input_dir.iterdir()) if kernel.input_dir.is_dir() else []
print(f"kernel: working in {kernel.working_dir}; inputs: {inputs}")
# train under kk.Deadline (checkpoints before the time limit), predict with kk.stream_predict (bounded RAM),
# then kk.mark_done(...) so that `kaggle-kit chain` knows the job is finished
kk.mark_done()
'''


def kaggle_username(environ: dict | None = None) -> str | None:
    """The user name the Kaggle credentials give (KAGGLE_USERNAME, then kaggle.json's "username"), or None."""
    env = os.environ if environ is None else environ
    if env.get("KAGGLE_USERNAME"):
        return env["KAGGLE_USERNAME"]
    kaggle_json = Path(env.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle") / "kaggle.json"
    try:
        name = json.loads(kaggle_json.read_text()).get("username")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


def init_kernel(dest: str | os.PathLike, kind: str, kernels_dir: Path, environ: dict | None = None) -> dict:
    """Write a kernel folder at `dest` (new or empty) from `kind` (see KINDS); returns its metadata."""
    if kind not in KINDS:
        raise UsageError(f"--kind {kind!r}: use one of {', '.join(KINDS)}", kind)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not an empty folder; choose a new one", str(dest))
    slug = re.sub(r"[^a-z0-9]+", "-", dest.resolve().name.lower()).strip("-")
    if len(slug) < 5:
        raise UsageError(f"{dest.name!r}: name the folder with at least 5 letters or digits (it becomes the slug)",
                         str(dest))  # fmt: skip
    owner = kaggle_username(environ) or PLACEHOLDER_OWNER
    source = KINDS[kind]
    if source is None:
        meta = {"code_file": "kernel.py", "language": "python", "kernel_type": "script", "is_private": True,
                "enable_gpu": False, "enable_internet": False, "dataset_sources": [], "competition_sources": [],
                "kernel_sources": []}  # fmt: skip
        script = BLANK_SCRIPT
    else:
        meta = load_metadata(kernels_dir / source)
        script = (kernels_dir / source / meta["code_file"]).read_text()
        # the datasets the script reads (its "input", the model it predicts from): under the user's own name, so
        # the metadata attaches what the script looks for; rename both together for another dataset
        meta["dataset_sources"] = [s.replace(f"{PLACEHOLDER_OWNER}/", f"{owner}/", 1)
                                   for s in meta.get("dataset_sources", [])]  # fmt: skip
    meta["id"] = f"{owner}/{slug}"
    meta["title"] = slug.replace("-", " ")  # Kaggle derives the slug from the title: they must agree
    dest.mkdir(parents=True, exist_ok=True)
    (dest / meta["code_file"]).write_text(script)
    write_metadata(dest, meta)
    return meta
