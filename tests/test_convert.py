import json

import pytest

from kaggle_kit.imaterialist.convert import ConvertError, imat2018_to_frame


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


def test_the_2018_url_lists_give_the_first_url_or_all_and_columns_are_named_through_the_cli(tmp_path):
    import subprocess
    import sys

    import pandas as pd

    path = tmp_path / "train.json"
    path.write_text(json.dumps({  # the 2018 files' shape: url is a list of mirrors
        "images": [{"imageId": "1", "url": ["https://a/1.jpg", "https://b/1.jpg"]}, {"imageId": "2", "url": []}],
        "annotations": [{"imageId": "1", "labelId": ["62"]}, {"imageId": "2", "labelId": ["17", "3"]}],
    }))  # fmt: skip
    cli = [sys.executable, "-m", "kaggle_kit.cli", "convert-imat2018", str(path)]

    first = subprocess.run([*cli, str(tmp_path / "a.csv")], capture_output=True, text=True)
    every = subprocess.run([*cli, str(tmp_path / "b.csv"), "--all-urls", "--columns", "image_name,link,tags"],
                           capture_output=True, text=True)  # fmt: skip

    assert first.returncode == every.returncode == 0, first.stderr + every.stderr
    a = pd.read_csv(tmp_path / "a.csv", dtype=str, keep_default_na=False)
    assert a.to_dict("records") == [{"image": "1.jpg", "url": "https://a/1.jpg", "labels": "62"},
                                    {"image": "2.jpg", "url": "", "labels": "17 3"}]  # fmt: skip
    b = pd.read_csv(tmp_path / "b.csv", dtype=str, keep_default_na=False)
    assert list(b.columns) == ["image_name", "link", "tags"]
    assert b["link"].tolist() == ["https://a/1.jpg;https://b/1.jpg", ""]
    assert "2 images (2 labelled)" in every.stdout


@pytest.mark.parametrize(("kwargs", "raw", "message"), [
    ({}, {"images": [{"imageId": "1", "url": [3]}]}, "url \\[3\\] is not a URL"),
    ({"columns": ("a", "a", "b")}, {"images": []}, "three different names"),
])  # fmt: skip
def test_a_bad_url_or_column_names_are_one_line_errors(kwargs, raw, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))

    with pytest.raises(ConvertError, match=message):
        imat2018_to_frame(path, **kwargs)
