"""Readers for the competition's label_descriptions.json and train.csv, with errors that name the bad row.

ClassId is a category id alone ("23") or with attribute ids ("6_28_77"); ids and names come from
label_descriptions.json at run time, never from code.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kaggle_kit.errors import KaggleKitError
from kaggle_kit.vision.rle import RleError, rle_runs

__all__ = ["Labels", "DataError", "read_labels", "read_train_csv", "parse_class_id", "format_class_id", "TRAIN_COLUMNS"]

TRAIN_COLUMNS = ("ImageId", "EncodedPixels", "Height", "Width", "ClassId")
MAX_PIXELS = 200_000_000  # 200 MP: far above any competition photo, far below what would exhaust a kernel
_POSITIVE = re.compile(r"[1-9][0-9]{0,8}", re.ASCII)
_CLASS_ID = re.compile(r"(?:0|[1-9][0-9]{0,8})(?:_(?:0|[1-9][0-9]{0,8}))*", re.ASCII)


class DataError(KaggleKitError, ValueError):
    """The competition's files are missing a column or hold a value the pipeline cannot use."""


@dataclass(frozen=True)
class Labels:
    """Category and attribute ids with their names, in file order."""

    categories: dict[int, str]
    attributes: dict[int, str]
    supercategories: dict[int, str] = field(default_factory=dict)

    @property
    def category_ids(self) -> list[int]:
        return list(self.categories)

    @property
    def attribute_ids(self) -> list[int]:
        return list(self.attributes)


def read_labels(path: str | os.PathLike) -> Labels:
    """Read label_descriptions.json: {"info", "categories": [{"id", "name", ...}], "attributes": [...]}."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})", str(path)) from None
    except ValueError as exc:
        raise DataError(f"{path} is not JSON: {exc}", str(path)) from None
    tables = {}
    for key in ("categories", "attributes"):
        entries = raw.get(key) if isinstance(raw, dict) else None
        if not isinstance(entries, list):
            raise DataError(f"{path}: no {key!r} list (expected {{'categories': [...], 'attributes': [...]}})", key)
        if not entries:
            raise DataError(f"{path}: the {key!r} list is empty; the pipeline needs at least one", key)
        table: dict[int, str] = {}
        for i, entry in enumerate(entries):
            ident, name = (entry.get("id"), entry.get("name")) if isinstance(entry, dict) else (None, None)
            if (
                isinstance(ident, bool)
                or not isinstance(ident, int)
                or ident < 0
                or not isinstance(name, str)
                or not name
            ):
                raise DataError(f"{path}: {key}[{i}] = {entry!r} needs an integer 'id' (0 or more) and a 'name' "
                                "string", entry)  # fmt: skip
            if entry["id"] in table:
                raise DataError(f"{path}: {key}[{i}] repeats id {entry['id']}", entry["id"])
            table[entry["id"]] = str(entry["name"])
        tables[key] = table
    supers = {e["id"]: str(e.get("supercategory", "")) for e in raw["categories"]}
    return Labels(tables["categories"], tables["attributes"], supers)


def parse_class_id(class_id: str) -> tuple[int, tuple[int, ...]]:
    """ "6_28_77" -> (6, (28, 77)); "23" -> (23, ()). Raises ValueError for anything else.

    Only the canonical form is accepted: ASCII digits without signs or leading zeros, attributes in increasing order
    without repeats (what train.csv and `format_class_id` write).
    """
    text = str(class_id)
    if not _CLASS_ID.fullmatch(text):
        raise DataError(f"ClassId {class_id!r} is not 'category' or 'category_attribute_...' (whole numbers)")
    category, *attributes = (int(p) for p in text.split("_"))
    if any(b <= a for a, b in zip(attributes, attributes[1:], strict=False)):
        raise DataError(f"ClassId {class_id!r} lists attributes out of order or twice; expected increasing ids")
    return category, tuple(attributes)


def format_class_id(category: int, attributes: tuple[int, ...] | list[int] = ()) -> str:
    """(6, (77, 28)) -> "6_28_77": attributes sorted, as in train.csv."""
    return "_".join(str(x) for x in (category, *sorted(attributes)))


def read_train_csv(path: str | os.PathLike, labels: Labels) -> pd.DataFrame:
    """train.csv validated, with parsed `category` (int) and `attributes` (tuple) columns added.

    Errors name the CSV line: a missing column, a non-positive size, an unknown category or attribute id, or an
    EncodedPixels that is malformed or runs outside its image.
    """
    path = Path(path)
    try:  # every field as text: sizes are checked as written ("42.7" is not 42), extra fields are an error
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # pandas only warns when the first row is long
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except (OSError, ValueError, pd.errors.ParserWarning) as exc:
        raise DataError(f"{path}: cannot read as CSV ({' '.join(str(exc).split())})", str(path)) from None
    missing = [c for c in TRAIN_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(TRAIN_COLUMNS)}", missing)
    categories, attributes = [], []
    sizes: dict[str, tuple[int, int, int]] = {}  # ImageId -> (height, width, first line)
    seen: dict[tuple[str, ...], int] = {}
    for row in frame.itertuples(index=True):
        line = row.Index + 2  # the header is line 1
        where = f"{path.name} line {line} (ImageId {row.ImageId})"
        if not (_POSITIVE.fullmatch(row.Height) and _POSITIVE.fullmatch(row.Width)):
            raise DataError(f"{where}: Height/Width {row.Height!r}/{row.Width!r} must be positive whole numbers", line)
        height, width = int(row.Height), int(row.Width)
        if height * width > MAX_PIXELS:
            raise DataError(f"{where}: {height}x{width} is over {MAX_PIXELS:,} pixels; not a photo this pipeline "
                            "can decode", line)  # fmt: skip
        first = sizes.setdefault(row.ImageId, (height, width, line))
        if first[:2] != (height, width):
            raise DataError(f"{where}: {height}x{width}, but line {first[2]} gives this image {first[0]}x{first[1]}",
                            line)  # fmt: skip
        key = (row.ImageId, row.EncodedPixels, row.ClassId)
        if key in seen:
            raise DataError(f"{where}: repeats line {seen[key]} exactly (same mask and ClassId)", line)
        seen[key] = line
        try:
            category, attrs = parse_class_id(row.ClassId)
        except ValueError as exc:
            raise DataError(f"{where}: {exc}", line) from None
        if category not in labels.categories:
            raise DataError(
                f"{where}: unknown category id {category} (label_descriptions.json has "
                f"{min(labels.categories)}..{max(labels.categories)})",
                line,
            )
        unknown = [a for a in attrs if a not in labels.attributes]
        if unknown:
            raise DataError(f"{where}: unknown attribute id(s) {unknown} in ClassId {row.ClassId!r}", line)
        _check_rle(row.EncodedPixels, height, width, where, line)
        categories.append(category)
        attributes.append(attrs)
    frame["Height"], frame["Width"] = frame["Height"].astype(int), frame["Width"].astype(int)
    frame["category"], frame["attributes"] = categories, attributes
    return frame


def _check_rle(rle: object, height: int, width: int, where: str, line: int) -> None:
    if not isinstance(rle, str) or not rle.strip():
        raise DataError(f"{where}: EncodedPixels is empty", line)
    try:
        rle_runs(rle, height * width, f"{height}x{width}")
    except RleError as exc:
        raise DataError(f"{where}: EncodedPixels {exc}", line) from None
