"""iMaterialist (Fashion) 2019 at FGVC6, in one kernel that survives the platform's limits.

Stage 1 segments garments (per-pixel multi-label unet, progressive resizing); stage 2 names each garment's
attributes from its crop; the submission streams out chunk by chunk. Training runs under kk.Deadline: a run that
reaches the time limit checkpoints, writes "needs-resume" and exits; the next run (this output attached as an input,
or the same working dir) resumes at the exact batch. The same file runs locally on synthetic data:
    kaggle-kit synth data/ && kaggle-kit run-local kernels/imaterialist-fashion-2019 --input \\
        imaterialist-fashion-2019-FGVC6=data/ --config tiny.json
All settings live in SETTINGS; a JSON file named by KAGGLE_KIT_CONFIG overrides any of them.
"""

import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path

import kaggle_kit as kk

SETTINGS = {
    "competition": "imaterialist-fashion-2019-FGVC6",  # input slug
    "encoder": "resnet34",  # stage 1 encoder (seed 002's choice)
    "weights": None,  # a local torchvision weights file for it, attached as a dataset; None = random init
    "sizes": [224, 512],  # progressive resizing, pixels
    "epochs": [4, 4],  # per size
    "lrs": [1e-3, 3e-4],  # per size
    "bs": 8,
    "num_workers": 2,
    "max_train_images": None,  # None = all
    "valid_pct": 0.1,
    "stage2_encoder": "resnet18",
    "stage2_weights": None,
    "crop_size": 128,
    "stage2_epochs": 4,
    "stage2_lr": 1e-3,
    "stage2_bs": 32,
    "threshold": 0.5,  # stage 1 probability threshold
    "min_area": 0.002,  # smallest instance kept, share of the image
    "checkpoint_every": 30.0,  # minutes
    "reserve": 45.0,  # minutes kept for prediction and the submission after training
    "safety": 1.0,  # minutes of margin on top of the reserve and the measured work
    "seed": 42,
    "draft_decode": False,  # True: decode JPEGs at the DCT scale nearest the training size (3-4x faster, see README)
}
try:  # before the heavy imports: a typo in the settings costs a second, not minutes
    settings = kk.load_settings(SETTINGS)
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")


import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from fastai.vision.all import set_seed  # noqa: E402

from kaggle_kit.atomic import atomic_write_json  # noqa: E402
from kaggle_kit.checkpoint import CheckpointSaver  # noqa: E402
from kaggle_kit.imaterialist import read_labels, read_train_csv, score_submission  # noqa: E402
from kaggle_kit.imaterialist.stage1 import stage1_dataloaders, stage1_learner  # noqa: E402
from kaggle_kit.imaterialist.stage2 import AttributePredictor, build_crops, stage2_learner, tune_thresholds  # noqa: E402
from kaggle_kit.imaterialist.submission import COLUMNS, SubmissionRows  # noqa: E402
from kaggle_kit.predict import progress_path  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
kernel = kk.Kernel.current()
working = kernel.working_dir
data = kernel.find_input(settings["competition"])
train_csv = (data / "train.csv").stat()
dataset_key = hashlib.sha1(f"{data.resolve()}:{train_csv.st_size}:{train_csv.st_mtime_ns}".encode()).hexdigest()[:12]
cache = Path(tempfile.gettempdir()) / "kaggle-kit-imaterialist" / dataset_key  # masks and crops: not outputs
set_seed(settings["seed"])

# --- read and validate everything before any long work -------------------------------------------------------------
labels = read_labels(data / "label_descriptions.json")
train = read_train_csv(data / "train.csv", labels)
test_files = sorted((data / "test").glob("*.jpg"))
image_ids = sorted(train["ImageId"].unique())[: settings["max_train_images"]]
train = train[train["ImageId"].isin(image_ids)]
category_ids = labels.category_ids
print(f"kernel: {len(image_ids)} training images, {len(train)} objects, {len(test_files)} test images")


def deadline(name: str) -> kk.Deadline:
    return kk.Deadline(
        every=settings["checkpoint_every"],
        reserve=settings["reserve"],
        safety=settings["safety"],
        saver=CheckpointSaver(working / "checkpoints" / name),
    )


