"""iMaterialist (Fashion) 2019 at FGVC6, in one kernel that survives the platform's limits.

Stage 1 segments garments (per-pixel multi-label unet, progressive resizing); stage 2 names each garment's
attributes from its crop; the submission streams out chunk by chunk. Training runs under kk.Deadline: a run that
reaches the time limit checkpoints, writes "needs-resume" and exits; the next run (this output attached as an input,
or the same working dir) resumes at the exact batch. When both stages are trained and the post-processing tuned, the
model is written as one verified folder, imaterialist-model/, and the submission is predicted from it. A kernel
given "model" (or finding a finished model in an attached input) predicts from it without training.
The same file runs locally on synthetic data:
    kaggle-kit synth data/ && kaggle-kit run-local kernels/imaterialist-fashion-2019 --input \\
        imaterialist-fashion-2019-FGVC6=data/ --config tiny.json
All settings live in SETTINGS; a JSON file named by KAGGLE_KIT_CONFIG overrides any of them.
"""

import json
import logging
import sys
from pathlib import Path

import kaggle_kit as kk
from kaggle_kit.config import non_empty_list, one_of, whole_at_least

SETTINGS = {
    "competition": "imaterialist-fashion-2019-FGVC6",  # input slug
    "model": None,  # a trained model folder (imaterialist-model/ of a finished run: an attached input's slug or a
    # path): predict the submission from it, no training; None: train, unless an input holds a finished model
    "retrain": False,  # True: train even when an attached input (or working/) holds this kernel's finished model
    "encoder": "resnet34",  # stage 1 encoder (seed 002's choice)
    "weights": None,  # its torchvision checkpoint: a dataset slug or path (e.g. resnet34-b627a593.pth); None = random
    "freeze_epochs": 1,  # with weights: epochs with the encoder frozen before unfreezing (discriminative LRs after)
    "lr_find": False,  # True: run fastai's lr_find on stage 1 first and log its suggestion
    "encoder_cut": None,  # fastai's cut: -3 ends a resnet after its third stage (2x less compute, for CPU runs)
    "last_cross": True,  # fastai's full-resolution last block (False: 2x less compute)
    "decoder": "fastai",  # stage 1's decoder: "fastai" (DynamicUnet) or "light" (LightUnet: 3x faster training
    # steps on CPU at the same encoder; what the README's quick config uses)
    "sizes": [224, 512],  # progressive resizing, pixels
    "train_crop": None,  # px: train on random windows this size of each size's images (more pixels per part for
    # the cost of the window; validation and test stay whole); None = whole images
    "epochs": [4, 4],  # per size
    "lrs": [1e-3, 3e-4],  # per size
    "bs": 8,
    "num_workers": 2,
    "max_train_images": None,  # None = all
    "valid_pct": 0.1,
    "stage2_encoder": "resnet18",
    "stage2_weights": None,  # likewise for stage 2 (fine_tune: frozen, then unfrozen)
    "crop_size": 128,
    "stage2_epochs": 4,
    "stage2_lr": 1e-3,
    "stage2_bs": 32,
    "threshold": 0.5,  # stage 1 probability threshold (the default rule; tuned per category below)
    "min_area": 0.002,  # smallest instance kept, share of the image (likewise)
    "tune_postprocessing": True,  # per-category threshold, smallest area and splitting, chosen on validation
    "max_tune_images": 300,  # validation photos to tune on, and as many to score on (the search's time and memory)
    "compare_untuned": False,  # also write submission-untuned.csv with the default rule everywhere (benchmarks)
    "flip_tta": False,  # average with the horizontally flipped image when predicting (2x the forward time)
    "dice": "image",  # "image": Dice per image and category (small parts count); "batch": pooled over the batch
    "focal_gamma": 0.0,  # > 0: focal cross-entropy
    "positive_weights": False,  # True: weight positive pixels by sqrt(negative / positive) share per category
    "checkpoint_every": 30.0,  # minutes
    "reserve": 45.0,  # minutes kept for prediction and the submission after training
    "safety": None,  # minutes of margin beyond the measured work; None: 2% of the time limit, at most 1
    "predict_reserve": None,  # seconds kept free after prediction; None: 5% of the time limit, at most 60
    "seed": 42,
    "keep_checkpoints": False,  # when done: False deletes the training checkpoints (imaterialist-model/ keeps the
    # final weights of both stages)
    "draft_decode": True,  # decode JPEGs at the DCT scale nearest the training size (3-4x faster; README); False: full
}


