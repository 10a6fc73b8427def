"""Image classification in one kernel: single-label (top-k ids) or multi-label (thresholded tags), from a folder tree
or a CSV, as in the seed posts (Zalo landmarks, Planet, iMaterialist 2018, sharks vs dolphins).

Clean-up finds the images that would break training (they are left out: inputs are read-only on Kaggle), training runs
under kk.Deadline (resumable; pretrained bodies fine-tuned frozen then unfrozen), test predictions stream out with flip
TTA through the right submission writer, and fastai's interpretation plots are saved. Settings live in SETTINGS; a
JSON file named by KAGGLE_KIT_CONFIG overrides them. Locally:
    kaggle-kit run-local kernels/image-classification --input your-images=PATH --config settings.json
"""

import json
import logging
import sys
import tempfile
from functools import partial
from pathlib import Path

import kaggle_kit as kk

SETTINGS = {
    "fp16": True,  # mixed precision (fp16 and a gradient scaler) when a CUDA GPU is there; fp32 on the CPU
    "max_gpus": None,  # train on one process per GPU (both T4s); None: every GPU torch can run, 1: one GPU
    "cpu_ok": False,  # True: go on when no GPU that torch can run was granted (the log's accelerator line says)
    "input": "your-images",  # the dataset slug
    "model": None,  # a trained model folder (classifier-model/ of a finished run: an attached input's slug or a path):
    # predict the submission from it, no training; None: train, unless an input holds a finished model
    "retrain": False,  # True: train even when an attached input (or working/) holds this kernel's finished model
    "layout": "folders",  # "folders": train/<label>/*.jpg; "csv": a CSV of image names and labels + a train/ folder
    "csv": "labels.csv",
    "image_column": "image",
    "label_column": "labels",
    "label_delim": " ",  # multi-label tags in one column
    "image_suffix": "",  # appended to the CSV's names (".jpg" when the CSV has bare ids)
    "multi_label": False,
    "train_dir": "train",
    "test_dir": "test",
    "size": 64,
    "arch": "resnet18",
    "weights": None,  # the arch's torchvision checkpoint: a dataset slug or path; given: pretrained, fine-tuned
    "freeze_epochs": 1,  # with weights: epochs with the body frozen before unfreezing (fastai's fine_tune)
    "lr_find": False,  # True: run fastai's lr_find first, log its suggestion and save its plot (lr_find.png)
    "augment": True,  # fastai's aug_transforms while training (flips as the TTA flips: vertical too with "vflip")
    "bs": 32,
    "epochs": 4,
    "lr": 3e-3,
    "valid_pct": 0.2,
    "seed": 42,
    "num_workers": None,  # DataLoader workers; None: one per CPU core the kernel has (4 on Kaggle's GPU machine)
    "top_k": 3,  # single-label: ids per row (Zalo: top-3)
    "beta": 2.0,  # multi-label: F-beta (Planet: F2)
    "threshold": 0.2,  # multi-label: starting threshold; tuned per class on validation
    "tta": ["hflip"],  # flips averaged at prediction: validation (tuning, scores, pictures) and the submission alike
    "id_column": "id",
    "answer_column": None,  # default "predicted" (single-label) or "tags" (multi-label)
    "checkpoint_every": 30.0,  # minutes
    "reserve": 15.0,  # minutes kept for prediction after training
    "safety": None,  # minutes of margin beyond the measured work; None: 2% of the time limit, at most 1
    "predict_reserve": None,  # seconds kept free after prediction; None: 5% of the time limit, at most 60
    "keep_checkpoints": False,  # when done: False deletes the checkpoints (classifier-model/ keeps the final weights)
    "draft_decode": True,  # decode JPEGs at the DCT scale nearest `size` (3-4x faster; README); False: full decoding
}
try:  # before the heavy imports: a typo in the settings costs a second, not minutes
    settings = kk.load_settings(SETTINGS)
    kk.launch_on_every_gpu(settings["max_gpus"])  # two or more GPUs: this script again, one rank per GPU
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")


from fastai.vision.all import (  # noqa: E402
    FBetaMulti,
    RandomSplitter,
    accuracy,
    accuracy_multi,
    aug_transforms,
    set_seed,
    top_k_accuracy,
    vision_learner,
)

from kaggle_kit.atomic import remove_stale_temps_in  # noqa: E402
from kaggle_kit.classification.data import classification_block, image_files, training_items  # noqa: E402
from kaggle_kit.classification.model import MODEL_DIR, ClassifierModel, prediction_settings  # noqa: E402
from kaggle_kit.classification.report import validate  # noqa: E402
from kaggle_kit.modelfolder import submit, trained_model  # noqa: E402
from kaggle_kit.train.checkpoint import prune_checkpoints  # noqa: E402
from kaggle_kit.train.guard import fit_guarded  # noqa: E402
from kaggle_kit.train.lr import suggest_lr  # noqa: E402
from kaggle_kit.train.precision import mixed_precision  # noqa: E402
from kaggle_kit.train.weights import architecture  # noqa: E402
from kaggle_kit.vision.charts import batch_picture  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
kernel = kk.Kernel.current()
try:  # not attached: one line, not a traceback
    kk.check_accelerator(stop=not settings["cpu_ok"])  # what was asked for against what was granted
    data = kernel.find_input(settings["input"])
    model_dir, whose = trained_model(
        kernel, MODEL_DIR, settings["model"], settings["retrain"], expected=prediction_settings(settings)
    )  # a changed model is refused, not used
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
working = kernel.working_dir
remove_stale_temps_in(working)  # what a kill mid-write left of an earlier run's reports and pictures
set_seed(settings["seed"])
test_files = image_files(data / settings["test_dir"])


