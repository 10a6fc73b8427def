import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kaggle_kit.errors import UsageError
from kaggle_kit.imaterialist.data import DataError, format_class_id, parse_class_id, read_labels, read_train_csv
from kaggle_kit.imaterialist.metric import score_readings, score_submission
from kaggle_kit.imaterialist.submission import SubmissionRows
from kaggle_kit.imaterialist.synth import CATEGORY_NAMES, SOLUTION_NAME, make_dataset
from kaggle_kit.vision.rle import rle_decode, rle_encode


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("fashion"), n_train=16, n_test=4, seed=3)


def test_synthetic_labels_follow_the_competition_file(dataset):
    labels = read_labels(dataset / "label_descriptions.json")

    assert list(labels.categories.values()) == CATEGORY_NAMES
    assert len(labels.categories) == 46
    assert labels.categories[31] == "sleeve"
    assert len(labels.attributes) == 92


def test_synthetic_train_csv_is_valid_and_matches_its_images(dataset):
    labels = read_labels(dataset / "label_descriptions.json")

    train = read_train_csv(dataset / "train.csv", labels)

    assert list(train.columns[:5]) == ["ImageId", "EncodedPixels", "Height", "Width", "ClassId"]
    for image_id, group in train.groupby("ImageId"):
        with Image.open(dataset / "train" / image_id) as image:
            assert image.size == (group["Width"].iloc[0], group["Height"].iloc[0])
    assert (train["attributes"].map(len) > 0).any()
    assert train["ClassId"].str.contains("_").any()


def test_synthetic_parts_overlap_their_garments(dataset):
    train = read_train_csv(dataset / "train.csv", read_labels(dataset / "label_descriptions.json"))
    overlaps = 0
    for _image_id, group in train.groupby("ImageId"):
        decoded = [
            (c, rle_decode(r, (h, w)))
            for c, r, h, w in zip(
                group["category"], group["EncodedPixels"], group["Height"], group["Width"], strict=True
            )
        ]
        tops = [m for c, m in decoded if c == 1]
        sleeves = [m for c, m in decoded if c == 31]
        overlaps += sum(bool((t & s).any()) for t in tops for s in sleeves)
    assert overlaps > 0


def test_the_same_seed_gives_the_same_dataset(tmp_path):
    a, b = make_dataset(tmp_path / "a", 3, 1, seed=7), make_dataset(tmp_path / "b", 3, 1, seed=7)

    assert (a / "train.csv").read_bytes() == (b / "train.csv").read_bytes()
    assert sorted(p.name for p in (a / "train").iterdir()) == sorted(p.name for p in (b / "train").iterdir())


def _write_train(tmp_path, dataset, edit):
    frame = pd.read_csv(dataset / "train.csv", dtype=str)
    frame = edit(frame)
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: f.drop(columns=["Height"]), "missing column\\(s\\) Height"),
    (lambda f: f.assign(ClassId=["99"] + list(f["ClassId"][1:])), "line 2 .*unknown category id 99"),
    (lambda f: f.assign(ClassId=list(f["ClassId"][:2]) + ["1_500"] + list(f["ClassId"][3:])),
     "line 4 .*unknown attribute id\\(s\\) \\[500\\]"),
    (lambda f: f.assign(ClassId=["shirt"] + list(f["ClassId"][1:])), "line 2 .*not 'category'"),
    (lambda f: f.assign(EncodedPixels=["1 2 3"] + list(f["EncodedPixels"][1:])), "line 2 .*odd number"),
    (lambda f: f.assign(EncodedPixels=["1 999999999"] + list(f["EncodedPixels"][1:])), "line 2 .*larger than"),
    (lambda f: f.assign(EncodedPixels=["1 5 9223372036854775000 9223372036854775000"] + list(f["EncodedPixels"][1:])),
     "line 2 .*larger than"),
    (lambda f: f.assign(Height=["0"] + list(f["Height"][1:])), "line 2 .*must be positive whole numbers"),
    (lambda f: f.assign(Width=["wide"] + list(f["Width"][1:])), "line 2 .*must be positive whole numbers"),
    (lambda f: f.assign(Height=["42.7"] + list(f["Height"][1:])), "line 2 .*'42.7'.* whole numbers"),
    (lambda f: f.assign(Height=["+1"] + list(f["Height"][1:])), "line 2 .*whole numbers"),
    (lambda f: f.head(1).assign(Height=["100000"], Width=["100000"]), "line 2 .*over 200,000,000 pixels"),
    (lambda f: pd.concat([f.head(1), f.head(1).assign(Height=[str(int(f["Height"][0]) + 1)])]),
     "line 3 .*but line 2 gives this image"),
    (lambda f: pd.concat([f.head(2), f.head(1)]), "line 4 .*repeats line 2 exactly"),
    (lambda f: f.assign(ClassId=["1_2_2"] + list(f["ClassId"][1:])), "line 2 .*out of order or twice"),
    (lambda f: f.assign(ClassId=["+1"] + list(f["ClassId"][1:])), "line 2 .*not 'category'"),
    (lambda f: f.assign(ClassId=["\u0661"] + list(f["ClassId"][1:])), "line 2 .*not 'category'"),
])  # fmt: skip
def test_train_csv_errors_name_the_row(edit, message, dataset, tmp_path):
    labels = read_labels(dataset / "label_descriptions.json")

    with pytest.raises(DataError, match=message):
        read_train_csv(_write_train(tmp_path, dataset, edit), labels)


