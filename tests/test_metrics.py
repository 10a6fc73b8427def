import numpy as np
import pytest
from sklearn.metrics import fbeta_score as sk_fbeta

from kaggle_kit.vision.metrics import fbeta_score, search_thresholds

rng = np.random.default_rng(0)
PROBS = rng.random((200, 17))
TARGETS = (rng.random((200, 17)) < 0.25).astype(float)


def test_fbeta_matches_scikit_learn_sample_average_with_per_class_thresholds():
    thresholds = np.linspace(0.1, 0.6, 17)
    expected = sk_fbeta(TARGETS, np.greater_equal(PROBS, thresholds), beta=2, average="samples", zero_division=0)

    assert fbeta_score(PROBS, TARGETS, beta=2, threshold=thresholds) == pytest.approx(expected)


def test_threshold_search_does_at_least_as_well_as_any_single_threshold():
    informative = np.clip(TARGETS * 0.3 + PROBS * 0.7, 0, 1)

    thresholds = search_thresholds(informative, TARGETS, beta=2)

    best_single = max(fbeta_score(informative, TARGETS, 2, t) for t in np.arange(0.02, 0.99, 0.02))
    assert thresholds.shape == (17,)
    assert fbeta_score(informative, TARGETS, 2, thresholds) >= best_single - 1e-12


def test_thresholds_tuned_on_one_half_are_worse_on_the_other_than_where_tuned():
    noisy = np.clip(TARGETS * 0.15 + PROBS * 0.85, 0, 1)  # weakly informative: tuning overfits its own half
    tune, held = np.arange(200) < 100, np.arange(200) >= 100

    thresholds = search_thresholds(noisy[tune], TARGETS[tune], beta=2)

    assert fbeta_score(noisy[tune], TARGETS[tune], 2, thresholds) > fbeta_score(noisy[held], TARGETS[held], 2,
                                                                               thresholds)  # fmt: skip


def test_single_label_validation_counts_accuracy_top_k_and_the_most_common_class():
    from kaggle_kit.vision.metrics import single_label_validation

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    labels = np.array([0, 0, 1, 1])  # the second is not in its top 2; the third is, second

    scores = single_label_validation(probs, labels, k=2)

    assert scores == {"accuracy": 0.5, "top_2_error": 0.25, "baseline_accuracy": 0.5}


def test_multi_label_validation_scores_on_items_it_did_not_tune_on():
    from kaggle_kit.vision.metrics import fbeta_score, multi_label_validation

    rng = np.random.default_rng(0)
    targets = (rng.random((40, 3)) > 0.5).astype(float)
    probs = np.clip(targets * 0.6 + rng.random((40, 3)) * 0.5, 0, 1)

    thresholds, scores = multi_label_validation(probs, targets, beta=2, start=0.2)

    assert (scores["tuned_on"], scores["scored_on"]) == (20, 20)
    assert scores["f_beta"] == fbeta_score(probs[1::2], targets[1::2], 2, thresholds)
    assert scores["thresholds_used"] == "tuned"
    assert thresholds.shape == (3,)


def test_thresholds_tuned_worse_than_the_start_on_held_out_items_are_not_used():
    from kaggle_kit.vision.metrics import multi_label_validation

    targets = np.array([[1.0, 0.0], [0.0, 1.0]] * 20)  # items 0, 2, ... tune; 1, 3, ... are held out
    tune_probs = np.where(targets > 0.5, 0.5, 0.3)  # tuned threshold: about 0.4
    held_probs = np.where(targets > 0.5, 0.35, 0.1)  # 0.4 misses every positive here; 0.2 separates them
    probs = np.where((np.arange(40) % 2 == 0)[:, None], tune_probs, held_probs)

    thresholds, scores = multi_label_validation(probs, targets, beta=2, start=0.2)

    assert scores["thresholds_used"] == "start"
    assert thresholds.tolist() == [0.2, 0.2]
    assert scores["f_beta"] == scores["f_beta_at_start_threshold"] == 1.0
    assert scores["f_beta_tuned"] < 0.5


def test_a_flat_best_stretch_gives_its_middle_not_its_lowest_value():
    from kaggle_kit.vision.metrics import middle_of_best

    targets = np.array([[1, 1], [0, 1], [1, 0], [0, 0]] * 10, dtype=float)
    probs = np.where(targets > 0.5, 0.9, 0.1)  # every threshold in (0.1, 0.9] separates both classes perfectly
    probs[:, 1] = np.where(targets[:, 1] > 0.5, 0.7, 0.3)  # class 1: perfect on (0.3, 0.7]

    thresholds = search_thresholds(probs, targets, beta=2)

    assert thresholds[0] == pytest.approx(0.5, abs=0.03)  # about 0.12 .. 0.88 on the 0.02 grid; argmax gives 0.12
    assert thresholds[1] == pytest.approx(0.5, abs=0.03)  # about 0.32 .. 0.70
    assert fbeta_score(probs, targets, 2, thresholds) == fbeta_score(probs, targets, 2, 0.5)  # the best there is
    grid = np.arange(5) / 10
    assert middle_of_best(grid, np.array([0.1, 0.9, 0.5, 0.9, 0.9])) == 0.3  # the longer stretch: 0.3, 0.4
    assert middle_of_best(grid, np.array([0.9, 0.1, 0.5, 0.2, 0.1])) == 0.0
