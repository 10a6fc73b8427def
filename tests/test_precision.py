"""Mixed precision only where a CUDA GPU is (kaggle_kit.train.precision)."""

import pytest
import torch
from conftest import make_images, make_learner


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("precision-images"), 8)


@pytest.mark.parametrize(("enabled", "cuda", "fp16"), [(True, True, True), (False, True, False), (True, False, False)])
def test_mixed_precision_is_wired_only_where_a_cuda_gpu_is(enabled, cuda, fp16, images):
    from fastai.callback.fp16 import MixedPrecision

    from kaggle_kit.train.precision import mixed_precision

    learn = make_learner("tiny", images[:8])
    assert mixed_precision(learn, enabled, cuda=cuda) is fp16
    assert any(isinstance(cb, MixedPrecision) for cb in learn.cbs) is fp16


def test_on_this_cuda_less_machine_the_kernels_learners_stay_fp32(tmp_path):
    from fastai.callback.fp16 import MixedPrecision

    from kaggle_kit.imaterialist.synth import make_dataset
    from kaggle_kit.imaterialist.training import FashionData, segmenter
    from kaggle_kit.local.demo import DEMO_SETTINGS

    data = FashionData.read(make_dataset(tmp_path / "fashion", n_train=4, n_test=1, seed=1, profile="easy"))
    settings = {**DEMO_SETTINGS, "seed": 1, "draft_decode": False, "train_crop": None, "dice": "image",
                "focal_gamma": 0.0, "positive_weights": False, "decoder": "light", "fp16": True}  # fmt: skip
    learn, _ = segmenter(data, settings, None)

    assert not torch.cuda.device_count()
    assert not any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
