"""Converters from competition formats to fastai-ready CSVs.

iMaterialist-fashion 2018 ships JSON: {"images": [{"imageId", "url"}], "annotations": [{"imageId", "labelId": [...]}]}
(the test file has no annotations). Seed 000 turned it into a CSV of image,labels by hand. In the competition's
files "url" is a list of URLs (mirrors of one photo); a single string is accepted too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from kaggle_kit.errors import KaggleKitError

__all__ = ["imat2018_to_frame", "ConvertError"]


class ConvertError(KaggleKitError, ValueError):
    """The input file is not in the expected format; the message names the record."""


def imat2018_to_frame(
    json_path: str | os.PathLike,
    image_suffix: str = ".jpg",
    *,
    all_urls: bool = False,
    columns: tuple[str, str, str] = ("image", "url", "labels"),
) -> pd.DataFrame:
    """A DataFrame with three columns, named by `columns`: the image ("<imageId><suffix>"), its URL and its labels
    (space-separated label ids, "" for test). A list of URLs gives its first (`all_urls=True`: all, joined by
    ";"); no URL gives "".

    Raises ConvertError naming the record for a missing imageId, a URL that is not a string or list of strings, a
    non-list labelId, or an annotation of an image that is not listed.
    """
    if len(columns) != 3 or len(set(columns)) != 3 or not all(isinstance(c, str) and c for c in columns):
        raise ConvertError(f"columns={columns!r}: give three different names, e.g. ('image', 'url', 'labels')",
                           columns)  # fmt: skip
    path = Path(json_path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConvertError(f"{path}: cannot read ({exc.strerror})", str(path)) from None
    except ValueError as exc:
        raise ConvertError(f"{path} is not JSON: {exc}", str(path)) from None
    images = raw.get("images") if isinstance(raw, dict) else None
    if not isinstance(images, list):
        raise ConvertError(f"{path}: no 'images' list (expected {{'images': [...], 'annotations': [...]}})", None)
    rows: dict[str, dict] = {}
    for i, record in enumerate(images):
        if not isinstance(record, dict) or "imageId" not in record:
            raise ConvertError(f"{path}: images[{i}] = {record!r} has no imageId", i)
        image_id = str(record["imageId"])
        rows[image_id] = {"image": image_id + image_suffix, "url": _url(record.get("url"), all_urls, path, i),
                          "labels": ""}  # fmt: skip
    for i, record in enumerate(raw.get("annotations") or []):
        if not isinstance(record, dict) or "imageId" not in record:
            raise ConvertError(f"{path}: annotations[{i}] = {record!r} has no imageId", i)
        labels = record.get("labelId")
        if not isinstance(labels, list):
            raise ConvertError(f"{path}: annotations[{i}] labelId {labels!r} is not a list of label ids", i)
        image_id = str(record["imageId"])
        if image_id not in rows:
            raise ConvertError(f"{path}: annotations[{i}] is for imageId {image_id}, which 'images' does not list", i)
        rows[image_id]["labels"] = " ".join(str(label) for label in labels)
    frame = pd.DataFrame(list(rows.values()), columns=["image", "url", "labels"])
    return frame.set_axis(list(columns), axis=1)


def _url(raw: object, all_urls: bool, path: Path, i: int) -> str:
    if raw is None:
        return ""
    urls = [raw] if isinstance(raw, str) else raw
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ConvertError(f"{path}: images[{i}] url {raw!r} is not a URL or a list of URLs", i)
    return ";".join(urls) if all_urls else (urls[0] if urls else "")
