"""The kernel scripts the kit ships (``kernels/`` of the repository): what ``kaggle-kit init`` starts a kernel
from and what the demos run. They travel inside the package as ``kaggle_kit.kernels``, so a pip-installed kit has
them as a clone does.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from kaggle_kit.errors import KernelLayoutError

__all__ = ["kernels_dir"]


def kernels_dir() -> Path:
    """The folder holding the shipped kernels (one sub-folder each: ``kernel.py`` and ``kernel-metadata.json``)."""
    try:
        path = Path(str(resources.files("kaggle_kit.kernels")))
    except ModuleNotFoundError:  # an install made before the kernels travelled with the package: a clone's folder
        path = Path(__file__).resolve().parents[1] / "kernels"
    if not (path / "imaterialist-fashion-2019" / "kernel.py").is_file():
        raise KernelLayoutError(f"the kit's kernels are not in {path}: reinstall kaggle-kit (pip install kaggle-kit, "
                                "or pip install -e . in a clone)", str(path))  # fmt: skip
    return path
