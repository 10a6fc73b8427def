import numpy as np
import pytest
from sklearn.metrics import f1_score, top_k_accuracy_score
from sklearn.metrics import fbeta_score as sk_fbeta

from kaggle_kit.metrics import (
    accuracy_thresh,
    fbeta_metric,
    fbeta_score,
    mean_f1,
    search_thresholds,
    top_k_error,
    top_k_error_metric,
)

rng = np.random.default_rng(0)
PROBS = rng.random((200, 17))
TARGETS = (rng.random((200, 17)) < 0.25).astype(float)


def test_fbeta_matches_scikit_learn_sample_average():
    expected = sk_fbeta(TARGETS, PROBS >= 0.2, beta=2, average="samples", zero_division=0)

    assert fbeta_score(PROBS, TARGETS, beta=2, threshold=0.2) == pytest.approx(expected)


def test_mean_f1_matches_scikit_learn():
    expected = f1_score(TARGETS, PROBS >= 0.5, average="samples", zero_division=0)

    assert mean_f1(PROBS, TARGETS) == pytest.approx(expected)


def test_top_3_error_matches_scikit_learn():
    scores = rng.random((300, 10))
    labels = rng.integers(0, 10, 300)

    expected = 1 - top_k_accuracy_score(labels, scores, k=3, labels=np.arange(10))

    assert top_k_error(scores, labels, k=3) == pytest.approx(expected)


def test_accuracy_at_threshold_is_elementwise():
    assert accuracy_thresh(PROBS, TARGETS, 0.5) == pytest.approx(((PROBS >= 0.5) == (TARGETS > 0.5)).mean())


def test_threshold_search_does_at_least_as_well_as_any_single_threshold():
    informative = np.clip(TARGETS * 0.3 + PROBS * 0.7, 0, 1)

    thresholds = search_thresholds(informative, TARGETS, beta=2)

    best_single = max(fbeta_score(informative, TARGETS, 2, t) for t in np.arange(0.02, 0.99, 0.02))
    assert thresholds.shape == (17,)
    assert fbeta_score(informative, TARGETS, 2, thresholds) >= best_single - 1e-12


def test_fastai_metrics_give_the_array_numbers_during_validation(learners):
    multi, single = learners("multi"), learners("single")
    multi.metrics = [fbeta_metric(beta=2, threshold=0.2)]
    single.metrics = [top_k_error_metric(k=1)]

    with multi.no_bar(), single.no_bar():
        f2 = multi.validate()[1]
        probs, targets = multi.get_preds()
        top1 = single.validate()[1]
        scores, labels = single.get_preds()

    assert f2 == pytest.approx(fbeta_score(probs.numpy(), targets.numpy(), 2, 0.2), rel=1e-6)
    assert top1 == pytest.approx(top_k_error(scores.numpy(), labels.numpy(), 1))
    assert single.metrics[0].name == "top_1_error"
