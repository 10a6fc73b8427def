import numpy as np
import pandas as pd
import pytest
import torch
from fastai.vision.core import PILImage

from kaggle_kit.imaterialist.data import read_labels, read_train_csv
from kaggle_kit.imaterialist.light_unet import LightUnet
from kaggle_kit.imaterialist.masks import MultiLabelMask
from kaggle_kit.imaterialist.stage1 import (
    MultiLabelSegLoss,
    TrainingCrop,
    positive_weights,
    stage1_dataloaders,
    stage1_learner,
)
from kaggle_kit.imaterialist.synth import make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("fashion"), n_train=12, n_test=2, seed=5, profile="easy")


def _marked_pair(size: int) -> tuple[PILImage, MultiLabelMask]:
    """An image whose red channel is 255 exactly where the mask's channel 0 is 1, and whose green channel counts
    columns: a crop that moves one and not the other, or shifts either, shows."""
    rng = np.random.default_rng(0)
    mask = (rng.random((2, size, size)) < 0.3).astype(np.float32)
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[..., 0] = mask[0] * 255
    pixels[..., 1] = np.arange(size)[None, :]
    return PILImage.create(pixels), MultiLabelMask(torch.from_numpy(mask))


def test_a_training_crop_cuts_image_and_mask_at_the_same_window():
    image, mask = _marked_pair(64)
    crop = TrainingCrop(24)
    windows = set()
    for _ in range(20):
        out_image, out_mask = crop((image, mask), split_idx=0)
        pixels = np.asarray(out_image)
        assert pixels.shape == (24, 24, 3)
        assert tuple(out_mask.shape) == (2, 24, 24)
        assert isinstance(out_mask, MultiLabelMask)
        np.testing.assert_array_equal(pixels[..., 0] == 255, out_mask[0].numpy() == 1)
        windows.add(int(pixels[0, 0, 1]))
        assert (mask[:, crop.top : crop.top + 24, crop.left : crop.left + 24] == out_mask).all()
    assert len(windows) > 5  # random windows, not one fixed place

    out_image, out_mask = crop((image, mask), split_idx=1)  # validation and test: whole
    assert out_image.size == (64, 64)
    assert tuple(out_mask.shape) == (2, 64, 64)


def test_training_crops_leave_validation_whole(dataset, tmp_path):
    labels = read_labels(dataset / "label_descriptions.json")
    train = read_train_csv(dataset / "train.csv", labels)
    dls = stage1_dataloaders(dataset / "train", train, labels.category_ids, 64, 4, tmp_path, train_crop=32)

    x, y = dls.train.one_batch()
    vx, vy = dls.valid.one_batch()
    test_x = next(iter(dls.test_dl(list(dls.valid.items)[:2])))[0]

    n = len(labels.category_ids)
    assert tuple(x.shape) == (4, 3, 32, 32)
    assert tuple(y.shape) == (4, n, 32, 32)
    assert tuple(vx.shape)[1:] == (3, 64, 64)
    assert tuple(vy.shape)[1:] == (n, 64, 64)
    assert tuple(test_x.shape) == (2, 3, 64, 64)


