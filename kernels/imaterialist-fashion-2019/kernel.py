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
    "fp16": True,  # mixed precision (fp16 and a gradient scaler) when a CUDA GPU is there; fp32 on the CPU
    "max_gpus": None,  # train on one process per GPU (both T4s); None: every GPU torch can run, 1: one GPU
    "cpu_ok": False,  # True: go on when no GPU that torch can run was granted (the log's accelerator line says)
    "competition": "imaterialist-fashion-2019-FGVC6",  # input slug
    "model": None,  # a finished run's imaterialist-model/ (input slug or path) to predict from; None: train, unless
    # an input holds a finished model
    "retrain": False,  # True: train even when an attached input (or working/) holds this kernel's finished model
    "encoder": "resnet34",  # stage 1 encoder (seed 002's choice)
    "weights": None,  # its torchvision checkpoint: a dataset slug or path (e.g. resnet34-b627a593.pth); None = random
    "freeze_epochs": 1,  # with weights: epochs with the encoder frozen before unfreezing (discriminative LRs after)
    "lr_find": False,  # True: run fastai's lr_find on stage 1 first and log its suggestion
    "encoder_cut": None,  # fastai's cut: -3 ends a resnet after its third stage (2x less compute, for CPU runs)
    "last_cross": True,  # fastai's full-resolution last block (False: 2x less compute)
    "decoder": "fastai",  # stage 1's: "fastai" (DynamicUnet) or "light" (LightUnet: 3x faster steps on CPU)
    "sizes": [224, 512],  # progressive resizing, pixels
    "train_crop": None,  # px: train on random windows this size of each size's images; None = whole images
    "epochs": [4, 4],  # per size
    "lrs": [1e-3, 3e-4],  # per size
    "bs": 8,
    "num_workers": None,  # DataLoader workers; None: one per CPU core the kernel has (4 on Kaggle's GPU machine)
    "max_train_images": None,  # None = all
    "valid_pct": 0.1,
    "stage2_encoder": "resnet18",
    "stage2_weights": None,  # likewise for stage 2 (frozen, then unfrozen)
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
    "keep_checkpoints": False,  # when done: False deletes them (imaterialist-model/ keeps both stages' weights)
    "draft_decode": True,  # decode JPEGs at the DCT scale nearest the training size (3-4x faster; README); False: full
}


try:  # before the heavy imports: a typo in the settings costs a second, not minutes
    settings = kk.load_settings(SETTINGS, checks={"train_crop": whole_at_least(32, "px"),
                                                   "decoder": one_of("fastai", "light"), "sizes": non_empty_list,
                                                   "epochs": non_empty_list, "lrs": non_empty_list})  # fmt: skip
    kk.launch_on_every_gpu(settings["max_gpus"])  # two or more GPUs: this script again, one rank per GPU
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")


from fastai.vision.all import set_seed  # noqa: E402

from kaggle_kit.atomic import remove_stale_temps_in  # noqa: E402
from kaggle_kit.imaterialist.model import MODEL_DIR, FashionModel, prediction_settings  # noqa: E402
from kaggle_kit.imaterialist.postprocess import CategoryRule, PostProcessing  # noqa: E402
from kaggle_kit.imaterialist.stage1 import fit_progressive  # noqa: E402
from kaggle_kit.imaterialist.submission import COLUMNS  # noqa: E402
from kaggle_kit.imaterialist.training import FashionData, attribute_learner, attribute_thresholds, segmenter  # noqa
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
    kk.check_accelerator(stop=not settings["cpu_ok"])  # what was asked for against what was granted
    folder = kernel.find_input(settings["competition"])
    model_dir, whose = trained_model(
        kernel, MODEL_DIR, settings["model"], settings["retrain"], expected=prediction_settings(settings)
    )  # a changed model is refused, not used
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
test_files = sorted((folder / "test").glob("*.jpg"))


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
set_seed(settings["seed"])
data = FashionData.read(folder, settings["max_train_images"])  # read and validated before any long work
print(f"kernel: {len(data.image_ids)} training images, {len(data.train)} objects, {len(test_files)} test images")


def deadline(name: str, folder: str) -> kk.Deadline:  # each model its own checkpoints and name in the status
    return kk.Deadline(settings["checkpoint_every"], settings["reserve"], safety=settings["safety"],
                       checkpoints=working / "checkpoints" / folder, name=name)  # fmt: skip