try:  # before the heavy imports: a typo in the settings costs a second, not minutes
    settings = kk.load_settings(SETTINGS, checks={"train_crop": whole_at_least(32, "px"),
                                                   "decoder": one_of("fastai", "light"), "sizes": non_empty_list,
                                                   "epochs": non_empty_list, "lrs": non_empty_list})  # fmt: skip
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")


from fastai.vision.all import set_seed  # noqa: E402

from kaggle_kit.atomic import remove_stale_temps_in  # noqa: E402
from kaggle_kit.imaterialist import read_labels, read_train_csv  # noqa: E402
from kaggle_kit.imaterialist.masks import dataset_cache_dir  # noqa: E402
from kaggle_kit.imaterialist.model import MODEL_DIR, FashionModel, prediction_settings  # noqa: E402
from kaggle_kit.imaterialist.postprocess import CategoryRule, PostProcessing  # noqa: E402
from kaggle_kit.imaterialist.stage1 import (  # noqa: E402
    MultiLabelSegLoss,
    fit_progressive,
    positive_weights,
    stage1_dataloaders,
    stage1_learner,
)
from kaggle_kit.imaterialist.stage2 import build_crops, stage2_learner, tune_thresholds  # noqa: E402
from kaggle_kit.imaterialist.submission import COLUMNS  # noqa: E402
from kaggle_kit.imaterialist.validation import tune_postprocessing, validation_halves, validation_report  # noqa: E402
from kaggle_kit.modelfolder import submit, trained_model  # noqa: E402
from kaggle_kit.train.checkpoint import prune_checkpoints  # noqa: E402
from kaggle_kit.train.guard import fit_guarded  # noqa: E402
from kaggle_kit.train.lr import suggest_lr  # noqa: E402
from kaggle_kit.vision.charts import batch_picture  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
kernel = kk.Kernel.current()
working = kernel.working_dir
remove_stale_temps_in(working)  # what a kill mid-write left of an earlier run's reports and pictures
try:  # not attached: one line, not a traceback
    data = kernel.find_input(settings["competition"])
    model_dir, whose = trained_model(
        kernel, MODEL_DIR, settings["model"], settings["retrain"], expected=prediction_settings(settings)
    )  # a changed model is refused, not used
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
test_files = sorted((data / "test").glob("*.jpg"))


def predict_from(model_dir: Path, whose: str = "own"):
    """The submission streamed from the model folder; the kernel is done when every test image has its rows."""
    try:
        fashion = FashionModel.load(model_dir, test_files)
    except kk.KaggleKitError as exc:
        sys.exit(f"kernel: {exc}")
    return fashion, submit(fashion, model_dir, test_files, whose, reserve_s=settings["predict_reserve"])


if model_dir is not None:  # a finished model: no training, no tuning, the same submission it would write
    print(f"kernel: predicting from the {whose} model {model_dir}; nothing is trained")
    predict_from(model_dir, whose)
    sys.exit(0)
cache = dataset_cache_dir(data)  # masks and crops: not outputs
set_seed(settings["seed"])

# --- read and validate everything before any long work -------------------------------------------------------------
labels = read_labels(data / "label_descriptions.json")
train = read_train_csv(data / "train.csv", labels)
image_ids = sorted(train["ImageId"].unique())[: settings["max_train_images"]]
train = train[train["ImageId"].isin(image_ids)]
category_ids = labels.category_ids
print(f"kernel: {len(image_ids)} training images, {len(train)} objects, {len(test_files)} test images")


def deadline(folder: str, name: str) -> kk.Deadline:  # each model its own checkpoints and name in the status
    return kk.Deadline(settings["checkpoint_every"], settings["reserve"], safety=settings["safety"],
                       checkpoints=working / "checkpoints" / folder, name=name)  # fmt: skip


# --- stage 1: segmentation, progressive resizing ---------------------------------------------------------------------
def dls_at(size: int):
    return stage1_dataloaders(data / "train", train, category_ids, size, settings["bs"], cache,
                              valid_pct=settings["valid_pct"], seed=settings["seed"],
                              num_workers=settings["num_workers"], image_ids=image_ids, draft=settings["draft_decode"],
                              train_crop=settings["train_crop"])  # fmt: skip


weights = positive_weights(train, category_ids) if settings["positive_weights"] else None
loss = MultiLabelSegLoss(dice=settings["dice"], focal_gamma=settings["focal_gamma"], pos_weight=weights)
learn = stage1_learner(dls_at(settings["sizes"][0]), len(category_ids), settings["encoder"],
                       kernel.input_or_path(settings["weights"]), loss=loss, cut=settings["encoder_cut"],
                       last_cross=settings["last_cross"], decoder=settings["decoder"])  # fmt: skip
