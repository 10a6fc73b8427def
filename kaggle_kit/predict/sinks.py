"""Where streamed predictions go: one .npy or one CSV, written chunk by chunk and committed durably.

A sink is a small class with these methods (``Sink`` spells them out); ``stream_predict`` calls them in order
``paths -> signature -> open -> (write -> commit)* -> close``. Each commit returns a small JSON-able state that the
run's ``ProgressManifest`` (``progress``, the owner of the manifest file) records; a resumed run hands it
back to ``open``, and the sink throws away anything written after it, so a killed run resumes with no duplicate and
no missing row. A sink writes its first file front to back: each commit state carries ``bytes`` (how long the
committed content of that file is) and ``sha256`` (the digest of the bytes written since the previous commit), which
is what the manifest checks the file against before trusting it.

Placeholder predictions (bad images) arrive as NaN rows with ``ok[i] == False``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from kaggle_kit.atomic import atomic_open, atomic_path, fsync_dir
from kaggle_kit.errors import KaggleKitError, UsageError
from kaggle_kit.predict.identity import callable_identity

__all__ = ["Sink", "ArraySink", "CsvSink", "merge_shards", "MergeError"]

log = logging.getLogger(__name__)


class MergeError(KaggleKitError, ValueError):
    """Shard outputs that cannot be merged into one: missing, out of order, or not of the given items."""


class Sink(Protocol):
    """What `stream_predict` needs of a sink. `index` is each row's position in the full (unsharded) item list."""

    def paths(self) -> list[Path]:
        """The files this sink writes (they count against the kernel's output-file budget)."""

    def signature(self) -> dict[str, Any]:
        """Settings that must be equal when a run resumes (a mismatch is an error, never a silent mix)."""

    def open(self, n_items: int, state: dict[str, Any] | None) -> None:
        """Start writing `n_items` rows; `state` is the last commit's, or None for a fresh start."""

    def write(self, items: Sequence[Any], preds: np.ndarray, ok: np.ndarray, index: np.ndarray) -> None:
        """Write one chunk: `preds[i]` belongs to `items[i]`; `ok[i]` is False for a placeholder."""

    def commit(self) -> dict[str, Any]:
        """Make everything written so far durable; return the state to resume from, with "bytes" and "sha256"."""

    def close(self) -> None:
        """Release files; the output is complete when the last commit was."""


class ArraySink:
    """All predictions in one ``.npy`` file of shape (n_items, *pred_shape), filled row by row.

    The file is written with plain positioned writes (not a live memory map), so the page cache it fills is never
    counted in the process's resident memory; read it with ``np.load(path, mmap_mode="r")``. `dtype` (e.g.
    "float16") halves the disk size of raw scores. Placeholder rows are NaN (for integer dtypes -1, or the dtype's
    largest value if unsigned).
    """

    def __init__(self, path: str | os.PathLike, dtype: str | np.dtype | None = None):
        self.path = Path(path)
        self.dtype = self.requested_dtype = np.dtype(dtype) if dtype is not None else None
        self._file: io.BufferedRandom | None = None
        self._n_items = 0
        self._rows = 0
        self._offset = 0
        self._row_shape: tuple[int, ...] | None = None
        self._segment = hashlib.sha256()  # bytes written since the last commit

    def paths(self) -> list[Path]:
        return [self.path]

    def signature(self) -> dict[str, Any]:
        return {
            "sink": "ArraySink",
            "path": self.path.name,
            "dtype": None if self.requested_dtype is None else self.requested_dtype.str,
        }

    def open(self, n_items: int, state: dict[str, Any] | None) -> None:
        self._n_items = n_items
        self._segment = hashlib.sha256()
        if state and state.get("rows"):
            self._rows, self._row_shape = state["rows"], tuple(state["row_shape"])
            self.dtype, self._offset = np.dtype(state["dtype"]), state["offset"]
            self._file = open(self.path, "r+b")  # noqa: SIM115 - kept open across chunks, closed in close()
            row_bytes = int(np.prod(self._row_shape)) * self.dtype.itemsize
            self._file.truncate(self._offset + n_items * row_bytes)  # exactly the array: nothing after, nothing short

    def write(self, items: Sequence[Any], preds: np.ndarray, ok: np.ndarray, index: np.ndarray) -> None:
        if self._file is None:
            self._create(preds.shape[1:], preds.dtype)
        if preds.shape[1:] != self._row_shape:
            raise UsageError(f"prediction shape {preds.shape[1:]} differs from the first chunk's {self._row_shape}")
        data = np.ascontiguousarray(preds, dtype=self.dtype)
        row_bytes = int(np.prod(self._row_shape)) * self.dtype.itemsize
        self._file.seek(self._offset + self._rows * row_bytes)
        view = memoryview(data).cast("B")
        self._file.write(view)
        self._segment.update(view)
        self._rows += len(data)

    def commit(self) -> dict[str, Any]:
        if self._file is None:
            return {"rows": 0, "bytes": 0, "sha256": self._segment.hexdigest()}
        self._file.flush()
        os.fsync(self._file.fileno())
        if hasattr(os, "posix_fadvise"):  # written pages are clean now: let a cgroup-limited kernel drop them
            os.posix_fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        row_bytes = int(np.prod(self._row_shape)) * self.dtype.itemsize
        digest, self._segment = self._segment.hexdigest(), hashlib.sha256()
        return {"rows": self._rows, "row_shape": list(self._row_shape), "dtype": self.dtype.str, "offset": self._offset,
                "bytes": self._offset + self._rows * row_bytes, "sha256": digest}  # fmt: skip

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _create(self, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._row_shape = tuple(row_shape)
        self.dtype = self.dtype or np.dtype(dtype)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (self._n_items, *self._row_shape)}  # fmt: skip
        self._file = open(self.path, "w+b")  # noqa: SIM115 - kept open across chunks, closed in close()
        header_bytes = io.BytesIO()
        np.lib.format.write_array_header_2_0(header_bytes, header)
        self._file.write(header_bytes.getvalue())
        self._segment.update(header_bytes.getvalue())
        self._offset = self._file.tell()
        self._file.truncate(self._offset + self._n_items * int(np.prod(self._row_shape)) * self.dtype.itemsize)
        self._rows = 0
        fsync_dir(self.path.parent)