# --- stage 1: segmentation, progressive resizing ---------------------------------------------------------------------
learn, dls_at = segmenter(data, settings, kernel.input_or_path(settings["weights"]))
batch_picture(learn.dls, working / "show_batch.png")  # what stage 1 is shown, once per run
if settings["lr_find"]:  # before the Deadline joins: lr_find's short fit is not a training stage
    print(f"kernel: lr_find suggests lr={suggest_lr(learn, working / 'lr_find.png'):.2e}; the fit uses "
          f"lrs={settings['lrs']} (the setting \"lrs\", one per size; set them from the suggestion)")  # fmt: skip
stage1 = deadline("segmenter", "stage1")
learn.add_cbs([kk.TrainingGuard(), stage1])  # the guard: training that does nothing is a one-line error
try:  # with weights fastai froze the encoder: the decoder trains first; on every rank of a launch (both T4s)
    with kk.distributed(learn):
        trained = fit_progressive(learn, dls_at, settings["sizes"], settings["epochs"], settings["lrs"], stage1,
                                  pretrained=settings["weights"] is not None,
                                  freeze_epochs=settings["freeze_epochs"])  # fmt: skip
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
if not trained:
    print("kernel: stage 1 stopped before the time limit; run again to resume")
    sys.exit(0)

# --- stage 2: attributes on garment crops, validated on stage 1's validation photos ----------------------------------
learn2, attribute_categories = attribute_learner(data, settings, [Path(p).name for p in learn.dls.valid.items],
                                                 kernel.input_or_path(settings["stage2_weights"]))  # fmt: skip
stage2 = deadline("attributes", "stage2")
try:  # with weights: frozen, then unfrozen with discriminative learning rates, as the seeds fine-tune
    with kk.distributed(learn2):
        trained = fit_guarded(learn2, settings["stage2_epochs"], settings["stage2_lr"], stage2,
                              pretrained=settings["stage2_weights"] is not None,
                              freeze_epochs=settings["freeze_epochs"])  # fmt: skip
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: stage 2: {exc}")
if not trained:
    print("kernel: stage 2 stopped before the time limit; run again to resume")
    sys.exit(0)
kk.rank_0_goes_on()  # tuning, the model folder and the submission: rank 0's alone
thresholds = attribute_thresholds(learn2)
tta = "hflip" if settings["flip_tta"] else None

# --- post-processing tuned to the metric on half of the validation photos, the model saved, scored on the rest ----
rules = tune_postprocessing(learn, data.train, folder / "train", data.category_ids, settings, tta)
FashionModel.save(working / MODEL_DIR, learn, learn2, settings, category_ids=data.category_ids,
                  attribute_categories=attribute_categories, thresholds=thresholds, most_common=data.most_common,
                  rules=rules, names=data.names)  # fmt: skip
fashion = FashionModel.load(working / MODEL_DIR, test_files)  # scored and submitted as any later kernel loads it
_tune_ids, report_ids = validation_halves(learn, settings["max_tune_images"])
report = validation_report(fashion, rules, report_ids, data.train, folder / "train", data.labels, working, data.cache,
                           tta, extra={"model": str(working / MODEL_DIR), "thresholds": thresholds,
                                       "attribute_categories": attribute_categories})  # fmt: skip
scores = {k: json.dumps({reading: round(v, 4) for reading, v in report["scores"][k].items()}) for k in report["scores"]}
print(f"kernel: validation scores {scores['model']} (baseline {scores['baseline']})")

# --- the submission, streamed from the model folder ----------------------------------------------------------------
fashion, summary = predict_from(working / MODEL_DIR)
if settings["compare_untuned"] and summary.complete:
    default = PostProcessing(data.category_ids, CategoryRule(settings["threshold"], settings["min_area"]))
    untuned = kk.CsvSink("submission-untuned.csv", fashion.submission_rows(default), COLUMNS)
    kk.stream_predict(fashion.stage1, test_files, untuned, tta=tta)
if summary.complete and not settings["keep_checkpoints"]:  # after "done": a kill before leaves them, never a retrain
    freed = prune_checkpoints(working / "checkpoints")
    print(f"kernel: training checkpoints pruned ({freed / 2**20:.0f} MiB); the model is {working / MODEL_DIR}")
