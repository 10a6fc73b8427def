"""Image classification in one kernel: single-label (top-k ids) or multi-label (thresholded tags), from a folder tree
or a CSV, as in the seed posts (Zalo landmarks, Planet, iMaterialist 2018, sharks vs dolphins).

Clean-up finds the images that would break training (they are left out: inputs are read-only on Kaggle), training runs
under kk.Deadline (resumable), test predictions stream out with flip TTA through the right submission writer, and two
pictures are saved: the confusion matrix and the most-wrong validation images. Settings live in SETTINGS; a JSON file
named by KAGGLE_KIT_CONFIG overrides them. Locally:
    kaggle-kit run-local kernels/image-classification --input images=PATH --config settings.json
"""

import json
import logging
import sys
import tempfile
from pathlib import Path

import kaggle_kit as kk

SETTINGS = {
    "input": "images",  # the dataset slug
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
    "lr_find": False,  # True: run fastai's lr_find first and log its suggestion
    "bs": 32,
    "epochs": 4,
    "lr": 3e-3,
    "valid_pct": 0.2,
    "seed": 42,
    "num_workers": 2,
    "top_k": 3,  # single-label: ids per row (Zalo: top-3)
    "beta": 2.0,  # multi-label: F-beta (Planet: F2)
    "threshold": 0.2,  # multi-label: starting threshold; tuned per class on validation
    "tta": ["hflip"],
    "id_column": "id",
    "answer_column": None,  # default "predicted" (single-label) or "tags" (multi-label)
    "checkpoint_every": 30.0,  # minutes
    "reserve": 15.0,  # minutes kept for prediction after training
    "safety": 1.0,
    "keep_checkpoints": False,  # when done: False keeps the final weights once (model.pth), not every checkpoint
    "draft_decode": False,  # True: decode JPEGs at the DCT scale nearest `size` (3-4x faster, see README)
}
try:  # before the heavy imports: a typo in the settings costs a second, not minutes
    settings = kk.load_settings(SETTINGS)
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")


import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from fastai.vision.all import (  # noqa: E402
    CategoryBlock,
    ColReader,
    DataBlock,
    MultiCategoryBlock,
    PILImage,
    RandomSplitter,
    Resize,
    accuracy,
    accuracy_multi,
    parent_label,
    set_seed,
    vision_learner,
)

from kaggle_kit.atomic import atomic_write_json  # noqa: E402
from kaggle_kit.checkpoint import CheckpointSaver, prune_checkpoints  # noqa: E402
from kaggle_kit.images import draft_image_block  # noqa: E402
from kaggle_kit.imaterialist.stage1 import architecture  # noqa: E402
from kaggle_kit.metrics import fbeta_metric, fbeta_score, search_thresholds, top_k_error, top_k_error_metric  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
kernel = kk.Kernel.current()
data = kernel.find_input(settings["input"])
working = kernel.working_dir
set_seed(settings["seed"])

# --- clean-up: inputs are read-only, so unusable images are left out (PIL converts the others while loading) -------
scratch = Path(tempfile.mkdtemp(prefix="kaggle-kit-clean-"))
report = kk.clean_images(
    data / settings["train_dir"], dry_run=True, report_path=scratch / "train-report.json", progress=False
)
unusable = {data / settings["train_dir"] / f["path"] for f in report.files
            if f["problem"] in ("zero bytes", "undecodable", "too large")}  # fmt: skip
print(f"kernel: clean-up: {report.summary()}; leaving out {len(unusable)}")

if settings["layout"] == "folders":
    items = [p for p in sorted((data / settings["train_dir"]).rglob("*")) if p.suffix.lower() in
             (".jpg", ".jpeg", ".png") and p not in unusable]  # fmt: skip
    get_x, get_y = None, parent_label
else:
    frame = pd.read_csv(data / settings["csv"], dtype=str, keep_default_na=False)
    frame["path"] = [
        data / settings["train_dir"] / (n + settings["image_suffix"]) for n in frame[settings["image_column"]]
    ]
    items = frame[~frame["path"].isin(unusable)].reset_index(drop=True)
    get_x = ColReader("path")
    get_y = ColReader(
        settings["label_column"], label_delim=settings["label_delim"] if settings["multi_label"] else None
    )
multi = settings["multi_label"]
images = draft_image_block(settings["size"] if settings["draft_decode"] else None)  # test DataLoaders too
block = DataBlock(blocks=(images, MultiCategoryBlock if multi else CategoryBlock), get_x=get_x, get_y=get_y,
                  splitter=RandomSplitter(settings["valid_pct"], seed=settings["seed"]),
                  item_tfms=Resize(settings["size"]))  # fmt: skip
dls = block.dataloaders(items, bs=settings["bs"], num_workers=settings["num_workers"])
metrics = ([fbeta_metric(settings["beta"], settings["threshold"]), accuracy_multi] if multi else
           [accuracy, top_k_error_metric(min(settings["top_k"], len(dls.vocab)))])  # fmt: skip
weights = settings["weights"]
if weights is not None and not Path(weights).exists():
    weights = kernel.find_input(weights)  # the slug of an attached dataset
