import json

import pytest

from kaggle_kit.convert import ConvertError, imat2018_to_frame


def test_train_json_becomes_image_and_labels(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"imageId": "1", "url": "http://x/1"}, {"imageId": "2", "url": "u"}],
                "annotations": [{"imageId": "2", "labelId": ["62", "17"]}, {"imageId": "1", "labelId": ["95"]}],
            }
        )
    )

    frame = imat2018_to_frame(path)

    assert frame.to_dict("records") == [
        {"image": "1.jpg", "url": "http://x/1", "labels": "95"},
        {"image": "2.jpg", "url": "u", "labels": "62 17"},
    ]


def test_test_json_without_annotations_gives_empty_labels(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"images": [{"imageId": "7", "url": "u"}]}))

    assert imat2018_to_frame(path)["labels"].tolist() == [""]


@pytest.mark.parametrize(("raw", "message"), [
    ({"images": [{"url": "u"}]}, "images\\[0\\] .* has no imageId"),
    ({"images": [{"imageId": "1"}], "annotations": [{"imageId": "1", "labelId": "62"}]}, "annotations\\[0\\] labelId"),
    ({"images": [{"imageId": "1"}], "annotations": [{"imageId": "9", "labelId": []}]}, "imageId 9, which 'images'"),
    ({"pictures": []}, "no 'images' list"),
])  # fmt: skip
def test_malformed_json_names_the_record(raw, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))

    with pytest.raises(ConvertError, match=message):
        imat2018_to_frame(path)


def test_the_csv_round_trips(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"imageId": str(i), "url": f"u{i}"} for i in range(5)],
                "annotations": [{"imageId": str(i), "labelId": [str(i), "3"]} for i in range(5)],
            }
        )
    )
    frame = imat2018_to_frame(path)
    frame.to_csv(tmp_path / "train.csv", index=False)

    import pandas as pd

    back = pd.read_csv(tmp_path / "train.csv", dtype=str, keep_default_na=False)
    assert back.equals(frame)
