"""Pretrained weights offline: an attached checkpoint becomes what fastai's pretrained=True loads, checked first."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import make_class_folders, make_images

from kaggle_kit.templates import kernels_dir
from kaggle_kit.train.weights import WeightsError, expected_file_name, use_offline_weights


@pytest.fixture
def attached(tmp_path, monkeypatch):
    """A dataset folder holding a (random, but real) resnet18 checkpoint; the hub cache in tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    folder = tmp_path / "input" / "resnet18-weights"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), folder / "resnet18.pth")
    return folder


def test_fastai_pretrained_loads_the_attached_file_frozen_and_normalised(attached, tmp_path):
    from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, Normalize, Resize, vision_learner

    installed = use_offline_weights(attached, "resnet18")
    paths = make_images(tmp_path / "images", 16)
    block = DataBlock((ImageBlock, CategoryBlock), get_y=lambda p: p.name.split("_")[1], item_tfms=Resize(32))
    learn = vision_learner(block.dataloaders(paths, bs=4, num_workers=0), torchvision.models.resnet18)

    assert installed == tmp_path / "torch-home/hub/checkpoints" / expected_file_name("resnet18")
    state = torch.load(attached / "resnet18.pth", weights_only=True)
    assert torch.equal(learn.model[0][0].weight, state["conv1.weight"])  # the body is the file's
    trainable = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in learn.model.parameters())
    assert trainable < total / 10  # frozen body: the head and batch norms train
    assert any(isinstance(t, Normalize) for t in learn.dls.after_batch.fs)
    learn.unfreeze()
    assert sum(p.numel() for p in learn.model.parameters() if p.requires_grad) == total


def test_the_light_unet_starts_from_the_attached_encoder_frozen(attached, tmp_path):
    from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, Resize

    from kaggle_kit.imaterialist.stage1 import stage1_learner

    paths = make_images(tmp_path / "images", 8)
    block = DataBlock((ImageBlock, CategoryBlock), get_y=lambda p: p.name.split("_")[1], item_tfms=Resize(32))
    learn = stage1_learner(block.dataloaders(paths, bs=4, num_workers=0), 5, "resnet18", attached, cut=-3,
                           decoder="light")  # fmt: skip

    state = torch.load(attached / "resnet18.pth", weights_only=True)
    assert torch.equal(learn.model.encoder[0].weight, state["conv1.weight"])
    assert torch.equal(learn.model.encoder[6][1].conv2.weight, state["layer3.1.conv2.weight"])
    frozen = [p for p in learn.model.encoder.parameters() if not p.requires_grad]
    assert frozen, "a pretrained encoder starts frozen"
    assert all(p.requires_grad for p in learn.model.decoder.parameters())
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_a_file_named_like_torchvisions_must_have_its_checksum(attached):
    fake = attached / expected_file_name("resnet18")
    shutil.copy(attached / "resnet18.pth", fake)  # right shape, wrong bytes for its name's hash
    with pytest.raises(WeightsError, match="SHA-256 does not start with f37072fd"):
        use_offline_weights(fake, "resnet18")


def test_weights_of_another_architecture_or_no_file_are_clear_errors(attached, tmp_path):
    with pytest.raises(WeightsError, match="not resnet34 weights"):
        use_offline_weights(attached / "resnet18.pth", "resnet34")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"no resnet34-b627a593\.pth \(or resnet34\.pth\)"):
        use_offline_weights(tmp_path / "empty", "resnet34")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a PyTorch state dict"):
        use_offline_weights(tmp_path / "junk.pth", "resnet18")


@pytest.mark.parametrize("nesting", ["a training checkpoint", "a dict of dicts"])
def test_weights_nested_in_a_bigger_file_are_one_line_saying_where_they_are(nesting, attached, tmp_path):
    weights = torch.load(attached / "resnet18.pth", weights_only=True)
    nested = {"learner": {"model": weights, "opt": {"step": torch.tensor(3)}}, "epoch": 2}
    if nesting == "a dict of dicts":
        nested = {"a": {"b": {"c": 1.0}}}
    torch.save(nested, tmp_path / "nested.pth")

    with pytest.raises(WeightsError) as error:
        use_offline_weights(tmp_path / "nested.pth", "resnet18")

    said = str(error.value)
    assert "not a plain state dict" in said
    if nesting == "a training checkpoint":
        assert "its resnet18 weights are under ['learner']['model']" in said
    else:
        assert "no resnet18 state dict is inside it" in said
    assert len(said.splitlines()) == 1


@pytest.mark.e2e
def test_the_classification_kernel_fine_tunes_from_attached_weights(attached, run_kernel, tmp_path):
    data = tmp_path / "shapes"
    make_class_folders(data, 80, 8)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"size": 32, "bs": 16, "epochs": 2, "num_workers": 0, "weights": "resnet18-weights",
                                  "lr_find": True, "reserve": 0.1, "safety": 0.05}))  # fmt: skip

    run = run_kernel(kernels_dir() / "image-classification" / "kernel.py", memory="6GiB",
                     inputs={"your-images": data, "resnet18-weights": attached},
                     env={"KAGGLE_KIT_CONFIG": str(config)})  # fmt: skip

    assert run.report.ok, run.explain()
    assert "kernel: lr_find suggests lr=" in run.stdout
    from PIL import Image

    with Image.open(Path(run.report.working_dir) / "lr_find.png") as plot:  # fastai's plot, saved
        assert plot.size[0] > 300
        assert len(set(plot.convert("RGB").getdata())) > 20
    assert (Path(run.report.working_dir) / "submission.csv").exists()
    assert not [p for p in Path(run.report.working_dir).rglob("*") if p.name.endswith(".tmp")]  # .<name>.<rand>.tmp


def test_the_imaterialist_unet_takes_the_attached_encoder_frozen(attached, tmp_path):
    from fastai.vision.all import Normalize

    from kaggle_kit.imaterialist.data import read_labels, read_train_csv
    from kaggle_kit.imaterialist.stage1 import stage1_dataloaders, stage1_learner
    from kaggle_kit.imaterialist.synth import make_dataset

    data = make_dataset(tmp_path / "fashion", n_train=6, n_test=1, seed=1, profile="easy")
    labels = read_labels(data / "label_descriptions.json")
    train = read_train_csv(data / "train.csv", labels)
    dls = stage1_dataloaders(data / "train", train, labels.category_ids, 32, 2, tmp_path / "cache")

    learn = stage1_learner(dls, 46, "resnet18", attached / "resnet18.pth")

    state = torch.load(attached / "resnet18.pth", weights_only=True)
    assert torch.equal(learn.model[0][0].weight, state["conv1.weight"])
    encoder = [p for p in learn.model[0].parameters() if p.ndim > 1]  # conv weights (batch norms stay trainable)
    assert not any(p.requires_grad for p in encoder)
    assert sum(isinstance(t, Normalize) for t in learn.dls.after_batch.fs) == 1  # ImageNet stats, once