# --- stage 1: segmentation, progressive resizing ---------------------------------------------------------------------
def dls_at(size: int):
    return stage1_dataloaders(
        data / "train",
        train,
        category_ids,
        size,
        settings["bs"],
        cache,
        valid_pct=settings["valid_pct"],
        seed=settings["seed"],
        num_workers=settings["num_workers"],
        image_ids=image_ids,
        draft=settings["draft_decode"],
    )


learn = stage1_learner(dls_at(settings["sizes"][0]), len(category_ids), settings["encoder"], settings["weights"])
stage1 = deadline("stage1")
learn.add_cb(stage1)
for size, epochs, lr in zip(settings["sizes"], settings["epochs"], settings["lrs"], strict=True):
    learn.dls = dls_at(size)
    learn.fit_one_cycle(epochs, lr)
    if stage1.stopped:
        print("kernel: stage 1 stopped before the time limit; run again to resume")
        sys.exit(0)

# --- stage 2: attributes on garment crops ----------------------------------------------------------------------------
attribute_categories = sorted(train.loc[train["attributes"].map(len) > 0, "category"].unique().tolist())
crops = build_crops(
    train, data / "train", settings["crop_size"], cache, attribute_categories, draft=settings["draft_decode"]
)
learn2 = stage2_learner(
    crops,
    labels.attribute_ids,
    settings["crop_size"],
    settings["stage2_bs"],
    settings["stage2_encoder"],
    settings["stage2_weights"],
    seed=settings["seed"],
)
stage2 = deadline("stage2")
learn2.fit_one_cycle(settings["stage2_epochs"], settings["stage2_lr"], cbs=stage2)
if stage2.stopped:
    print("kernel: stage 2 stopped before the time limit; run again to resume")
    sys.exit(0)
with learn2.no_bar():
    probs, targets = learn2.get_preds(ds_idx=1)
thresholds = tune_thresholds(probs.numpy(), targets.numpy())
most_common = int(train["category"].mode()[0])
rows = SubmissionRows(
    category_ids,
    AttributePredictor(learn2, thresholds, settings["crop_size"]),
    attribute_categories,
    settings["threshold"],
    settings["min_area"],
    fallback_class=most_common,
    crop_size=settings["crop_size"] if settings["draft_decode"] else None,
)

# --- the local metric on the validation images (both modes) against a trivial baseline ------------------------------
valid_ids = [Path(p).name for p in learn.dls.valid.items]
valid_files = [data / "train" / i for i in valid_ids]
valid_sink = kk.CsvSink(cache / "validation_predictions.csv", rows, COLUMNS)
for stale in (valid_sink.path, progress_path(valid_sink)):  # cheap to redo; the model may be new
    stale.unlink(missing_ok=True)
kk.stream_predict(learn, valid_files, valid_sink, progress=False)
truth = train[train["ImageId"].isin(valid_ids)]
predicted = pd.read_csv(valid_sink.path, dtype=str, keep_default_na=False)
sizes = truth.groupby("ImageId")[["Height", "Width"]].first()
baseline = pd.DataFrame([(i, f"1 {h * w}", str(most_common)) for i, (h, w) in sizes.iterrows()], columns=COLUMNS)
scores = {f"{name}_{mode}": score_submission(frame, truth, mode) for mode in ("category", "full")
          for name, frame in (("model", predicted), ("baseline", baseline))}  # fmt: skip
print(f"kernel: validation scores {json.dumps({k: round(v, 4) for k, v in scores.items()})}")

# --- the submission, streamed ---------------------------------------------------------------------------------------
summary = kk.stream_predict(learn, test_files, kk.CsvSink("submission.csv", rows, COLUMNS))
report = {
    "scores": scores,
    "prediction": summary.as_dict(),
    "thresholds": np.round(thresholds, 2).tolist(),
    "attribute_categories": attribute_categories,
}
atomic_write_json(working / "imaterialist-report.json", report)
if summary.complete:
    kk.mark_done(submission="submission.csv", rows=len(pd.read_csv("submission.csv")))
    print(f"kernel: submission.csv written for {summary.done} test images")
