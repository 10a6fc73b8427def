import numpy as np
import pytest
from sklearn.metrics import fbeta_score as sk_fbeta

from kaggle_kit.metrics import fbeta_score, search_thresholds

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