ONE_ATTRIBUTE = [{"id": 0, "name": "x"}]


@pytest.mark.parametrize(("labels", "message"), [
    ({"categories": [{"id": 0, "name": "a"}, {"id": 0, "name": "b"}], "attributes": ONE_ATTRIBUTE},
     "categories\\[1\\] repeats id 0"),
    ({"categories": [], "attributes": ONE_ATTRIBUTE}, "the 'categories' list is empty"),
    ({"categories": [{"id": True, "name": "a"}], "attributes": ONE_ATTRIBUTE}, "categories\\[0\\] .* integer 'id'"),
    ({"categories": [{"id": 1, "name": None}], "attributes": ONE_ATTRIBUTE}, "categories\\[0\\] .*'name' string"),
    ({"categories": [{"id": 1, "name": "a"}], "attributes": [{"id": "2", "name": "b"}]}, "attributes\\[0\\]"),
])  # fmt: skip
def test_label_file_errors_are_clear(labels, message, tmp_path):
    bad = tmp_path / "label_descriptions.json"
    bad.write_text(json.dumps(labels))

    with pytest.raises(DataError, match=message):
        read_labels(bad)


def test_a_train_row_with_an_extra_field_is_a_clear_error(dataset, tmp_path):
    lines = (dataset / "train.csv").read_text().splitlines()
    (tmp_path / "train.csv").write_text("\n".join([lines[0], lines[1] + ",extra", *lines[2:]]) + "\n")

    with pytest.raises(DataError, match="cannot read as CSV"):
        read_train_csv(tmp_path / "train.csv", read_labels(dataset / "label_descriptions.json"))
    (tmp_path / "train.csv").write_text("\n".join([*lines[:3], lines[3] + ",extra", *lines[4:]]) + "\n")
    with pytest.raises(DataError, match="Expected 5 fields in line 4, saw 6"):
        read_train_csv(tmp_path / "train.csv", read_labels(dataset / "label_descriptions.json"))


def test_class_ids_parse_and_format():
    assert parse_class_id("6_28_77") == (6, (28, 77))
    assert parse_class_id("23") == (23, ())
    assert format_class_id(6, (77, 28)) == "6_28_77"


def _solution(masks):
    h, w = masks[0][1].shape
    return pd.DataFrame(
        [("img.jpg", rle_encode(m), h, w, c) for c, m in masks],
        columns=["ImageId", "EncodedPixels", "Height", "Width", "ClassId"],
    )


def _box(h, w, top, left, bottom, right):
    m = np.zeros((h, w), bool)
    m[top:bottom, left:right] = True
    return m


def test_metric_is_one_for_a_perfect_submission_in_both_modes():
    truth = _solution([("1_0_3", _box(20, 20, 0, 0, 10, 10)), ("31", _box(20, 20, 0, 0, 4, 4))])

    for mode in ("category", "full"):
        assert score_submission(truth[["ImageId", "EncodedPixels", "ClassId"]], truth, mode) == 1.0


def test_wrong_attributes_count_only_in_full_mode():
    truth = _solution([("1_0_3", _box(20, 20, 0, 0, 10, 10))])
    pred = truth.assign(ClassId="1_2")

    assert score_submission(pred, truth, "category") == 1.0
    assert score_submission(pred, truth, "full") == 0.0


def test_metric_averages_over_iou_thresholds():
    truth = _solution([("8", _box(10, 10, 0, 0, 10, 10))])
    pred = truth.assign(EncodedPixels=rle_encode(_box(10, 10, 0, 0, 7, 10)))  # IoU 0.7

    # matched at 0.50, 0.55, 0.60, 0.65: 4 of 10 thresholds
    assert score_submission(pred, truth, "category") == pytest.approx(0.4)


