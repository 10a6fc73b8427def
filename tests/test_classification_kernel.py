"""The classification kernel end to end under the emulator, on synthetic single-label and multi-label sets."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_class_folders
from PIL import Image

from kaggle_kit.local.runplot import run_events
from kaggle_kit.templates import kernels_dir
from kaggle_kit.vision.synthetic import make_colour_squares

pytestmark = pytest.mark.e2e

SCRIPT = kernels_dir() / "image-classification" / "kernel.py"
FAST = {"size": 32, "bs": 16, "epochs": 4, "lr": 1e-2, "num_workers": 0, "reserve": 0.1, "safety": 0.05}


def _write_config(tmp_path, **settings):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({**FAST, **settings}))
    return {"KAGGLE_KIT_CONFIG": str(path)}


def test_single_label_from_a_folder_tree_with_bad_images(run_kernel, tmp_path):
    data = tmp_path / "shapes"
    test = make_class_folders(data, 160, 40)
    (data / "train/red/00999_red_big.png").write_bytes(b"")  # would kill training: left out
    (data / "test/00999_blue_big.png").write_bytes(b"")  # unreadable test image: still gets a row

    run = run_kernel(SCRIPT, inputs={"your-images": data}, memory="6GiB", env=_write_config(tmp_path, top_k=2))

    assert run.report.ok, run.explain()
    working = Path(run.report.working_dir)
    submission = pd.read_csv(working / "submission.csv", dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["id", "predicted"]
    assert len(submission) == len(test) + 1
    scored = submission[submission["id"] != "00999_blue_big"]
    accuracy = (scored["predicted"].str.split().str[0] == scored["id"].str.split("_").str[1]).mean()
    assert accuracy > 0.8, submission  # chance is 0.5
    assert submission.set_index("id").loc["00999_blue_big", "predicted"] == ""
    report = json.loads((working / "classification-report.json").read_text())
    assert report["clean_up"] == {"zero bytes": 1}
    assert report["validation"]["accuracy"] > report["validation"]["baseline_accuracy"] + 0.2
    for picture in ("confusion_matrix.png", "top_losses.png", "show_batch.png"):
        with Image.open(working / picture) as image:
            assert image.size[0] > 100
    assert run.report.output_files <= 10
    assert not (working / "checkpoints").exists()  # pruned when done: the final weights are kept once
    assert (working / "classifier-model/model.pth").stat().st_size > 1_000_000
    _validation_is_predicted_with_the_submissions_tta(data, working, report)
    _a_kernel_whose_prediction_settings_changed_refuses_the_attached_model(run_kernel, data, working, tmp_path)


def _a_kernel_whose_prediction_settings_changed_refuses_the_attached_model(run_kernel, data, output, tmp_path):
    """The first run's output attached to a kernel now set to resnet34 / size 48 / top_k 1: refused in one line
    naming what changed and the ways out, before anything is trained or written."""
    changed = tmp_path / "changed"
    changed.mkdir()
    run = run_kernel(SCRIPT, inputs={"your-images": data, "notebooks/tester/run-1": output}, memory="6GiB",
                     env=_write_config(changed, top_k=1, arch="resnet34", size=48))  # fmt: skip

    assert run.report.exit_code == 1, run.explain()
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("kernel:")]
    for said in ("trained with other prediction settings", "size 32 (now 48)", "arch 'resnet18' (now 'resnet34')",
                 "top_k 2 (now 1)", '"retrain": true', '"model"'):  # fmt: skip
        assert said in line, line
    assert not (Path(run.report.working_dir) / "submission.csv").exists()


def _validation_is_predicted_with_the_submissions_tta(data, working, report):
    """The saved validation predictions (what the scores and thresholds come from) are the final model's with flip
    TTA, as the submission's are, not fastai's plain get_preds."""
    import numpy as np
    import torch
    from fastai.vision.all import CategoryBlock, DataBlock, Resize, parent_label, vision_learner
    from torchvision.models import resnet18

    from kaggle_kit.kernel import Kernel
    from kaggle_kit.predict.sinks import ArraySink
    from kaggle_kit.predict.stream import stream_predict
    from kaggle_kit.vision.images import draft_image_block

    items = [data / name for name in report["validation_items"]]
    block = DataBlock((draft_image_block(32), CategoryBlock), get_y=parent_label, item_tfms=Resize(32))
    learn = vision_learner(block.dataloaders(items, bs=16, num_workers=0), resnet18, pretrained=False)
    learn.model.load_state_dict(torch.load(working / "classifier-model/model.pth"))
    assert list(learn.dls.vocab) == report["vocab"]
    saved = np.load(working / "validation-predictions.npy")
    kernel = Kernel(working.parent.parent / "check")
    kernel.working_dir.mkdir(parents=True)
    for tta in (["hflip"], None):
        sink = ArraySink(kernel.working_dir / f"{tta}.npy")
        stream_predict(learn, items, sink, tta=tta, kernel=kernel, progress=False)
        same = np.allclose(np.load(sink.path), saved, atol=1e-5)
        assert same == (tta is not None), tta


def test_multi_label_from_a_csv_beats_chance(run_kernel, tmp_path):
    data = tmp_path / "planet"
    paths = make_colour_squares(data / "train", 200, seed=3, masks=False)
    pd.DataFrame({"image": [p.stem for p in paths], "labels": [" ".join(p.stem.split("_")[1:]) for p in paths]}
                 ).to_csv(data / "labels.csv", index=False)  # fmt: skip
    test = make_colour_squares(data / "test", 40, seed=4, masks=False)

    run = run_kernel(
        SCRIPT,
        inputs={"your-images": data},
        memory="6GiB",
        env=_write_config(
            tmp_path, layout="csv", multi_label=True, image_suffix=".png", id_column="image_name", epochs=6
        ),
    )

    assert run.report.ok, run.explain()
    working = Path(run.report.working_dir)
    submission = pd.read_csv(working / "submission.csv", dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["image_name", "tags"]
    assert sorted(submission["image_name"]) == sorted(p.stem for p in test)
    truth = {p.stem: set(p.stem.split("_")[1:]) for p in test}
    exact = sum(
        set(tags.split()) == truth[name]
        for name, tags in zip(submission["image_name"], submission["tags"], strict=False)
    )
    assert exact / len(test) > 0.6, submission  # 4 equally likely tag pairs: chance is 0.25
    report = json.loads((working / "classification-report.json").read_text())
    validation = report["validation"]  # thresholds tuned on one half of validation, scored on the other
    assert validation["f_beta"] > 0.8
    assert validation["f_beta"] > validation["f_beta_baseline"] + 0.2
    assert validation["tuned_on"] + validation["scored_on"] == 40
    for picture in ("tag_precision_recall.png", "show_batch.png"):
        with Image.open(working / picture) as image:
            assert image.size[0] > 300
    # the thresholds come from the saved validation predictions (flip TTA, as the submission is predicted)
    from kaggle_kit.vision.metrics import multi_label_validation

    vocab = report["vocab"]
    names = [Path(name).stem for name in report["validation_items"]]
    targets = np.array([[tag in name.split("_")[1:] for tag in vocab] for name in names], dtype=float)
    thresholds, scores = multi_label_validation(np.load(working / "validation-predictions.npy"), targets)
    assert np.round(thresholds, 2).tolist() == report["thresholds"]
    assert scores == pytest.approx(validation)

    # the finished output attached to a new kernel that has only the test images: predicted, never trained again
    test_only = tmp_path / "test-only"
    test_only.mkdir()
    (test_only / "test").symlink_to(data / "test")
    again = run_kernel(SCRIPT, inputs={"your-images": test_only, "run-1": working}, memory="6GiB",
                       env=_write_config(tmp_path, layout="csv", multi_label=True, image_suffix=".png",
                                         id_column="image_name", epochs=6))  # fmt: skip
    assert again.report.ok, again.explain()
    assert "kernel: predicting from the attached model" in again.stdout
    assert run_events(again.report)["checkpoint"] == []  # nothing trained: nothing checkpointed
    assert not (Path(again.report.working_dir) / "checkpoints").exists()
    assert (Path(again.report.working_dir) / "submission.csv").read_bytes() == (working / "submission.csv").read_bytes()
    # and the inference-only kernel, given the model folder and the test images alone
    model = working / "classifier-model"
    predict_only = run_kernel(kernels_dir() / "classification-predict/kernel.py", memory="4GiB",
                              inputs={"your-images": test_only, "classifier-model": model})  # fmt: skip
    assert predict_only.report.ok, predict_only.explain()
    assert (Path(predict_only.report.working_dir) / "submission.csv").read_bytes() == (
        working / "submission.csv").read_bytes()  # fmt: skip


def test_the_kernel_without_its_input_attached_is_one_line(run_kernel):
    kernel = Path(__file__).parents[1] / "kernels/image-classification/kernel.py"

    run = run_kernel(kernel, memory="2GiB")

    lines = [line for line in run.stderr.splitlines() if line.startswith("kernel:")]
    assert not run.report.ok
    assert len(lines) == 1, run.stderr
    assert "is not attached" in lines[0]
    assert "Traceback" not in run.stderr


def test_the_streaming_demo_with_an_unknown_setting_is_one_line(run_kernel, tmp_path):
    config = tmp_path / "bad.json"
    config.write_text('{"epochz": 3}')
    kernel = Path(__file__).parents[1] / "kernels/streaming-demo/kernel.py"

    run = run_kernel(kernel, memory="2GiB", env={"KAGGLE_KIT_CONFIG": str(config)})

    lines = [line for line in run.stderr.splitlines() if line.startswith("kernel:")]
    assert not run.report.ok
    assert len(lines) == 1, run.stderr
    assert "epochz" in lines[0]
    assert "Traceback" not in run.stderr
