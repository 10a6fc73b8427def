"""Readers for the competition's label_descriptions.json and train.csv, with errors that name the bad row.

ClassId is a category id alone ("23") or with attribute ids ("6_28_77"); ids and names come from
label_descriptions.json at run time, never from code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kaggle_kit.errors import KaggleKitError
from kaggle_kit.rle import RleError, rle_runs

__all__ = ["Labels", "DataError", "read_labels", "read_train_csv", "parse_class_id", "format_class_id", "TRAIN_COLUMNS"]

TRAIN_COLUMNS = ("ImageId", "EncodedPixels", "Height", "Width", "ClassId")


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
        table: dict[int, str] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) or "name" not in entry:
                raise DataError(f"{path}: {key}[{i}] = {entry!r} needs an integer 'id' and a 'name'", entry)
            if entry["id"] in table:
                raise DataError(f"{path}: {key}[{i}] repeats id {entry['id']}", entry["id"])
            table[entry["id"]] = str(entry["name"])
        tables[key] = table
    supers = {e["id"]: str(e.get("supercategory", "")) for e in raw["categories"]}
    return Labels(tables["categories"], tables["attributes"], supers)


def parse_class_id(class_id: str) -> tuple[int, tuple[int, ...]]:
    """ "6_28_77" -> (6, (28, 77)); "23" -> (23, ()). Raises ValueError for anything else."""
    parts = str(class_id).strip().split("_")
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"ClassId {class_id!r} is not 'category' or 'category_attribute_...' (integers)")
    return int(parts[0]), tuple(int(p) for p in parts[1:])


def format_class_id(category: int, attributes: tuple[int, ...] | list[int] = ()) -> str:
    """(6, (77, 28)) -> "6_28_77": attributes sorted, as in train.csv."""
    return "_".join(str(x) for x in (category, *sorted(attributes)))


def read_train_csv(path: str | os.PathLike, labels: Labels) -> pd.DataFrame:
    """train.csv validated, with parsed `category` (int) and `attributes` (tuple) columns added.

    Errors name the CSV line: a missing column, a non-positive size, an unknown category or attribute id, or an
    EncodedPixels that is malformed or runs outside its image.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"ImageId": str, "EncodedPixels": str, "ClassId": str})
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})", str(path)) from None
    missing = [c for c in TRAIN_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(TRAIN_COLUMNS)}", missing)
    categories, attributes = [], []
    for row in frame.itertuples(index=True):
        line = row.Index + 2  # the header is line 1
        where = f"{path.name} line {line} (ImageId {row.ImageId})"
        try:
            height, width = int(row.Height), int(row.Width)
        except (TypeError, ValueError):
            raise DataError(f"{where}: Height/Width {row.Height!r}/{row.Width!r} are not integers", line) from None
        if height <= 0 or width <= 0:
            raise DataError(f"{where}: Height/Width {height}x{width} must be positive", line)
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