class CsvSink:
    """Rows appended to one CSV (a submission) through ``to_rows(items, preds)``.

    `to_rows` returns an iterable of rows (tuples/lists) or a DataFrame with the `columns`; it may give any number
    of rows per item (one row per detected object, say). Placeholder predictions are NaN rows: check with
    ``np.isnan(pred).all()`` and write the competition's empty answer for them, so every item still appears.
    """

    def __init__(
        self, path: str | os.PathLike, to_rows: Callable[[Sequence[Any], np.ndarray], Any], columns: Sequence[str]
    ):
        self.path = Path(path)
        self.to_rows = to_rows
        self.columns = list(columns)
        self._file: io.BufferedRandom | None = None
        self._rows = 0
        self._segment = hashlib.sha256()  # bytes written since the last commit

    def paths(self) -> list[Path]:
        return [self.path]

    def signature(self) -> dict[str, Any]:
        """Path name, columns and `to_rows` by a name stable across processes (see ``identity.callable_identity``)."""
        return {"sink": "CsvSink", "path": self.path.name, "columns": self.columns,
                "to_rows": callable_identity(self.to_rows, "to_rows")}  # fmt: skip

    def open(self, n_items: int, state: dict[str, Any] | None) -> None:
        # binary mode: tell() is an exact byte offset to truncate back to on resume
        self._segment = hashlib.sha256()
        if state:
            self._file = open(self.path, "r+b")  # noqa: SIM115 - kept open across chunks, closed in close()
            self._file.truncate(state["bytes"])  # drop rows written after the last commit
            self._file.seek(state["bytes"])
            self._rows = state["rows"]
        else:
            self._file = open(self.path, "w+b")  # noqa: SIM115 - kept open across chunks, closed in close()
            self._write(_csv_text([self.columns]))
            self._rows = 0
            fsync_dir(self.path.parent)

    def write(self, items: Sequence[Any], preds: np.ndarray, ok: np.ndarray, index: np.ndarray) -> None:
        rows = _rows_of(self.to_rows(items, preds), self.columns)
        self._write(_csv_text(rows))
        self._rows += len(rows)

    def commit(self) -> dict[str, Any]:
        self._file.flush()
        os.fsync(self._file.fileno())
        digest, self._segment = self._segment.hexdigest(), hashlib.sha256()
        return {"rows": self._rows, "bytes": self._file.tell(), "sha256": digest}

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._segment.update(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def merge_shards(
    paths: Sequence[str | os.PathLike],
    dest: str | os.PathLike,
    *,
    keys: Sequence[Any] | None = None,
    key_column: str | None = None,
) -> Path:
    """Merge the outputs of ``shard=(i, n)`` runs (given in shard order i = 0..n-1) into `dest`, in item order.

    ``.npy`` shards interleave row by row. CSV shards group their rows by `key_column`: pass `keys`, the key of every
    item in the original order (e.g. the test image ids), so items with zero or several rows merge correctly. Rows
    that do not fit the keys (a shard out of order, other items) are a `MergeError`; `dest` is written atomically, so
    a failed merge leaves no partial file. (``kaggle-kit merge`` also checks each shard's progress manifest: every
    shard present and complete.)
    """
    paths, dest = [Path(p) for p in paths], Path(dest)
    if not paths:
        raise MergeError("merge_shards needs at least one shard", None)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MergeError(f"shard file(s) missing: {', '.join(missing)}", missing)
    if paths[0].suffix == ".npy":
        return _merge_arrays(paths, dest)
    if keys is None or key_column is None:
        raise MergeError(
            "merging CSV shards needs keys: give --keys-csv (a CSV listing every item's key, in order) "
            "and --key-column (the column naming the item)",
            None,
        )
    header = _header(paths[0])
    for path in paths[1:]:
        other = _header(path)
        if other != header:
            raise MergeError(f"{path} has the columns {','.join(other)}, the first shard {paths[0]} has "
                             f"{','.join(header)}: every shard must have the same header", str(path))  # fmt: skip
    if key_column not in header:
        raise MergeError(f"key_column {key_column!r} is not a column of {paths[0]} ({', '.join(header)})", key_column)
    readers = [pd.read_csv(p, dtype=str, keep_default_na=False, chunksize=50_000) for p in paths]
    groups = [_grouped_rows(r, key_column) for r in readers]
    pending: list[tuple[str, list] | None] = [next(g, None) for g in groups]
    n = len(paths)
    with atomic_open(dest, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for j, key in enumerate(keys):
            s = j % n
            if pending[s] is not None and pending[s][0] == str(key):
                writer.writerows(pending[s][1])
                pending[s] = next(groups[s], None)
        left = [f"{p} (at key {g[0]!r})" for p, g in zip(paths, pending, strict=True) if g is not None]
        if left:  # raised inside atomic_open: dest is never replaced by a partial merge
            raise MergeError(
                f"shard rows were left after every key was merged: {', '.join(left)}; give the shards in order "
                "0..n-1, with the keys of the items they predicted",
                left,
            )
    return dest


def _header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MergeError(f"{path} is not a CSV with a header ({exc})", str(path)) from None


def _merge_arrays(paths: list[Path], dest: Path) -> Path:
    arrays = [np.load(p, mmap_mode="r") for p in paths]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1 or any(len(a) not in (len(arrays[0]), len(arrays[0]) - 1) for a in arrays):
        raise MergeError(f"shards {', '.join(map(str, paths))} do not fit together (shapes "
                         f"{', '.join(str(a.shape) for a in arrays)})", None)  # fmt: skip
    total = sum(len(a) for a in arrays)
    with atomic_path(dest) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=arrays[0].dtype, shape=(total, *arrays[0].shape[1:]), version=(2, 0)
        )  # as ArraySink writes it: a merge equals the unsharded file
        for i, a in enumerate(arrays):
            out[i :: len(arrays)] = a
        out.flush()
        del out
    return dest


def _rows_of(returned: Any, columns: list[str]) -> list[Sequence[Any]]:
    """What `to_rows` returned as a list of rows of `columns`: tuples, lists, dicts by column, or a DataFrame."""
    expected = f"expected rows of {len(columns)} values ({', '.join(columns)})"
    if isinstance(returned, pd.DataFrame):
        missing = [c for c in columns if c not in returned.columns]
        if missing:
            raise KaggleKitError(f"to_rows returned a DataFrame without the column(s) {', '.join(missing)}; {expected}",
                                 missing)  # fmt: skip
        return list(returned[columns].itertuples(index=False, name=None))
    if returned is None or isinstance(returned, str | bytes | dict) or not isinstance(returned, Iterable):
        raise KaggleKitError(f"to_rows returned {type(returned).__name__}, not a list of rows; {expected}", None)
    rows = []
    for row in returned:
        if isinstance(row, dict):  # a row by column name, in the CSV's column order
            missing = [c for c in columns if c not in row]
            if missing or len(row) != len(columns):
                raise KaggleKitError(f"to_rows gave a row {row!r} whose keys are not the columns; {expected}", row)
            row = [row[c] for c in columns]
        elif isinstance(row, str | bytes) or not isinstance(row, Sequence):
            raise KaggleKitError(f"to_rows gave a row {row!r} that is not a tuple, list or dict; {expected}", row)
        if len(row) != len(columns):
            raise KaggleKitError(f"to_rows gave a row of {len(row)} values, {expected}: {row!r}", row)
        rows.append(row)
    return rows


def _csv_text(rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _grouped_rows(chunks: Iterable[pd.DataFrame], key_column: str) -> Iterable[tuple[str, list]]:
    key, rows = None, []
    for frame in chunks:
        if key_column not in frame.columns:
            raise MergeError(f"key_column {key_column!r} is not a column ({', '.join(frame.columns)})", key_column)
        col = list(frame.columns).index(key_column)
        for row in frame.itertuples(index=False, name=None):
            if rows and row[col] != key:
                yield key, rows
                rows = []
            key = row[col]
            rows.append(list(row))
    if rows:
        yield key, rows
