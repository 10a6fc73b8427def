"""The classifier's model folder: written by a training run, refused in one line when anything in it is wrong."""

import json

import numpy as np
import pytest

from kaggle_kit.classification.model import ClassifierModel
from kaggle_kit.modelfolder import MANIFEST_NAME, ModelFolderError

SETTINGS = {"arch": "resnet18", "size": 32, "multi_label": False, "tta": [], "draft_decode": False, "top_k": 1,
            "id_column": "id", "answer_column": None, "bs": 4}  # fmt: skip


@pytest.fixture
def saved(learners, tmp_path):
    ClassifierModel.save(tmp_path / "model", learners("single"), SETTINGS, pretrained=False)
    return tmp_path / "model"


def _resigned(folder, **settings):
    """The manifest edited by hand with its digest recomputed, so the setting checks behind the digest are reached."""
    from kaggle_kit.modelfolder import _manifest_digest

    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["settings"].update(settings)
    manifest["digest"] = _manifest_digest(manifest)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_a_saved_classifier_loads_and_predicts_its_vocabulary(saved, images):
    model = ClassifierModel.load(saved, images[:4])

    rows = model.rows()(images[:2], np.array([[0.1, 0.9], [0.8, 0.2]]))

    assert [r[1] for r in rows] == [model.folder.settings["vocab"][1], model.folder.settings["vocab"][0]]


def test_a_swapped_vocabulary_is_refused_not_flipped(saved, images):
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    manifest["settings"]["vocab"].reverse()  # every label would flip
    (saved / MANIFEST_NAME).write_text(json.dumps(manifest))

    with pytest.raises(ModelFolderError, match="was edited after it was written"):
        ClassifierModel.load(saved, images[:4])


@pytest.mark.parametrize(("setting", "value", "said"), [
    ("size", "abc", "setting size='abc' is not a positive whole number of pixels"),
    ("vocab", [], "setting vocab=[] is not a non-empty list of labels"),
    ("bs", "x", "setting bs='x' is not a positive whole number"),
    ("multi_label", 1, "setting multi_label=1 is not true or false"),
])  # fmt: skip
def test_a_setting_of_the_wrong_type_is_one_line(setting, value, said, saved, images):
    _resigned(saved, **{setting: value})

    with pytest.raises(ModelFolderError) as error:
        ClassifierModel.load(saved, images[:4])

    assert said in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def test_a_weights_file_that_is_not_a_torch_file_is_one_line(saved, images):
    from kaggle_kit.atomic import file_sha256

    (saved / "model.pth").write_bytes(b"not a torch file at all")
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    manifest["files"]["model.pth"] = file_sha256(saved / "model.pth")
    (saved / MANIFEST_NAME).write_text(json.dumps(manifest))
    _resigned(saved)

    with pytest.raises(ModelFolderError) as error:
        ClassifierModel.load(saved, images[:4])

    assert "model.pth does not load into the model its settings describe" in str(error.value)
    assert len(str(error.value).splitlines()) == 1
