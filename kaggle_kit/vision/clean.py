"""Image clean-up before training: find files that would break a 9-hour run, convert what can be, quarantine the rest.

Problems found: zero-byte files, truncated or undecodable images, content whose real format differs from its
extension (a PNG saved as .jpg), CMYK, palette, 16-bit and alpha images, and images too large to decode safely (a
decompression-bomb sized header). Convertible ones are rewritten in place as RGB (JPEG for .jpg/.jpeg names),
atomically; the others move to a quarantine folder keeping their relative paths. Nothing is deleted unless asked.
Files are checked in parallel processes, streamed from the directory walk, with a progress bar.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kaggle_kit.atomic import atomic_open, atomic_write_json
from kaggle_kit.errors import KaggleKitError

__all__ = ["clean_images", "inspect_image", "CleanReport", "IMAGE_EXTENSIONS", "DEFAULT_MAX_PIXELS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF",
                    ".tiff": "TIFF", ".webp": "WEBP"}  # fmt: skip
DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own bomb warning threshold
_CONVERTIBLE = {"wrong format", "cmyk", "palette", "16-bit", "alpha"}
_UNUSABLE = {"zero bytes", "undecodable", "too large", "unreadable"}


@dataclass
class CleanReport:
    """What `clean_images` found and did: counts per problem and one entry per problem file."""

    folder: str
    checked: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)  # {"path", "problem", "detail", "action"}
    dry_run: bool = False

    def summary(self) -> str:
        problems = ", ".join(f"{n} {p}" for p, n in sorted(self.counts.items())) or "no problems"
        return f"{self.checked} images checked in {self.folder}: {problems}"

    def unusable(self) -> set[Path]:
        """The files no image loader gets past (empty, undecodable, too large, unreadable): to leave out of training
        where the folder cannot be changed (Kaggle's inputs are read-only)."""
        return {Path(self.folder) / f["path"] for f in self.files if f["problem"] in _UNUSABLE}


def inspect_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str | None, str]:
    """(problem or None, detail) for one file. Decodes the image fully, so truncation is caught."""
    from PIL import Image

    path = Path(path)
    if path.stat().st_size == 0:
        return "zero bytes", "empty file"
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                return "too large", f"{width}x{height} pixels, over {max_pixels}"
            real, mode = image.format, image.mode
            image.load()
    except Image.DecompressionBombError as exc:
        return "too large", str(exc).splitlines()[0][:200]
    except Exception as exc:  # anything PIL cannot read is unusable for training
        return "undecodable", f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    expected = IMAGE_EXTENSIONS.get(path.suffix.lower())
    if expected and real != expected and not (expected == "JPEG" and real == "MPO"):
        return "wrong format", f"{real} content named {path.suffix}"
    if mode == "CMYK":
        return "cmyk", mode
    if mode in ("P", "PA") and real != "GIF":  # a GIF is a palette by format: PIL reads it to RGB, nothing to fix
        return "palette", mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return "16-bit", mode
    if mode in ("RGBA", "LA", "RGBa"):
        return "alpha", mode
    return None, mode


