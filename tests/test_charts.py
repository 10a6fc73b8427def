"""The classifier's pictures: per-tag numbers with support, threshold and a reason for a tag without bars; the
confusion matrix in counts and shares; each written as a PNG."""

import numpy as np
from PIL import Image

from kaggle_kit.vision.charts import confusion_chart, tag_chart, tag_table


def test_the_tag_table_gives_support_threshold_and_why_a_tag_has_no_bars():
    targets = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=float)
    probs = np.array([[0.9, 0.8, 0.1, 0.1], [0.8, 0.1, 0.1, 0.1], [0.7, 0.9, 0.1, 0.9], [0.1, 0.1, 0.1, 0.1]])

    rows = tag_table(probs, targets, np.array([0.5, 0.5, 0.5, 0.95]))

    assert [r["support"] for r in rows] == [2, 2, 0, 2]
    assert rows[0]["precision"] == 2 / 3
    assert rows[0]["recall"] == 1.0
    assert rows[1]["precision"] == rows[1]["recall"] == 1.0
    assert [r["why_no_bars"] for r in rows] == ["", "", "no validation item has it", "never predicted"]
    assert rows[3]["threshold"] == 0.95
    rows = tag_table(probs, targets, 0.85)
    assert rows[3]["why_no_bars"] == "no true tag found"  # predicted once, on the item that does not have it


def test_pictures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    targets = (rng.random((30, 3)) < 0.4).astype(float)
    labels = rng.integers(0, 3, 50)

    tag_chart(rng.random((30, 3)), targets, 0.5, ["clear", "haze", "a long tag name"], tmp_path / "tags.png")
    confusion_chart(labels[::-1], labels, ["a", "b", "c"], tmp_path / "confusion.png")

    for name in ("tags.png", "confusion.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.format == "PNG"
            assert picture.size[0] > 300
            assert len(set(picture.convert("RGB").getdata())) > 20


def test_long_titles_are_wrapped_not_left_to_overlap_the_next_image():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kaggle_kit.vision.charts import fit_titles

    fig, axes = plt.subplots(3, 3, figsize=(9, 9.5))
    for ax in axes.flat:
        ax.imshow(np.zeros((8, 8)))
        ax.set_title("agriculture clear cultivation habitation primary road water/agriculture clear primary / 2.41")
    fit_titles(fig)
    fig.canvas.draw()
    boxes = [ax.title.get_window_extent() for ax in axes.flat]
    plt.close(fig)

    assert all("\n" in ax.get_title() for ax in axes.flat)
    for left, right in zip(boxes[:2], boxes[1:3], strict=True):  # neighbours in the first row
        assert left.x1 <= right.x0