def test_a_missing_image_scores_zero_and_extra_predictions_cost():
    truth = _solution([("8", _box(10, 10, 0, 0, 10, 10))])
    extra = pd.concat([truth, truth.assign(EncodedPixels=rle_encode(_box(10, 10, 0, 0, 2, 2)))])

    assert score_submission(truth.iloc[0:0], truth) == 0.0
    assert score_submission(extra, truth) == pytest.approx(0.5)  # TP 1, FP 1


def _three_shirts_and(extra):
    """Truth: three shirts (category 1) predicted perfectly; `extra` = ("truth" | "pred", class, mask) adds one more
    object of another category to one side only."""
    shirts = [("1", _box(30, 30, 0, 10 * i, 5, 10 * i + 5)) for i in range(3)]
    side, class_id, mask = extra
    truth = _solution(shirts + ([(class_id, mask)] if side == "truth" else []))
    pred = _solution(shirts + ([(class_id, mask)] if side == "pred" else []))[["ImageId", "EncodedPixels", "ClassId"]]
    return pred, truth


@pytest.mark.parametrize("side", ["truth", "pred"])  # a missed category; a predicted category absent from the truth
def test_the_class_average_scores_each_category_alone(side):
    pred, truth = _three_shirts_and((side, "31", _box(30, 30, 20, 20, 30, 30)))

    assert score_submission(pred, truth, "category", average="image") == pytest.approx(0.75)  # TP 3 of 4 objects
    assert score_submission(pred, truth, "category", average="class") == pytest.approx(0.5)  # shirts 1, the other 0


def test_the_averages_agree_when_each_image_has_one_category_and_readings_match_single_scores():
    truth = _solution([("8", _box(10, 10, 0, 0, 10, 10))])
    pred = truth.assign(EncodedPixels=rle_encode(_box(10, 10, 0, 0, 7, 10)), ClassId="8_1")  # IoU 0.7, attribute off
    pred, truth = pred[["ImageId", "EncodedPixels", "ClassId"]], truth

    readings = score_readings(pred, truth)
    assert readings == {"category": pytest.approx(0.4), "full": 0.0, "category/class": pytest.approx(0.4),
                        "full/class": 0.0}  # fmt: skip
    mixed_pred, mixed_truth = _three_shirts_and(("truth", "31_2", _box(30, 30, 20, 20, 30, 30)))
    for key, value in score_readings(mixed_pred, mixed_truth).items():
        mode, _, average = key.partition("/")
        assert value == pytest.approx(score_submission(mixed_pred, mixed_truth, mode, average or "image")), key


def test_an_unknown_average_is_a_usage_error():
    truth = _solution([("8", _box(10, 10, 0, 0, 10, 10))])
    with pytest.raises(UsageError, match="average='pixel'"):
        score_submission(truth, truth, average="pixel")


def test_submission_rows_find_instances_at_the_original_size(tmp_path):
    image = tmp_path / "img.jpg"
    Image.new("RGB", (200, 100), (200, 200, 200)).save(image)
    probs = np.zeros((46, 20, 20), np.float32)
    probs[1, 2:8, 2:8] = 0.9  # a top
    probs[1, 12:18, 12:18] = 0.8  # a second top, not touching the first
    probs[23, 0, 0] = 0.9  # a one-pixel shoe: too small, dropped
    rows = SubmissionRows(
        list(range(46)), attributes=lambda crops: [[3, 0]] * len(crops), attribute_categories=[1], min_area=0.01
    )

    out = rows([image], probs[None])

    assert [r[2] for r in out] == ["1_0_3", "1_0_3"]
    first = rle_decode(out[0][1], (100, 200))
    assert first.sum() == 30 * 60  # 6 x 6 cells of 5 x 10 pixels
    assert first[10:40, 20:80].all()


def test_every_image_gets_a_row_even_with_nothing_found(tmp_path):
    image = tmp_path / "empty.jpg"
    Image.new("RGB", (50, 40)).save(image)

    out = SubmissionRows(list(range(46)), None, fallback_class=8)([image], np.zeros((1, 46, 8, 8), np.float32))

    assert out == [("empty.jpg", "1 1", "8")]