def clean_images(
    folder: str | os.PathLike,
    *,
    quarantine: str | os.PathLike | None = None,
    dry_run: bool = False,
    delete: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    report_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> CleanReport:
    """Check every image under `folder` and fix it: convert to RGB (JPEG for .jpg names) or move it to `quarantine`.

    `quarantine` defaults to "<folder>-quarantine" beside `folder`. `delete=True` deletes unusable files instead of
    moving them. `dry_run=True` changes nothing and reports what it would do ("would convert to RGB JPEG",
    "would move to ..."). The report is returned and written as JSON to `report_path` (default
    "<folder>-clean-report.json" beside `folder`). `progress`: a progress bar, shown only on a terminal (in a log
    it would be a flood of carriage returns).
    """
    from fastprogress.fastprogress import progress_bar

    folder = Path(os.path.abspath(folder))  # "." has no name to put "-quarantine" after
    if not folder.is_dir():
        raise KaggleKitError(f"{folder} is not a folder of images", str(folder))
    quarantine = Path(quarantine) if quarantine else folder.with_name(folder.name + "-quarantine")
    report_path = Path(report_path) if report_path else folder.with_name(folder.name + "-clean-report.json")
    report = CleanReport(str(folder), dry_run=dry_run)
    paths = list(_image_files(folder))
    workers = workers or min(4, os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = zip(paths, pool.map(_inspect_one, paths, [max_pixels] * len(paths), chunksize=64), strict=True)
        show = progress and sys.stdout.isatty()
        for path, (problem, detail) in progress_bar(results, total=len(paths), leave=False) if show else results:
            report.checked += 1
            if problem is None:
                continue
            if dry_run:
                action = "would " + _planned(path, problem, folder, quarantine, delete)
            else:
                action = _fix(path, problem, folder, quarantine, delete)
            report.files.append({"path": str(path.relative_to(folder)), "problem": problem, "detail": detail,
                                 "action": action})  # fmt: skip
    report.counts = dict(Counter(f["problem"] for f in report.files))
    try:
        atomic_write_json(report_path, asdict(report))
    except OSError as exc:
        raise KaggleKitError(
            f"cannot write the report {report_path} ({exc.strerror or exc}); {report.summary()}; pass --report PATH",
            str(report_path),
        ) from None
    log.info("%s", report.summary())
    return report


def _image_files(folder: Path) -> Iterator[Path]:
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


def _inspect_one(path: Path, max_pixels: int) -> tuple[str | None, str]:
    try:
        return inspect_image(path, max_pixels)
    except OSError as exc:  # a dangling link, no permission: this file's problem, not the run's
        return "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}"


def _planned(path: Path, problem: str, folder: Path, quarantine: Path, delete: bool) -> str:
    """What `_fix` would do to `path`, in the words it reports."""
    if problem in _CONVERTIBLE:
        return _converted_to(path)
    return "delete" if delete else f"move to {quarantine / path.relative_to(folder)}"


def _converted_to(path: Path) -> str:
    return "convert to RGB " + ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else path.suffix)


def _fix(path: Path, problem: str, folder: Path, quarantine: Path, delete: bool) -> str:
    """What was done to `path`; a failure is reported ("failed: ..."), never raised, and never leaves two copies."""
    if problem in _CONVERTIBLE:
        try:
            _convert_to_rgb(path)
            return _converted_to(path).replace("convert", "converted", 1)
        except Exception as exc:  # a file that opens but cannot be converted is unusable after all
            log.warning("cannot convert %s (%s): quarantining it", path, exc)
    try:
        if delete:
            path.unlink()
            return "deleted"
        target = quarantine / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        _move(path, target)
    except OSError as exc:
        log.warning("cannot %s %s: %s", "delete" if delete else "quarantine", path, exc)
        return f"failed: {type(exc).__name__}: {exc.strerror or exc}"
    return f"moved to {target}"


def _move(path: Path, target: Path) -> None:
    """Rename, or copy then remove across file systems; if the original cannot be removed, the copy goes."""
    try:
        os.rename(path, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    shutil.copy2(path, target, follow_symlinks=False)
    try:
        path.unlink()
    except OSError:
        target.unlink(missing_ok=True)
        raise


def _convert_to_rgb(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            import numpy as np

            array = np.asarray(image, dtype=np.float64)
            top = array.max() or 1.0
            rgb = Image.fromarray((array * (255.0 / top)).astype(np.uint8)).convert("RGB")
        elif image.mode in ("RGBA", "LA", "PA", "P"):
            rgba = image.convert("RGBA")
            rgb = Image.new("RGB", rgba.size, (255, 255, 255))
            rgb.paste(rgba, mask=rgba.getchannel("A"))  # transparent pixels become white, not black
        else:
            rgb = image.convert("RGB")
    fmt = IMAGE_EXTENSIONS.get(path.suffix.lower(), "PNG")
    with atomic_open(path, "wb") as f:
        rgb.save(f, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def read_report(path: str | os.PathLike) -> dict:
    """A clean-up report written by `clean_images`."""
    return json.loads(Path(path).read_text())
