"""Image classification: the submission from a trained model, no training (an inference-only kernel).

Attach the test images (a dataset with a test/ folder) and the model folder a finished classification run wrote,
classifier-model/: published as a dataset, or that run's output attached as a notebook source. Internet off.
The submission is byte for byte the one the training run wrote on the same test images.
    kaggle-kit run-local kernels/classification-predict --input your-images=data/ \\
        --input classifier-model=path/to/classifier-model
"""

import sys

import kaggle_kit as kk

SETTINGS = {
    "cpu_ok": False,  # True: go on when no GPU that torch can run was granted (the log's accelerator line says)
    "max_gpus": None,  # predict on one process per GPU (both T4s); None: every GPU torch can run, 1: one GPU
    "input": "your-images",  # the dataset slug holding the test images
    "test_dir": "test",
    "model": "classifier-model",  # the model: an attached input's slug (a dataset, a kernel's output) or a path
}
try:  # before the heavy imports: a typo in the settings costs a second, not minutes
    settings = kk.load_settings(SETTINGS)
    kk.launch_on_every_gpu(settings["max_gpus"])  # two or more GPUs: this script again, one rank per GPU
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")

from kaggle_kit.classification.model import MODEL_DIR, ClassifierModel  # noqa: E402
from kaggle_kit.modelfolder import trained_model  # noqa: E402

kernel = kk.Kernel.current()
try:  # not attached, or a model whose parts do not belong together: one line, not a traceback
    kk.check_accelerator(stop=not settings["cpu_ok"])  # what was asked for against what was granted
    data = kernel.find_input(settings["input"])
    model_dir, _ = trained_model(kernel, MODEL_DIR, settings["model"])
    test_files = sorted(p for p in (data / settings["test_dir"]).rglob("*")
                        if p.suffix.lower() in (".jpg", ".jpeg", ".png"))  # fmt: skip
    classifier = ClassifierModel.load(model_dir, test_files)
except kk.KaggleKitError as exc:
    sys.exit(f"kernel: {exc}")
if kk.main_process():
    print(f"kernel: predicting {len(test_files)} test images from the model {model_dir}; nothing is trained")
summary = classifier.predict(test_files, "submission.csv")
if summary.complete and kk.main_process():  # every rank predicted its share; rank 0 wrote the file
    kk.mark_done(submission="submission.csv", model=str(model_dir))
    print(f"kernel: submission.csv written for {summary.done} test images ({len(summary.skipped)} unreadable)")
