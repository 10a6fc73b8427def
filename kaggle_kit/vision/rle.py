"""Kaggle run-length encoding of binary masks: "start length" pairs, 1-based, pixels numbered top-to-bottom then
left-to-right (column-major), at the image's original size.

The encoder finds run boundaries on the row-major mask (cheap, contiguous comparisons) and orders them column-major
afterwards, instead of first copying the whole mask into column order (as int64) as the classic Kaggle snippet does.
The decoder lays out dense masks with one np.repeat and paints sparse ones run by run onto untouched zeros.
"""

from __future__ import annotations

import re

import numpy as np

from kaggle_kit.errors import KaggleKitError

__all__ = ["rle_encode", "rle_encode_resized", "rle_decode", "rle_runs", "nearest_index", "RleError"]

# A slice assignment costs about as much as laying out this many pixels with np.repeat (measured, benchmarks/rle.py)
_PIXELS_PER_RUN = 4000


class RleError(KaggleKitError, ValueError):
    """An RLE string is malformed or does not fit the image it should describe."""


def rle_encode(mask: np.ndarray) -> str:
    """The RLE string of a 2-D mask (H, W); nonzero pixels are foreground. An empty mask gives ""."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise RleError(f"rle_encode needs a 2-D mask (height, width), got shape {m.shape}", m.shape)
    if m.dtype != bool:
        m = m != 0
    height, width = m.shape
    if m.size == 0:
        return ""
    # A boundary at column-major index p (0-based) means pixel p differs from pixel p-1.
    inner = np.flatnonzero(m[1:] != m[:-1])  # inside columns: contiguous rows compared, flat indices (fast)
    inner_r, inner_c = np.divmod(inner, width)
    across = np.flatnonzero(m[0, 1:] != m[-1, :-1]) + 1  # the top of column c against the bottom of column c-1
    bounds = np.concatenate([inner_c * height + inner_r + 1, across * height])
    bounds.sort()  # column-major order; boundaries are few next to pixels, so this is cheap
    edges = [bounds]
    if m[0, 0]:
        edges.insert(0, np.zeros(1, dtype=bounds.dtype))
    if m[-1, -1]:
        edges.append(np.full(1, height * width, dtype=bounds.dtype))
    bounds = np.concatenate(edges) if len(edges) > 1 else bounds
    if bounds.size == 0:
        return ""
    runs = bounds.reshape(-1, 2)
    runs[:, 1] -= runs[:, 0]
    runs[:, 0] += 1
    return " ".join(map(str, runs.ravel().tolist()))


def nearest_index(n_source: int, n_target: int) -> np.ndarray:
    """For each of `n_target` pixels along an axis, the source pixel a nearest-neighbour resize samples (centres)."""
    index = ((np.arange(n_target) + 0.5) * n_source / n_target).astype(np.int64)
    return np.minimum(index, n_source - 1)


def rle_encode_resized(mask: np.ndarray, height: int, width: int) -> str:
    """``rle_encode`` of `mask` resized to (height, width) by nearest neighbour, without making the resized mask.

    The same string as ``rle_encode(mask[nearest_index(h, height)][:, nearest_index(w, width)])``, but the work
    follows the number of runs written, not the pixel count: each small column's runs are stretched once, then
    repeated for every output column that samples it (a 46-channel 512-px prediction of a 6 MP photo is encoded
    without a 6 MP array).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise RleError(f"rle_encode_resized needs a 2-D mask (height, width), got shape {m.shape}", m.shape)
    h, w = m.shape
    if h == 0 or w == 0 or height <= 0 or width <= 0:
        return ""
    rows_used, cols_used = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows_used.size == 0:
        return ""
    top, bottom, left, right = rows_used[0], rows_used[-1] + 1, cols_used[0], cols_used[-1] + 1
    rows, cols = nearest_index(h, height), nearest_index(w, width)
    j0, j1 = np.searchsorted(cols, [left, right], side="left")  # the output columns that sample the mask's box
    w = right - left
    padded = np.zeros((w, bottom - top + 2), dtype=bool)  # column-major: one row per source column, False around
    padded[:, 1:-1] = m[top:bottom, left:right].T != 0
    column, position = np.nonzero(padded[:, 1:] != padded[:, :-1])  # run edges, column by column, top to bottom
    first_row = np.searchsorted(rows, np.arange(top, bottom + 1), side="left")  # first output row at or past a row
    starts, ends = first_row[position[0::2]], first_row[position[1::2]]  # each source run, stretched to output rows
    column = column[0::2]
    keep = ends > starts  # a source run no output row samples (downscaling) writes nothing
    starts, ends, column = starts[keep], ends[keep], column[keep]
    per_column = np.bincount(column, minlength=w)
    first = np.concatenate([[0], np.cumsum(per_column)[:-1]])
    sources = cols[j0:j1] - left
    counts = per_column[sources]  # runs of each output column
    total = int(counts.sum())
    if total == 0:
        return ""
    offsets = np.cumsum(counts) - counts
    pick = np.repeat(first[sources] - offsets, counts) + np.arange(total)
    shift = np.repeat(np.arange(j0, j1, dtype=np.int64) * height, counts)
    run_starts, run_ends = starts[pick] + shift, ends[pick] + shift
    joined = run_starts[1:] != run_ends[:-1]  # a run reaching a column's bottom continues at the next column's top
    run_starts = run_starts[np.concatenate([[True], joined])]
    run_ends = run_ends[np.concatenate([joined, [True]])]
    pairs = np.empty(2 * run_starts.size, dtype=np.int64)
    pairs[0::2], pairs[1::2] = run_starts + 1, run_ends - run_starts
    return " ".join(map(str, pairs.tolist()))


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """The boolean mask (H, W) that `rle` describes for an image of `shape` = (height, width).

    Raises RleError for an odd number of values, non-integers, zero or negative lengths, runs out of order or
    overlapping, and runs past the end of the image.
    """
    height, width = int(shape[0]), int(shape[1])
    if height <= 0 or width <= 0:
        raise RleError(f"image shape {tuple(shape)} must be positive (height, width)", shape)
    n = height * width
    text = rle.strip() if isinstance(rle, str) else ""
    if not isinstance(rle, str):
        raise RleError(f"RLE must be a string of 'start length' pairs, got {type(rle).__name__}", rle)
    if not text:
        return np.zeros((width, height), dtype=bool).T
    starts, ends = rle_runs(text, n, shape_text=f"{height}x{width}")
    lengths = ends - starts
    if starts.size * _PIXELS_PER_RUN >= n:
        # Many runs for the image: lay out gap, run, gap, ..., gap in one np.repeat pass over every pixel.
        counts = np.empty(2 * starts.size + 1, dtype=np.int64)
        counts[1::2] = lengths
        counts[0], counts[2:-1:2], counts[-1] = starts[0], starts[1:] - ends[:-1], n - ends[-1]
        values = np.zeros(counts.size, dtype=bool)
        values[1::2] = True
        flat = np.repeat(values, counts)
    else:
        # Few long runs on a big image: zeros are free (calloc'd pages never touched); paint each run by slice.
        flat = np.zeros(n, dtype=bool)
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            flat[lo:hi] = True
    return flat.reshape(width, height).T