def predict_from(model_dir: Path, whose: str = "own"):
    """The submission streamed from the model folder; the kernel is done when every test image has its row."""
    try:
        classifier = ClassifierModel.load(model_dir, test_files)
    except kk.KaggleKitError as exc:
        sys.exit(f"kernel: {exc}")
    return submit(classifier, model_dir, test_files, whose, reserve_s=settings["predict_reserve"])


if model_dir is not None:  # a finished model: no training, the same submission it would write
    print(f"kernel: predicting from the {whose} model {model_dir}; nothing is trained")
    predict_from(model_dir, whose)
    raise SystemExit(0)

# --- the training data: unusable images left out (inputs are read-only); one DataBlock for training and prediction --
scratch = Path(tempfile.mkdtemp(prefix="kaggle-kit-clean-"))
items, get_x, get_y, cleaned = training_items(data, settings, scratch)
if kk.main_process():  # on both T4s every rank checks its images; one says so
    print(f"kernel: clean-up: {cleaned.summary()}; leaving out {len(cleaned.unusable())}")
multi, tta = settings["multi_label"], settings["tta"] or []
augment = aug_transforms(flip_vert="vflip" in tta) if settings["augment"] else None  # flips the TTA undoes
block = classification_block(settings, get_x=get_x, get_y=get_y, batch_tfms=augment,  # the saved model's too
                             splitter=RandomSplitter(settings["valid_pct"], seed=settings["seed"]))  # fmt: skip
dls = block.dataloaders(items, bs=settings["bs"], num_workers=kernel.workers(settings["num_workers"]))
batch_picture(dls, working / "show_batch.png")  # what the model is shown, once per run
metrics = ([FBetaMulti(settings["beta"], thresh=settings["threshold"], average="samples"), accuracy_multi] if multi
           else [accuracy, partial(top_k_accuracy, k=min(settings["top_k"], len(dls.vocab)))])  # fmt: skip
try:  # an unknown arch or a weights file that is not one: one line, not a traceback
    build, pretrained = architecture(settings["arch"], kernel.input_or_path(settings["weights"]))  # frozen if weights
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
learn = vision_learner(dls, build, pretrained=pretrained, metrics=metrics)
mixed_precision(learn, settings["fp16"])
if settings["lr_find"]:  # before the Deadline joins: lr_find's short fit is not a training stage
    print(f"kernel: lr_find suggests lr={suggest_lr(learn, working / 'lr_find.png'):.2e}; the fit uses "
          f"lr={settings['lr']} (the setting \"lr\"; set it to the suggestion to train with that)")  # fmt: skip

# --- training under the Deadline: a pretrained body frozen first, then all layers (the seeds' way) ------------------
deadline = kk.Deadline(settings["checkpoint_every"], settings["reserve"], safety=settings["safety"],
                       checkpoints=working / "checkpoints")  # fmt: skip
try:  # TrainingGuard: no training batch, a loss never finite or no step is a one-line error, not "done"
    with kk.distributed(learn):  # on every rank of a launch (both T4s); as it is in one process
        trained = fit_guarded(learn, settings["epochs"], settings["lr"], deadline, pretrained=pretrained,
                              freeze_epochs=settings["freeze_epochs"])  # fmt: skip
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
if not trained:
    print("kernel: training stopped before the time limit; run again to resume")
    raise SystemExit(0)
kk.rank_0_goes_on()  # validation, the model folder and the submission: rank 0's alone

# --- validation predicted as the submission is (same TTA), then the model folder and the submission from it ---------
thresholds, scores = validate(learn, data, settings, working, scratch,
                              extra={"clean_up": cleaned.counts, "model": str(working / MODEL_DIR)})  # fmt: skip
if multi:
    print(f"kernel: thresholds used: {scores['thresholds_used']} (held-out F-beta {scores['f_beta_tuned']:.3f} tuned "
          f"per tag, {scores['f_beta_at_start_threshold']:.3f} at {settings['threshold']} for every tag)")  # fmt: skip
rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}
print(f"kernel: validation (TTA {tta or 'none'}) {json.dumps(rounded)}")
ClassifierModel.save(working / MODEL_DIR, learn, settings, pretrained=pretrained, thresholds=thresholds)
summary = predict_from(working / MODEL_DIR)
if summary.complete and not settings["keep_checkpoints"]:  # after "done": a kill before leaves them, never a retrain
    freed = prune_checkpoints(working / "checkpoints")
    print(f"kernel: training checkpoints pruned ({freed / 2**20:.0f} MiB); the model is {working / MODEL_DIR}")
