"""What the kernel has written to its working dir (files, bytes) and how much more the platform will keep.

Kaggle keeps at most `max_files` output files (500 on the product card) and `working_bytes` bytes of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kaggle_kit.atomic import atomic_open
from kaggle_kit.errors import OutputLimitError
from kaggle_kit.limits import KernelLimits

__all__ = ["OutputBudget", "OutputUsage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputUsage:
    """Files and bytes found under a working dir."""

    files: int
    bytes: int


class OutputBudget:
    """Counts the working dir's files and bytes against the kernel's limits and refuses writes that cross them.

    Hidden temp files of in-flight atomic writes count too: the platform sees whatever is on disk at the end.
    """

    def __init__(self, working_dir: str | os.PathLike, limits: KernelLimits | None = None):
        self.working_dir = Path(working_dir)
        self.limits = limits or KernelLimits.from_env()

    def usage(self) -> OutputUsage:
        """Count files (not directories) and their bytes under the working dir, following no symlinks."""
        files = size = 0
        if not self.working_dir.exists():
            return OutputUsage(0, 0)
        for dirpath, _dirnames, filenames in os.walk(self.working_dir):
            for name in filenames:
                files += 1
                with contextlib.suppress(OSError):  # removed while we walked
                    size += os.lstat(os.path.join(dirpath, name)).st_size
        return OutputUsage(files, size)

    def files_left(self) -> int:
        """How many more files fit before the file limit."""
        return self.limits.max_files - self.usage().files

    def bytes_left(self) -> int:
        """How many more bytes fit before the working-dir byte limit."""
        return self.limits.working_bytes - self.usage().bytes

    def check_new_files(self, n: int = 1, n_bytes: int = 0, what: str = "output") -> None:
        """Raise OutputLimitError if `n` more files (and `n_bytes` more bytes) would cross a limit."""
        used = self.usage()
        if used.files + n > self.limits.max_files:
            raise OutputLimitError(
                f"writing {n} more file(s) for {what} would make {used.files + n} files in {self.working_dir}, "
                f"over the kernel's limit of {self.limits.max_files}; write fewer files or pack a folder "
                f"with OutputBudget.pack()",
                used.files + n,
            )
        if n_bytes and used.bytes + n_bytes > self.limits.working_bytes:
            raise OutputLimitError(
                f"writing {n_bytes} more bytes for {what} would put {used.bytes + n_bytes} bytes in "
                f"{self.working_dir}, over the limit of {self.limits.working_bytes}",
                used.bytes + n_bytes,
            )

    def pack(self, folder: str | os.PathLike, archive: str | os.PathLike | None = None, *, remove: bool = True) -> Path:
        """Pack `folder` into one archive (".zip" or ".tar.gz", by the name) and, if `remove`, delete the folder.

        The archive is written atomically before anything is removed, so a kill leaves either the folder or both.
        Returns the archive's path (default: beside the folder, "<folder>.zip").
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise OutputLimitError(f"cannot pack {folder}: not a directory", str(folder))
        target = Path(archive) if archive else folder.with_name(folder.name + ".zip")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        with atomic_open(target, "wb") as raw:
            if target.name.endswith((".tar.gz", ".tgz")):
                with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                    for path in files:
                        tar.add(path, arcname=str(path.relative_to(folder)))
            else:
                with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                    for path in files:
                        zf.write(path, arcname=str(path.relative_to(folder)))
        log.info("packed %d files from %s into %s", len(files), folder, target)
        if remove:
            for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
            folder.rmdir()
        return target