def test_show_batch_draws_the_garments_over_the_images(dataset, tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    from kaggle_kit.vision.charts import batch_picture

    labels = read_labels(dataset / "label_descriptions.json")
    train = read_train_csv(dataset / "train.csv", labels)
    dls = stage1_dataloaders(dataset / "train", train, labels.category_ids, 64, 4, tmp_path / "cache")

    drawn = batch_picture(dls, tmp_path / "show_batch.png", max_n=4)
    dls.show_batch(max_n=4)
    layers = [len(ax.images) for ax in plt.gcf().axes]
    plt.close("all")

    assert drawn is not None  # was: AttributeError 'MultiLabelMask' object has no attribute 'show'
    with Image.open(drawn) as picture:
        assert picture.size[0] > 300
    assert layers == [2, 2, 2, 2]  # each photo with its garments' mask drawn over it


def _logits_and_target(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    target = (torch.rand(2, 3, 16, 16, generator=gen) < 0.1).float()
    logits = torch.randn(2, 3, 16, 16, generator=gen) * 3
    return logits, target


def test_focal_cross_entropy_counts_confident_right_pixels_less():
    target = torch.zeros(1, 1, 8, 8)
    target[..., :2, :2] = 1
    confident = torch.where(target > 0, 4.0, -4.0)  # right everywhere, confidently
    plain, focal = MultiLabelSegLoss(dice_weight=0), MultiLabelSegLoss(dice_weight=0, focal_gamma=2.0)

    assert focal(confident, target) < 0.01 * plain(confident, target)
    wrong = -confident  # wrong everywhere: focal keeps nearly all of it
    assert focal(wrong, target) > 0.9 * plain(wrong, target)


def test_positive_weights_scale_the_cross_entropy_of_positive_pixels_per_channel():
    logits, target = _logits_and_target()
    plain = MultiLabelSegLoss(dice_weight=0)
    weighted = MultiLabelSegLoss(dice_weight=0, pos_weight=[1.0, 5.0, 1.0])
    only_channel_1 = target.clone()
    only_channel_1[:, [0, 2]] = 0

    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, only_channel_1, reduction="none")
    extra = (4.0 * bce * only_channel_1).mean()  # weight 5 = the plain term once more, four times
    assert torch.isclose(weighted(logits, only_channel_1), plain(logits, only_channel_1) + extra, rtol=1e-5)


def test_image_dice_weighs_a_small_object_like_a_big_one():
    target = torch.zeros(2, 1, 16, 16)
    target[0, 0] = 1  # a big object, found
    target[1, 0, :2, :2] = 1  # a small one, missed
    logits = torch.where(target > 0, 6.0, -6.0)
    logits[1] = -6.0
    batch, image = MultiLabelSegLoss(dice="batch"), MultiLabelSegLoss(dice="image")

    assert image(logits, target) > 5 * batch(logits, target)  # per batch the miss hides behind the big object


def test_positive_weights_grow_for_rare_categories_and_stay_in_bounds():
    rows = pd.DataFrame({"ImageId": ["a", "a", "b"], "Height": [10, 10, 10], "Width": [10, 10, 10],
                         "EncodedPixels": ["1 50", "1 2", "1 40"], "category": [0, 1, 0]})  # fmt: skip

    common, rare, absent = positive_weights(rows, [0, 1, 2])

    assert 1.0 <= common < rare <= 30.0
    assert absent == 1.0
    assert rare == pytest.approx(((1 - 2 / 200) / (2 / 200)) ** 0.5)
    assert positive_weights(rows, [1], cap=3.0) == [3.0]


# --- the light decoder ----------------------------------------------------------------------------------------------


def _resnet18_body(cut: int = -3):
    import torchvision
    from fastai.vision.learner import create_body

    return create_body(torchvision.models.resnet18(weights=None), 3, False, cut)


def test_the_light_unet_predicts_every_category_at_the_input_size():
    model = LightUnet(_resnet18_body(), n_out=5).eval()
    # skips at strides 8, 4, 2 (resnet18: layer2, layer1, the stem's relu), each concatenated with the coarser level
    assert [block[0][0].in_channels for block in model.decoder] == [256 + 128, 128 + 64, 64 + 64]
    with torch.no_grad():
        for height, width in ((64, 64), (72, 100), (33, 47)):
            assert tuple(model(torch.zeros(2, 3, height, width)).shape) == (2, 5, height, width)


def test_the_light_decoder_costs_a_fraction_of_fastais():
    from fastai.vision.models.unet import DynamicUnet
    from torch.utils.flop_counter import FlopCounterMode

    def gflops(model):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, 128, 128))
        return counter.get_total_flops() / 1e9

    encoder = gflops(_resnet18_body().eval())
    light = gflops(LightUnet(_resnet18_body(), 46).eval()) - encoder
    fastai = gflops(DynamicUnet(_resnet18_body(), 46, (128, 128), last_cross=False).eval()) - encoder
    assert light < fastai / 4, (light, fastai)


def test_the_light_unet_learns_a_mask(dataset, tmp_path):
    labels = read_labels(dataset / "label_descriptions.json")
    train = read_train_csv(dataset / "train.csv", labels)
    dls = stage1_dataloaders(dataset / "train", train, labels.category_ids, 64, 4, tmp_path)
    torch.manual_seed(0)
    learn = stage1_learner(dls, len(labels.category_ids), "resnet18", cut=-3, decoder="light")
    x, y = (t.as_subclass(torch.Tensor) for t in dls.train.one_batch())  # as fastai's CastToTensor passes them
    optimizer = torch.optim.Adam(learn.model.parameters(), lr=1e-2)
    learn.model.train()
    losses = []
    for _ in range(30):  # one batch, learnt by heart: the decoder's gradients reach every level
        loss = learn.loss_func(learn.model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    with pytest.raises(ValueError, match="decoder='tiny'"):
        stage1_learner(dls, len(labels.category_ids), "resnet18", decoder="tiny")