def test_the_solution_file_scores_itself_perfectly(dataset):
    solution = pd.read_csv(dataset / SOLUTION_NAME, dtype={"ClassId": str})

    assert score_submission(solution[["ImageId", "EncodedPixels", "ClassId"]], solution, "full") == 1.0
    assert set(solution["ImageId"]) == {p.name for p in (dataset / "test").glob("*.jpg")}


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**65), 2**65), st.integers(-(2**65), 2**65), st.integers(-(2**65), 2**65),
       st.integers(-(2**65), 2**65))  # fmt: skip
def test_train_csv_with_extreme_integers_is_read_or_refused_in_one_line(height, width, start, length):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        labels_path = Path(tmp) / "labels.json"
        labels_path.write_text(json.dumps({"categories": [{"id": 1, "name": "shirt"}],
                                           "attributes": [{"id": 2, "name": "long"}]}))  # fmt: skip
        csv_path = Path(tmp) / "train.csv"
        csv_path.write_text(f"ImageId,EncodedPixels,Height,Width,ClassId\na.jpg,{start} {length},{height},{width},1\n")
        try:
            frame, message = read_train_csv(csv_path, read_labels(labels_path)), None
        except DataError as exc:
            frame, message = None, str(exc)
    if frame is None:
        assert "\n" not in message
        return
    assert start >= 1
    assert length >= 1
    assert start + length - 1 <= height * width
    assert frame["Height"].tolist() == [height]


def _rows_the_old_way(rows_writer, path, prob):
    """SubmissionRows as it was: every instance upscaled to a full-size mask, then encoded."""
    from scipy import ndimage

    from kaggle_kit.imaterialist.masks import resize_nearest
    from kaggle_kit.vision.rle import rle_encode

    with Image.open(path) as opened:
        width, height = opened.size
    out = []
    for channel, category in enumerate(rows_writer.category_ids):
        labels, n = ndimage.label(prob[channel] > rows_writer.post.default.threshold)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        for label in range(1, n + 1):
            if sizes[label] >= rows_writer.post.default.min_area * prob.shape[1] * prob.shape[2]:
                out.append((path.name, rle_encode(resize_nearest(labels == label, height, width)), str(category)))
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(33, 400), st.integers(33, 400))
def test_submission_rows_are_the_same_strings_as_upscaling_every_mask(seed, height, width):
    import tempfile

    from scipy import ndimage

    from kaggle_kit.imaterialist.submission import SubmissionRows

    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((3, 32, 32)), 1.5)  # blobs of every size, touching the borders
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    writer = SubmissionRows([4, 7, 9], None, threshold=0.55, min_area=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img.jpg"
        Image.new("RGB", (width, height)).save(path)

        assert writer.image_rows(path, prob) == (_rows_the_old_way(writer, path, prob) or
                                                 [(path.name, "1 1", str(writer.fallback_class))])  # fmt: skip


def test_stage2_validates_on_the_photos_stage1_validates_on(dataset, tmp_path):
    from kaggle_kit.imaterialist.stage2 import build_crops, stage2_learner

    labels = read_labels(dataset / "label_descriptions.json")
    train = read_train_csv(dataset / "train.csv", labels)
    crops = build_crops(train, dataset / "train", 32, tmp_path, [1, 6, 8])
    held = sorted(crops["ImageId"].unique())[:3]

    learn = stage2_learner(crops, labels.attribute_ids, 32, 4, valid_images=held)

    valid = learn.dls.valid.items
    assert set(valid["ImageId"]) == set(held)
    assert not set(learn.dls.train.items["ImageId"]) & set(held)  # no crop of a held-out photo is trained on


def test_tuned_rules_travel_as_json_and_a_cut_file_is_a_one_line_error():
    from kaggle_kit.imaterialist.data import DataError
    from kaggle_kit.imaterialist.postprocess import CategoryRule, PostProcessing
    from kaggle_kit.imaterialist.rules import TunedRules

    held_out = PostProcessing([1, 2], CategoryRule(0.4, 0.001))
    rules = TunedRules({"model": "abc", "tta": None}, held_out, PostProcessing([1, 2], CategoryRule(0.6, 0.0)),
                       {"tuned_on": 3})  # fmt: skip

    again = TunedRules.from_json(rules.to_json(), "rules.json")

    assert (again.key, again.held_out.as_dict(), again.submission.as_dict(), again.report) == (
        {"model": "abc", "tta": None},
        rules.held_out.as_dict(),
        rules.submission.as_dict(),
        {"tuned_on": 3},
    )
    with pytest.raises(DataError, match=r"^model/rules.json is not a set of tuned rules \(JSONDecodeError"):
        TunedRules.from_json(rules.to_json()[:40], "model/rules.json")