def rle_runs(rle: str, n_pixels: int, shape_text: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The runs of a non-empty RLE string as (starts, ends): 0-based, end exclusive, in column-major pixel order.

    Raises RleError for non-integers, an odd number of values, zero or negative starts and lengths, runs out of
    order or overlapping, and runs past `n_pixels`. `shape_text` ("HxW") only makes the message clearer.
    """
    text = rle.strip()
    if not _DIGITS.fullmatch(text):  # ASCII digits only: no signs, no other scripts' digits, no decimals
        raise RleError(f"RLE {_clip(text)!r} holds a value that is not a whole number", rle)
    fields = text.split()
    if len(fields) % 2:
        raise RleError(f"RLE {_clip(text)!r} has an odd number of values; it needs 'start length' pairs", rle)
    # at most 18 digits fit int64 exactly; then no value may pass the pixel count (so start + length cannot overflow)
    values = np.array(fields, dtype=np.int64) if max(map(len, fields)) <= _MAX_DIGITS else None
    if values is None or (values > n_pixels).any():
        raise RleError(f"RLE {_clip(text)!r} has a value larger than {shape_text or 'the image'} ({n_pixels} pixels)",
                       rle)  # fmt: skip
    starts, lengths = values[0::2] - 1, values[1::2]
    if (starts < 0).any() or (lengths <= 0).any():
        raise RleError(f"RLE {_clip(text)!r} has a start below 1 or a length below 1", rle)
    ends = starts + lengths
    if (starts[1:] < ends[:-1]).any():
        raise RleError(f"RLE {_clip(text)!r} has runs out of order or overlapping", rle)
    if ends[-1] > n_pixels:
        image = f"the {shape_text} image" if shape_text else "the image"
        raise RleError(f"RLE {_clip(text)!r} runs past {image} (to pixel {int(ends[-1])} of {n_pixels})", rle)
    return starts, ends


_DIGITS = re.compile(r"[0-9]+(?:\s+[0-9]+)*", re.ASCII)
_MAX_DIGITS = 18  # int64 holds every 18-digit number; more is past any image anyway


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
