"""The sandbox a local kernel runs in, shaped like Kaggle's ``/kaggle``: ``input/`` (links to the attached data, in
either of Kaggle's layouts), ``working/`` (the script's current directory) and ``home/``.

A script finds its data as on Kaggle: ``../input/<slug>`` from its working directory, or, in whichever layout the
input was attached, ``kk.Kernel.current().find_input("<slug>")``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kaggle_kit.errors import KernelLayoutError

__all__ = ["make_sandbox", "input_beside", "input_hints", "SANDBOX_MARKER"]

log = logging.getLogger(__name__)

SANDBOX_MARKER = ".kaggle-kit-sandbox"
# what a script names when it reads Kaggle's inputs by path: "../input/<slug>/...", "/kaggle/input/<slug>", or
# Path("../input") / "<slug>"
_INPUT_PATH = re.compile(r"""(?:\.\./|/kaggle/)input(?:/|["']\)?\s*/\s*["'])([A-Za-z0-9][\w.-]*)""")
_LAYOUT_KINDS = ("competitions", "datasets", "notebooks", "models")


def _remove_links(folder: Path) -> None:
    """Remove a tree of symlinks and empty folders; a real file in it is an error, never deleted."""
    for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
        for name in [*filenames, *dirnames]:
            path = Path(dirpath) / name
            if path.is_symlink():
                path.unlink()
            elif path.is_dir():
                path.rmdir()  # empty by now: OSError (kept) if something real was left in it
            else:
                raise KernelLayoutError(f"{path} is a real file in the sandbox's input/; move it out first", str(path))
    folder.rmdir()


def make_sandbox(root: Path, inputs: list[tuple[str, Path]], working: str | os.PathLike | None) -> Path:
    """Make (or remake) the sandbox `root`; refuse a folder that holds anything run-local did not make."""
    marker = root / SANDBOX_MARKER
    if root.exists() and not marker.exists() and any(root.iterdir()):
        found = ", ".join(sorted(p.name for p in root.iterdir())[:5])
        raise KernelLayoutError(
            f"--root {root} already holds files run-local did not make ({found}); pass a new or empty folder", str(root)
        )
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by kaggle-kit run-local: input/ and working/ here are remade by the next run\n")
    input_dir = root / "input"
    if input_dir.exists():
        _remove_links(input_dir)  # links only: the data they point at is untouched
    input_dir.mkdir(parents=True)
    slugs = [Path(s) for s, _ in inputs]
    for one in slugs:
        inside = [other for other in slugs if other != one and other.is_relative_to(one)]
        if inside:  # its link would be made inside the first input's own folder: never write into a user's data
            raise KernelLayoutError(f"the input slug {inside[0]} lies inside the input {one}; give inputs that do not "
                                    "nest (e.g. 'a' and 'b', not 'a' and 'a/b')", str(inside[0]))  # fmt: skip
    for slug, path in inputs:
        link = input_dir / slug
        if link.exists() or link.is_symlink():
            raise KernelLayoutError(f"two inputs share the slug {slug!r}; name them with SLUG=PATH", slug)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(path).resolve(), target_is_directory=Path(path).is_dir())
    link = root / "working"
    if working is not None:
        target = Path(working).resolve()
        target.mkdir(parents=True, exist_ok=True)
        if target != link.resolve():
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                shutil.rmtree(link)
            link.symlink_to(target, target_is_directory=True)
        return target
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)
    link.mkdir()
    return link


@contextmanager
def input_beside(working: Path, input_dir: Path) -> Iterator[None]:
    """While the kernel runs, make ``../input`` from a working directory given by the user (``--working DIR``) lead
    to the sandbox's inputs, as ``/kaggle/working/../input`` does on Kaggle: a link ``DIR/../input`` that is removed
    afterwards. A real ``input`` already beside DIR is the user's: left alone, with a one-line warning."""
    beside = working.parent / "input"
    if beside.resolve() == input_dir.resolve():
        yield
        return
    ours = beside.is_symlink() and (beside.resolve().parent / SANDBOX_MARKER).exists()  # an earlier run's leftover
    if beside.exists() and not ours:
        log.warning("run-local: ../input from %s is %s (yours, left as it is), not the sandbox's inputs; "
                    'kk.Kernel.current().find_input("<slug>") finds those', working, beside)  # fmt: skip
        yield
        return
    if ours or beside.is_symlink():
        beside.unlink()
    beside.symlink_to(input_dir, target_is_directory=True)
    try:
        yield
    finally:
        if beside.is_symlink() and beside.resolve() == input_dir.resolve():
            beside.unlink()


def input_hints(script: Path, input_dir: Path) -> list[str]:
    """One line for each input the script names by path (``../input/<slug>``, ``/kaggle/input/<slug>``) that is not
    there, saying where that input is attached instead, or what is."""
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return []
    named = dict.fromkeys(m.group(1) for m in _INPUT_PATH.finditer(text))
    attached = {}
    for path in sorted(input_dir.rglob("*")) if input_dir.is_dir() else []:
        parts = path.relative_to(input_dir).parts
        depth = 2 if parts[0] in ("competitions",) else 3 if parts[0] in _LAYOUT_KINDS else 1
        if len(parts) == depth:
            attached.setdefault(path.name, "/".join(parts))
    hints = []
    for slug in named:
        if slug in _LAYOUT_KINDS or (input_dir / slug).exists():
            continue
        where = (f"it is attached at ../input/{attached[slug]}" if slug in attached
                 else f"attached: {', '.join(sorted(attached)) or 'none'}")  # fmt: skip
        hints.append(f"hint: the script reads ../input/{slug}, which is not there ({where}); "
                     f'kk.Kernel.current().find_input("{slug}") finds it in either of Kaggle\'s layouts')  # fmt: skip
    return hints