build, pretrained = architecture(settings["arch"], weights)  # pretrained: body frozen, ImageNet Normalize
learn = vision_learner(dls, build, pretrained=pretrained, metrics=metrics)
if settings["lr_find"]:
    print(f"kernel: lr_find suggests lr={learn.lr_find(show_plot=False).valley:.2e} (settings lr={settings['lr']})")

deadline = kk.Deadline(
    every=settings["checkpoint_every"],
    reserve=settings["reserve"],
    safety=settings["safety"],
    saver=CheckpointSaver(working / "checkpoints"),
)
try:  # TrainingGuard: no training batch, a loss never finite or no step is a one-line error, not "done"
    if pretrained:  # the seeds' way: frozen body first, then all layers with discriminative learning rates
        learn.fine_tune(settings["epochs"], settings["lr"], freeze_epochs=settings["freeze_epochs"],
                        cbs=[kk.TrainingGuard(), deadline])  # fmt: skip
    else:
        learn.fit_one_cycle(settings["epochs"], settings["lr"], cbs=[kk.TrainingGuard(), deadline])
except kk.TrainingError as exc:
    sys.exit(f"kernel: {exc}")
if deadline.stopped:
    print("kernel: training stopped before the time limit; run again to resume")
    raise SystemExit(0)

# --- validation: thresholds, scores, the two pictures ----------------------------------------------------------------
with learn.no_bar():
    probs, targets, losses = learn.get_preds(with_loss=True)
probs, targets, vocab = probs.numpy(), targets.numpy(), list(learn.dls.vocab)
if multi:
    thresholds = search_thresholds(probs, targets, settings["beta"], start=settings["threshold"])
    scores = {"f_beta": fbeta_score(probs, targets, settings["beta"], thresholds)}
    predicted = probs >= thresholds
    matrix = (targets > 0.5).T.astype(int) @ predicted.astype(int)  # true tag (rows) vs predicted tag (columns)
else:
    thresholds = None
    scores = {"accuracy": float((probs.argmax(1) == targets).mean()),
              f"top_{settings['top_k']}_error": top_k_error(probs, targets, settings["top_k"])}  # fmt: skip
    matrix = np.zeros((len(vocab), len(vocab)), dtype=int)
    np.add.at(matrix, (targets.astype(int), probs.argmax(1)), 1)
print(f"kernel: validation {json.dumps({k: round(v, 4) for k, v in scores.items()})}")

fig, ax = plt.subplots(figsize=(2 + 0.4 * len(vocab), 2 + 0.4 * len(vocab)))
ax.imshow(matrix, cmap="Blues")
ax.set(
    xticks=range(len(vocab)),
    yticks=range(len(vocab)),
    xticklabels=vocab,
    yticklabels=vocab,
    xlabel="predicted",
    ylabel="actual",
    title="confusion matrix" + (" (tags)" if multi else ""),
)
for (r, c), n in np.ndenumerate(matrix):
    ax.text(c, r, str(n), ha="center", va="center", fontsize=8)
fig.tight_layout()
fig.savefig("confusion_matrix.png", dpi=80)
plt.close(fig)

valid_items = learn.dls.valid.items
worst = torch.argsort(losses, descending=True)[:9].tolist()
fig, axes = plt.subplots(3, 3, figsize=(9, 9))
for ax, i in zip(axes.flat, worst, strict=False):  # fewer than 9 validation images is fine
    item = valid_items.iloc[i]["path"] if isinstance(valid_items, pd.DataFrame) else valid_items[i]
    ax.imshow(PILImage.create(item))
    truth = [vocab[c] for c in np.flatnonzero(targets[i] > 0.5)] if multi else [vocab[int(targets[i])]]
    guess = [vocab[c] for c in np.flatnonzero(probs[i] >= thresholds)] if multi else [vocab[int(probs[i].argmax())]]
    ax.set_title(f"{' '.join(truth)} / {' '.join(guess)}\nloss {float(losses[i]):.2f}", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("most wrong validation images: actual / predicted")
fig.savefig("most_wrong.png", dpi=80)
plt.close(fig)

# --- the submission, streamed with TTA --------------------------------------------------------------------------------
test_files = sorted(
    p for p in (data / settings["test_dir"]).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
)
if multi:
    to_rows, answer = kk.tags_rows(vocab, thresholds), settings["answer_column"] or "tags"
else:
    to_rows, answer = kk.top_k_rows(vocab, settings["top_k"]), settings["answer_column"] or "predicted"
summary = kk.stream_predict(
    learn, test_files, kk.CsvSink("submission.csv", to_rows, [settings["id_column"], answer]), tta=settings["tta"]
)
atomic_write_json(working / "classification-report.json",
    {"validation": scores, "thresholds": None if thresholds is None else np.round(thresholds, 2).tolist(),
     "vocab": vocab, "clean_up": report.counts, "prediction": summary.as_dict()})  # fmt: skip
if summary.complete:
    kk.mark_done(submission="submission.csv")
    if not settings["keep_checkpoints"]:  # after "done": a kill in between leaves checkpoints, never a retrain
        freed = prune_checkpoints(working / "checkpoints", learn.model, working / "model.pth")
        print(f"kernel: training checkpoints pruned ({freed / 2**20:.0f} MiB); final weights in model.pth")
    print(f"kernel: submission.csv written for {summary.done} test images ({len(summary.skipped)} unreadable)")
