"""The training kernel's models built from its settings (kaggle_kit.imaterialist.training)."""

from pathlib import Path

import pytest
import torch

from kaggle_kit.imaterialist.model import _image_dls
from kaggle_kit.imaterialist.synth import make_dataset
from kaggle_kit.imaterialist.training import FashionData, attribute_learner, attribute_thresholds, segmenter
from kaggle_kit.local.demo import DEMO_SETTINGS


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> FashionData:
    folder = make_dataset(tmp_path_factory.mktemp("fashion"), n_train=10, n_test=2, seed=3, profile="easy")
    return FashionData.read(folder, max_images=8)


SETTINGS = {**DEMO_SETTINGS, "sizes": [32, 48], "seed": 42, "draft_decode": True, "train_crop": None,
            "dice": "image", "focal_gamma": 0.0, "positive_weights": True, "decoder": "light", "stage2_encoder":
            "resnet18", "crop_size": 32}  # fmt: skip


def test_fashion_data_keeps_the_first_photos_by_name(data):
    assert len(data.image_ids) == 8
    assert data.image_ids == sorted(data.image_ids)
    assert set(data.train["ImageId"]) == set(data.image_ids)
    assert data.most_common in data.category_ids
    assert set(data.names) == {"categories", "attributes"}


def test_the_segmenter_validates_on_the_same_photos_at_every_size(data):
    learn, dls_at = segmenter(data, SETTINGS, None)
    first = [Path(p).name for p in learn.dls.valid.items]
    assert first
    assert [Path(p).name for p in dls_at(48).valid.items] == first
    assert learn.dls.valid.one_batch()[0].shape[-1] == 32
    assert learn.loss_func.pos_weight is not None  # "positive_weights": True reaches the loss


def test_a_model_folder_sees_a_photo_as_training_validates_it(data):
    """One image pipeline: the tensor a loaded model predicts from is the one its validation scored."""
    learn, _ = segmenter(data, SETTINGS, None)
    photo = Path(learn.dls.valid.items[0])
    photo = photo if photo.is_absolute() else data.folder / "train" / photo
    trained = learn.dls.test_dl([photo], num_workers=0).one_batch()[0]
    loaded = _image_dls([photo], 32, {"draft_decode": True, "bs": 1}).test_dl([photo], num_workers=0).one_batch()[0]
    assert torch.equal(trained, loaded)


def test_attributes_validate_on_the_segmenters_validation_photos(data):
    learn, _ = segmenter(data, SETTINGS, None)
    held = [Path(p).name for p in learn.dls.valid.items]
    learn2, categories = attribute_learner(data, SETTINGS, held, None)
    assert categories
    assert set(categories) <= set(data.category_ids)
    assert set(learn2.dls.valid.items["ImageId"]) <= set(held)
    assert not set(learn2.dls.train.items["ImageId"]) & set(held)
    thresholds = attribute_thresholds(learn2)
    assert thresholds.shape == (len(data.labels.attribute_ids),)