batch_picture(learn.dls, working / "show_batch.png")  # what stage 1 is shown, once per run
if settings["lr_find"]:  # before the Deadline joins: lr_find's short fit is not a training stage
    print(f"kernel: lr_find suggests lr={suggest_lr(learn, working / 'lr_find.png'):.2e}; the fit uses "
          f"lrs={settings['lrs']} (the setting \"lrs\", one per size; set them from the suggestion)")  # fmt: skip
stage1 = deadline("stage1", "segmenter")
learn.add_cbs([kk.TrainingGuard(), stage1])  # the guard: training that does nothing is a one-line error
try:  # with weights fastai froze the encoder: the decoder trains first
    trained = fit_progressive(learn, dls_at, settings["sizes"], settings["epochs"], settings["lrs"], stage1,
                              pretrained=settings["weights"] is not None,
                              freeze_epochs=settings["freeze_epochs"])  # fmt: skip
except kk.TrainingError as exc:
    sys.exit(f"kernel: {exc}")
if not trained:
    print("kernel: stage 1 stopped before the time limit; run again to resume")
    sys.exit(0)

# --- stage 2: attributes on garment crops ----------------------------------------------------------------------------
attribute_categories = sorted(train.loc[train["attributes"].map(len) > 0, "category"].unique().tolist())
crops = build_crops(
    train, data / "train", settings["crop_size"], cache, attribute_categories, draft=settings["draft_decode"]
)
# validated on stage 1's validation photos: never trained on what validation scores
learn2 = stage2_learner(crops, labels.attribute_ids, settings["crop_size"], settings["stage2_bs"],
                        settings["stage2_encoder"], kernel.input_or_path(settings["stage2_weights"]),
                        seed=settings["seed"],
                        valid_images=[Path(p).name for p in learn.dls.valid.items])  # fmt: skip
stage2 = deadline("stage2", "attributes")
try:  # with weights: frozen, then unfrozen with discriminative learning rates, as the seeds fine-tune
    trained = fit_guarded(
        learn2,
        settings["stage2_epochs"],
        settings["stage2_lr"],
        stage2,
        pretrained=settings["stage2_weights"] is not None,
        freeze_epochs=settings["freeze_epochs"],
    )
except kk.TrainingError as exc:
    sys.exit(f"kernel: stage 2: {exc}")
if not trained:
    print("kernel: stage 2 stopped before the time limit; run again to resume")
    sys.exit(0)
with learn2.no_bar():
    probs, targets = learn2.get_preds(ds_idx=1)
thresholds = tune_thresholds(probs.numpy(), targets.numpy())
most_common = int(train["category"].mode()[0])
tta = "hflip" if settings["flip_tta"] else None
default_rule = CategoryRule(settings["threshold"], settings["min_area"])


# --- post-processing tuned to the metric on half of the validation photos, the model saved, scored on the rest ----
rules = tune_postprocessing(learn, train, data / "train", category_ids, settings, tta)
FashionModel.save(working / MODEL_DIR, learn, learn2, settings, category_ids=category_ids,
                  attribute_categories=attribute_categories, thresholds=thresholds, most_common=most_common,
                  rules=rules, names={"categories": labels.categories, "attributes": labels.attributes})  # fmt: skip
fashion = FashionModel.load(working / MODEL_DIR, test_files)  # scored and submitted as any later kernel loads it
_tune_ids, report_ids = validation_halves(learn, settings["max_tune_images"])
report = validation_report(fashion, rules, report_ids, train, data / "train", labels, working, cache, tta,
                           extra={"model": str(working / MODEL_DIR), "thresholds": thresholds,
                                  "attribute_categories": attribute_categories})  # fmt: skip
scores = {k: json.dumps({reading: round(v, 4) for reading, v in report["scores"][k].items()}) for k in report["scores"]}
print(f"kernel: validation scores {scores['model']} (baseline {scores['baseline']})")

# --- the submission, streamed from the model folder ----------------------------------------------------------------
fashion, summary = predict_from(working / MODEL_DIR)
if settings["compare_untuned"] and summary.complete:
    untuned = kk.CsvSink("submission-untuned.csv", fashion.submission_rows(PostProcessing(category_ids, default_rule)),
                         COLUMNS)  # fmt: skip
    kk.stream_predict(fashion.stage1, test_files, untuned, tta=tta)
if summary.complete and not settings["keep_checkpoints"]:  # after "done": a kill before leaves them, never a retrain
    freed = prune_checkpoints(working / "checkpoints")
    print(f"kernel: training checkpoints pruned ({freed / 2**20:.0f} MiB); the model is {working / MODEL_DIR}")
