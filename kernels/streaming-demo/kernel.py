"""Streaming-prediction demo kernel: train a small classifier, then stream test predictions into one submission.

Runs unchanged on Kaggle (attach the synthetic "colour-squares" dataset) and locally:
    kaggle-kit demo            (makes the data and runs this under the emulator)
Settings live in SETTINGS; a JSON file named by KAGGLE_KIT_CONFIG overrides them.
"""

import sys
from pathlib import Path

import torch
from fastai.vision.all import CategoryBlock, DataBlock, ImageBlock, Resize, accuracy, set_seed, vision_learner
from torchvision.models import resnet18

import kaggle_kit as kk
from kaggle_kit.atomic import atomic_write_json
from kaggle_kit.config import load_settings
from kaggle_kit.vision.synthetic import label_of

SETTINGS = {
    "input": "colour-squares",  # the dataset slug under /kaggle/input
    "size": 32,  # training and test image size, pixels
    "bs": 16,
    "epochs": 6,
    "lr": 1e-2,
    "weights": None,  # a local resnet18 weights file (Kaggle: attach it as a dataset); None = random init
    "chunk_size": None,  # None = adapt to the kernel's memory
    "seed": 0,
}
try:  # an unknown or mistyped setting: one line, not a traceback
    settings = load_settings(SETTINGS)
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
kernel = kk.Kernel.current()
try:  # not attached: one line, not a traceback
    data = kernel.find_input(settings["input"])
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
train_files = sorted((data / "train").glob("*.png"))
test_files = sorted((data / "test").glob("*.png"))
print(f"kernel: {len(train_files)} training and {len(test_files)} test images, limits {kernel.limits}")

set_seed(settings["seed"])  # python, numpy and torch: the data order too
block = DataBlock((ImageBlock, CategoryBlock), get_y=label_of, item_tfms=Resize(settings["size"]))
dls = block.dataloaders(train_files, bs=settings["bs"], num_workers=0)
learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
if settings["weights"]:
    learn.model[0].load_state_dict(torch.load(settings["weights"], weights_only=True), strict=False)
learn.fit_one_cycle(settings["epochs"], settings["lr"])


def to_rows(items, preds):
    """One submission row per test image: its id and the predicted colour (placeholder rows for bad images)."""
    vocab = learn.dls.vocab
    return [
        (p.stem, "" if kk.is_placeholder(x) else vocab[int(x.argmax())]) for p, x in zip(items, preds, strict=False)
    ]


summary = kk.stream_predict(
    learn, test_files, kk.CsvSink("submission.csv", to_rows, ["id", "label"]), chunk_size=settings["chunk_size"]
)
rows = Path("submission.csv").read_text().splitlines()[1:]
correct = sum(line.split(",")[1] == line.split("_")[1] for line in rows)
result = {"test_accuracy": correct / max(1, len(rows)), **summary.as_dict()}
atomic_write_json("../demo-result.json", result)  # beside working/, so it is not an output file
print(f"kernel: wrote {len(rows)} rows; test accuracy {result['test_accuracy']:.3f}")
