"""FashionModel.load refuses a model folder whose settings are not what a trained model writes, in one line."""

import pytest

from kaggle_kit.imaterialist.model import KIND, FashionModel
from kaggle_kit.modelfolder import ModelFolder, ModelFolderError

# what a training run writes (FashionModel.save), before any weights are read
GOOD = {
    "encoder": "resnet18", "encoder_cut": -3, "last_cross": False, "decoder": "fastai", "sizes": [48, 64],
    "stage2_encoder": "resnet18", "crop_size": 32, "flip_tta": True, "draft_decode": False, "bs": 8,
    "category_ids": [1, 23], "attribute_ids": [115, 136], "thresholds": [0.5, 0.4], "stage1_digest": "ab12",
}  # fmt: skip


@pytest.mark.parametrize(("setting", "value", "said"), [
    ("sizes", "64", "setting sizes='64' is not a list of pixel sizes"),
    ("decoder", "unet", "setting decoder='unet' is not \"fastai\" or \"light\""),
    ("category_ids", [], "setting category_ids=[] is not a non-empty list of whole numbers"),
    ("crop_size", 0, "setting crop_size=0 is not a positive whole number of pixels"),
    ("thresholds", ["high"], "setting thresholds=['high'] is not a list of numbers"),
    ("flip_tta", "yes", "setting flip_tta='yes' is not true or false"),
])  # fmt: skip
def test_a_setting_of_the_wrong_type_is_one_line_before_any_weights_are_read(setting, value, said, tmp_path):
    files = {"stage1.pth": b"not read", "stage2.pth": b"not read", "rules.json": b"{}"}
    ModelFolder.write(tmp_path / "model", KIND, files, {**GOOD, setting: value})

    with pytest.raises(ModelFolderError) as error:
        FashionModel.load(tmp_path / "model", [tmp_path / "photo.jpg"])

    assert said in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def test_a_missing_setting_is_named(tmp_path):
    settings = {k: v for k, v in GOOD.items() if k != "stage2_encoder"}
    ModelFolder.write(tmp_path / "model", KIND, {"stage1.pth": b"", "stage2.pth": b"", "rules.json": b"{}"}, settings)

    with pytest.raises(ModelFolderError, match="settings lack stage2_encoder"):
        FashionModel.load(tmp_path / "model", [tmp_path / "photo.jpg"])
