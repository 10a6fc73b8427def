import numpy as np

from kaggle_kit.predict.writers import tags_rows, top_k_rows


def test_tags_use_per_class_thresholds_and_keep_placeholder_items():
    rows = tags_rows(["clear", "haze", "road"], thresholds=[0.5, 0.2, 0.9])
    probs = np.array([[0.6, 0.1, 0.95], [0.4, 0.3, 0.5], [np.nan, np.nan, np.nan]])

    assert rows(["a/x1.jpg", "a/x2.jpg", "a/bad.jpg"], probs) == [("x1", "clear road"), ("x2", "haze"), ("bad", "")]


def test_top_k_gives_three_ids_most_confident_first():
    rows = top_k_rows(["10", "11", "12", "13"], k=3)

    assert rows(["p/a.jpg"], np.array([[0.1, 0.5, 0.3, 0.05]])) == [("a", "11 12 10")]
