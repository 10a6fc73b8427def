import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kaggle_kit.vision.rle import RleError, rle_decode, rle_encode


def classic_encode(mask):
    """The encoder from Kaggle's kernels, as Kagglers paste it."""
    pixels = mask.T.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def classic_decode(rle, shape):
    """The loop decoder from Kaggle's kernels."""
    s = rle.split()
    starts, lengths = (np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2]))
    starts -= 1
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, starts + lengths, strict=True):
        img[lo:hi] = 1
    return img.reshape(shape[1], shape[0]).T


masks = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(lambda s: arrays(np.bool_, s))


@settings(max_examples=300, deadline=None)
@given(masks)
def test_encode_matches_the_classic_encoder_and_round_trips(mask):
    rle = rle_encode(mask)

    assert rle == classic_encode(mask.astype(np.uint8))
    np.testing.assert_array_equal(rle_decode(rle, mask.shape), mask)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 3), (3, 5)])
def test_empty_and_full_masks(shape):
    empty, full = np.zeros(shape, bool), np.ones(shape, bool)

    assert rle_encode(empty) == ""
    assert rle_encode(full) == f"1 {shape[0] * shape[1]}"
    np.testing.assert_array_equal(rle_decode(rle_encode(full), shape), full)
    np.testing.assert_array_equal(rle_decode("", shape), empty)


def test_runs_are_numbered_top_to_bottom_then_left_to_right():
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)  # column 0: row 1; column 1: rows 0-1

    assert rle_encode(mask) == "2 1 4 2"


def test_a_run_crossing_a_column_boundary_is_one_run():
    mask = np.zeros((3, 2), bool)
    mask[2, 0] = mask[0, 1] = True  # the bottom of column 0 then the top of column 1: pixels 3 and 4

    assert rle_encode(mask) == "3 2"


def test_decoding_accepts_touching_runs():
    np.testing.assert_array_equal(rle_decode("1 2 3 1", (2, 2)), np.array([[1, 1], [1, 0]], bool))


@pytest.mark.parametrize(("rle", "message"), [
    ("1 2 3", "odd number of values"),
    ("1 x", "not a whole number"),
    ("+1 2", "not a whole number"),
    ("1 2.0", "not a whole number"),
    ("0 3", "start below 1"),
    ("1 0", "length below 1"),
    ("5 2 1 2", "out of order or overlapping"),
    ("1 3 2 2", "out of order or overlapping"),
    ("5 10", "past the 3x4 image"),
])  # fmt: skip
def test_malformed_strings_are_clear_errors(rle, message):
    with pytest.raises(RleError, match=message):
        rle_decode(rle, (3, 4))


def test_encode_rejects_a_mask_that_is_not_2d():
    with pytest.raises(RleError, match="needs a 2-D mask"):
        rle_encode(np.zeros((2, 2, 2)))


def test_integer_masks_count_nonzero_as_foreground():
    mask = np.array([[0, 3], [255, 0]], np.uint8)

    assert rle_encode(mask) == "2 2"


extreme = st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([0, 1, 2**31, 2**63 - 1, 2**63, 2**64])


@settings(max_examples=400, deadline=None)
@given(st.lists(extreme, max_size=8), st.integers(1, 40), st.integers(1, 40))
def test_decoding_any_integers_gives_a_mask_or_a_clear_error(values, height, width):
    rle = " ".join(map(str, values))
    try:
        mask = rle_decode(rle, (height, width))
    except RleError as exc:
        message = str(exc)
        mask = None
    if mask is None:
        assert "\n" not in message
        return
    assert mask.shape == (height, width)
    assert np.array_equal(rle_decode(rle_encode(mask), (height, width)), mask)


def test_huge_values_never_wrap_around():
    with pytest.raises(RleError, match="larger than"):
        rle_decode("1 5 9223372036854775000 9223372036854775000", (100, 100))
    with pytest.raises(RleError, match="larger than"):
        rle_decode("2 9223372036854775807", (100, 100))


@settings(max_examples=400, deadline=None)
@given(masks, st.integers(1, 90), st.integers(1, 90))
def test_encoding_at_another_size_equals_resizing_then_encoding(mask, height, width):
    from kaggle_kit.vision.rle import nearest_index, rle_encode_resized

    resized = mask[nearest_index(mask.shape[0], height)][:, nearest_index(mask.shape[1], width)]

    assert rle_encode_resized(mask, height, width) == rle_encode(resized)
