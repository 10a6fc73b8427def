"""Post-processing rules, their tuning on the metric, the per-category report and the realistic synthetic profile."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from kaggle_kit.imaterialist.data import read_labels, read_train_csv
from kaggle_kit.imaterialist.metric import image_score, score_by_category, score_submission
from kaggle_kit.imaterialist.postprocess import CategoryRule, PostProcessing, components, exclusive_categories
from kaggle_kit.imaterialist.report import category_chart, category_table
from kaggle_kit.imaterialist.synth import make_dataset
from kaggle_kit.imaterialist.tuning import RuleSearch
from kaggle_kit.vision.rle import rle_decode, rle_encode


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_touching_instances_are_split_and_thin_ones_are_not():
    left, right = _disc((40, 60), 20, 18, 9), _disc((40, 60), 20, 35, 9)  # touching over a few pixels
    assert ndimage.label(left | right)[1] == 1
    labels, sizes = components(left | right, split="shape")
    parts = [labels == k for k in np.flatnonzero(sizes)]
    assert len(parts) == 2
    for truth in (left, right):
        assert max((p & truth).sum() / (p | truth).sum() for p in parts) > 0.85
    sleeve = np.zeros((40, 60), bool)
    sleeve[5:35, 20:26] = True
    _labels, sizes = components(sleeve, split="shape")
    assert np.count_nonzero(sizes) == 1


def test_instances_merged_above_the_threshold_are_split_at_the_probability_dip():
    yy, xx = np.mgrid[:30, :60]
    prob = np.maximum(
        np.exp(-((yy - 15) ** 2 + (xx - 20) ** 2) / 120), np.exp(-((yy - 15) ** 2 + (xx - 40) ** 2) / 120)
    )
    binary = prob > 0.2  # one blob: the two bumps merge above 0.2, with a dip at x = 30
    assert ndimage.label(binary)[1] == 1

    labels, sizes = components(binary, "peaks", prob)

    assert np.count_nonzero(sizes) == 2
    assert labels[15, 20] != labels[15, 40]
    assert np.count_nonzero(components(binary, None)[1]) == 1


def test_each_category_gets_its_own_rule_and_the_rules_survive_json():
    prob = np.zeros((2, 20, 20), np.float32)
    prob[0, 2:8, 2:8] = 0.35  # category 5: only found with a low threshold
    prob[1, 2:8, 2:8] = 0.9  # category 9: a big instance
    prob[1, 15, 15] = 0.9  # and a speck
    post = PostProcessing([5, 9], CategoryRule(0.5, 0.0), {5: CategoryRule(0.3, 0.0), 9: CategoryRule(0.5, 0.01)})

    found = [(c, int(m.sum())) for c, m in post.instances(prob)]
    again = PostProcessing.from_dict(json.loads(json.dumps(post.as_dict())))

    assert found == [(5, 36), (9, 36)]
    assert [(c, int(m.sum())) for c, m in again.instances(prob)] == found
    assert again.signature() == post.signature()


def _tuning_images(rng, n):
    """Category 1's objects get probability 0.35 (below the default 0.5); category 2 is never true but the model
    scatters confident specks; category 3 is right at the default."""
    images = []
    for _ in range(n):
        prob = rng.uniform(0, 0.1, (3, 32, 32)).astype(np.float32)
        truth = {1: [_disc((32, 32), 10, 10, 5)], 3: [_disc((32, 32), 22, 22, 6)]}
        prob[0][truth[1][0]] = 0.35
        prob[2][truth[3][0]] = 0.8
        for y, x in rng.integers(0, 32, (3, 2)):
            prob[1, y, x] = 0.95
        images.append((prob, truth))
    return images


def test_tuning_finds_the_rules_the_metric_wants_and_its_counts_are_the_metric():
    images = _tuning_images(np.random.default_rng(0), 6)
    search = RuleSearch([1, 2, 3], CategoryRule(0.5, 0.0))
    for prob, truth in images:
        search.add(prob, truth)

    post, report = search.best()

    assert post.rule(1).threshold < 0.35  # finds category 1's objects
    assert post.rule(2).min_area > 1 / 32**2 or post.rule(2).threshold >= 0.95  # drops category 2's specks
    assert post.rule(3) == CategoryRule(0.5, 0.0)  # the default where nothing better exists
    assert report["score_tuned"] > report["score_default"] + 0.3
    for rules in (post, PostProcessing([1, 2, 3], CategoryRule(0.5, 0.0))):
        direct = np.mean([image_score(
            [(str(c), m) for c, m in rules.instances(prob)],
            [(str(c), m) for c, masks in truth.items() for m in masks],
        ) for prob, truth in images])  # fmt: skip
        assert search.evaluate(rules)["score"] == pytest.approx(direct)


def test_merged_searches_choose_as_one_search_over_all_their_images():
    images = _tuning_images(np.random.default_rng(1), 6)
    whole, first, second = (RuleSearch([1, 2, 3], CategoryRule(0.5, 0.0)) for _ in range(3))
    for i, (prob, truth) in enumerate(images):
        whole.add(prob, truth)
        (first if i < 2 else second).add(prob, truth)

    merged = first.merged(second)

    assert len(merged) == len(whole) == 6
    assert len(first) == 2  # the parts are left as they were
    assert merged.best()[0].as_dict() == whole.best()[0].as_dict()
    assert merged.best()[1] == whole.best()[1]
    with pytest.raises(ValueError, match="exclusive"):
        first.merged(RuleSearch([1, 2, 3], CategoryRule(0.5, 0.0), exclusive=[1, 2]))


def test_per_category_scores_say_which_category_fails():
    a, b = _disc((30, 30), 8, 8, 5), _disc((30, 30), 20, 20, 6)
    solution = pd.DataFrame([("img", rle_encode(a), 30, 30, "1"), ("img", rle_encode(b), 30, 30, "2")],
                            columns=["ImageId", "EncodedPixels", "Height", "Width", "ClassId"])  # fmt: skip
    submission = pd.DataFrame([("img", rle_encode(a), "1"), ("img", rle_encode(a), "2")],
                              columns=["ImageId", "EncodedPixels", "ClassId"])  # fmt: skip

    per_category = score_by_category(submission, solution)

    assert per_category == {1: {"score": 1.0, "images": 1}, 2: {"score": 0.0, "images": 1}}
    assert score_submission(submission, solution) == pytest.approx(1 / 3)


def test_the_category_report_lists_missed_categories_and_draws_a_png(tmp_path):
    data = make_dataset(tmp_path / "d", n_train=2, n_test=1, seed=0)
    labels = read_labels(data / "label_descriptions.json")
    model = {1: {"score": 0.5, "images": 3}, 13: {"score": 0.0, "images": 0}}
    baseline = {1: {"score": 0.1, "images": 3}, 23: {"score": 0.0, "images": 2}}

    rows = category_table(model, baseline, labels)
    said = category_chart(rows, tmp_path / "chart.png")

    assert [(r["id"], r["score"], r["baseline"]) for r in rows] == [(1, 0.5, 0.1), (23, 0.0, 0.0)]
    assert rows[1]["name"] == "shoe"
    assert said == ["Per category (images it is in)", "0.00", "0.50", "0.00", "0.10"]
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.format == "PNG"
        assert chart.width > 300


def test_a_category_chart_where_every_score_is_0_says_so_on_every_bar(tmp_path):
    data = make_dataset(tmp_path / "d", n_train=2, n_test=1, seed=0)
    labels = read_labels(data / "label_descriptions.json")
    nothing = {1: {"score": 0.0, "images": 3}, 23: {"score": 0.0, "images": 2}}

    said = category_chart(category_table(nothing, nothing, labels), tmp_path / "zero.png")

    assert said[0].endswith("every score is 0, no category found yet")
    assert said[1:] == ["0.00"] * 4  # model and baseline, each category: a value where the bar has no length
    with Image.open(tmp_path / "zero.png") as chart:
        assert chart.width > 300


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    data = make_dataset(tmp_path_factory.mktemp("realistic"), n_train=60, n_test=4, min_size=100, max_size=900,
                        profile="realistic", seed=7)  # fmt: skip
    labels = read_labels(data / "label_descriptions.json")
    return data, read_train_csv(data / "train.csv", labels)


def test_the_realistic_profile_has_the_real_datas_shape(realistic):
    _data, train = realistic
    areas = np.array([rle_decode(r, (h, w)).mean() for r, h, w in
                      zip(train["EncodedPixels"], train["Height"], train["Width"], strict=True)])  # fmt: skip
    counts = train["category"].value_counts()

    assert 6 <= len(train) / train["ImageId"].nunique() <= 11  # the real data: ~7.3 objects per image
    assert np.median(areas) < 0.01  # mostly small parts
    assert list(counts.index[:2]) == [31, 23]  # sleeves, then shoes, as in the real train.csv
    assert {33, 32}.issubset(counts.index[:6])  # necklines and pockets among the most common
    long_sides = train.groupby("ImageId")[["Height", "Width"]].first().max(axis=1)
    assert long_sides.min() < 200
    assert long_sides.max() > 600


def test_the_realistic_profile_has_touching_shoes_and_occlusion(realistic):
    _data, train = realistic
    touching, hidden_tops = 0, []
    for _image_id, rows in train.groupby("ImageId"):
        masks = [(c, rle_decode(r, (h, w))) for r, h, w, c in
                 zip(rows["EncodedPixels"], rows["Height"], rows["Width"], rows["category"], strict=True)]  # fmt: skip
        shoes = [m for c, m in masks if c == 23]
        if len(shoes) == 2 and (ndimage.binary_dilation(shoes[0]) & shoes[1]).any():
            touching += 1
            assert not (shoes[0] & shoes[1]).any()  # visible masks: the front shoe hides the other
        garments = [m for c, m in masks if c < 27]  # whole garments and accessories, not their parts
        assert not any((a & b).any() for i, a in enumerate(garments) for b in garments[i + 1 :])  # visible masks
        tops, jackets = [m for c, m in masks if c in (0, 1)], [m for c, m in masks if c == 4]
        if tops and jackets:
            hidden_tops.append(tops[0].sum() / jackets[0].sum())
    assert touching >= 5
    assert hidden_tops
    assert max(hidden_tops) < 0.6


def test_fragments_beyond_max_instances_are_dropped_largest_kept():
    prob = np.zeros((1, 30, 30), np.float32)
    prob[0, 0:10, 0:10] = prob[0, 20:23, 20:23] = prob[0, 0:5, 20:26] = 0.9
    one = PostProcessing([6], CategoryRule(0.5, 0.0, max_instances=1))
    two = PostProcessing([6], CategoryRule(0.5, 0.0, max_instances=2))

    assert [int(m.sum()) for _c, m in one.instances(prob)] == [100]
    assert sorted(int(m.sum()) for _c, m in two.instances(prob)) == [30, 100]


def test_exclusive_categories_are_the_ones_that_never_share_pixels_and_keep_the_likelier():
    top, pants, sleeve = np.zeros((3, 10, 10), bool)
    top[0:5], pants[5:10], sleeve[0:5, 0:2] = True, True, True  # a sleeve is part of the top
    assert exclusive_categories([{1: top, 6: pants, 31: sleeve}] * 3) == [1, 6]

    prob = np.zeros((3, 10, 10), np.float32)
    prob[0, :, :] = 0.6  # "top" everywhere, a bit less likely than "pants" on the lower half
    prob[1, 5:, :] = 0.8
    prob[2, 0:5, 0:2] = 0.9  # the sleeve is not in the group: untouched
    post = PostProcessing([1, 6, 31], CategoryRule(0.5, 0.0), exclusive=[1, 6])

    found = {c: m for c, m in post.instances(prob)}
    assert found[1].sum() == 50
    assert found[6].sum() == 50
    assert found[31].sum() == 10
    assert PostProcessing.from_dict(post.as_dict()).exclusive == [1, 6]


def test_mask_overlays_draw_true_and_predicted_masks_in_category_colours(tmp_path):
    from kaggle_kit.imaterialist.report import mask_overlays

    data = make_dataset(tmp_path / "d", n_train=2, n_test=1, seed=0)
    labels = read_labels(data / "label_descriptions.json")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 60, 3), 255, np.uint8)).save(photo)
    left, right = np.zeros((40, 60), bool), np.zeros((40, 60), bool)
    left[:, :30], right[:, 30:] = True, True
    truth = pd.DataFrame({"EncodedPixels": [rle_encode(left)], "ClassId": ["23"]})
    predicted = pd.DataFrame({"EncodedPixels": [rle_encode(right), "1 1"], "ClassId": ["31", "23"]})

    drawn = mask_overlays([(photo, truth, predicted)], labels, tmp_path / "masks.png")

    assert drawn == [{"image": "photo.png", "true": [23], "predicted": [31]}]  # "1 1" (nothing found) is not drawn
    with Image.open(tmp_path / "masks.png") as picture:
        assert picture.format == "PNG"
        assert len(set(picture.convert("RGB").getdata())) > 10
