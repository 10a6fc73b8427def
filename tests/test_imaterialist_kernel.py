"""The iMaterialist kernel end to end under the emulator: interrupted by its time limit, resumed, scored."""

import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kaggle_kit.imaterialist.data import parse_class_id, read_labels
from kaggle_kit.imaterialist.model import FashionModel
from kaggle_kit.imaterialist.synth import SOLUTION_NAME, make_dataset
from kaggle_kit.local.demo import run_imaterialist_demo
from kaggle_kit.local.runplot import run_events
from kaggle_kit.templates import kernels_dir
from kaggle_kit.vision.rle import rle_decode

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo run (two kernel runs), shared: it takes minutes."""
    root = tmp_path_factory.mktemp("imaterialist-demo")
    return root, run_imaterialist_demo(root, first_time="75s")  # the demo's defaults: 160 training, 30 test photos


def test_the_kernel_stops_resumes_and_beats_the_trivial_baseline(demo):
    _root, out = demo

    first, last = out.runs[0], out.runs[-1]
    assert len(out.runs) == 2, [r.summary() for r in out.runs]
    assert first.verdict == "ok", first.summary()  # stopped by its Deadline, not killed by the time limit
    assert out.statuses[0].status == "needs-resume"
    assert last.verdict == "ok", last.summary()
    assert out.statuses[1].status == "done"
    (model_cat, base_cat), (model_full, base_full) = out.scores["category"], out.scores["full"]
    # the realistic profile at the demo's tiny sizes (64 -> 96 px, minutes on 2 CPUs): 0.085 / 0.041 when measured
    # with 160 training photos (0.031 / 0.000 with 100); benchmarks/quality.py measures what larger configs reach
    assert model_cat > base_cat + 0.03, out.scores
    assert model_full > base_full + 0.01, out.scores
    assert last.output_files <= 12
    for run in out.runs:  # each run drawn against its limits, as run-local draws it
        assert (Path(run.root) / "run-report.png").stat().st_size > 10_000
    assert out.statuses[0].where().startswith(("segmenter stage/epoch/batch", "attributes stage/epoch/batch"))


def test_the_report_says_where_the_model_fails_and_what_tuning_bought(demo):
    root, out = demo
    working = out.submission.parent
    report = json.loads((working / "imaterialist-report.json").read_text())

    post = report["postprocessing"]
    assert post["tuned_on"] >= 10
    assert post["scored_on"] >= 10
    assert post["tuned_model_size"] >= post["untuned_model_size"], post  # on images tuning did not see
    saved = json.loads((working / "imaterialist-model/rules.json").read_text())  # the rules travel with the model
    assert saved["rules"] == post["rules"]  # what the held-out score measured
    assert saved["final_rules"] == post["submission_rules"]  # chosen again on all validation photos for the submission
    categories = {row["id"]: row for row in report["categories"]}
    assert {31, 23}.issubset(categories)  # sleeves and shoes are in every validation split of the realistic data
    assert all(0.0 <= row["score"] <= 1.0 and row["images"] > 0 for row in categories.values())
    truth = pd.read_csv(root / "fashion-data/train.csv", dtype=str)
    for shown in report["overlays"]:  # the masks picture: true masks as train.csv has them, beside the predictions
        true_categories = sorted(int(c.split("_")[0]) for c in truth.loc[truth["ImageId"] == shown["image"], "ClassId"])
        assert shown["true"] == true_categories
    assert len(report["overlays"]) == 4
    with Image.open(working / "imaterialist-masks.png") as masks:  # panels edge to edge, rows up to 1000 px wide
        pixels = np.asarray(masks.convert("RGB"))
        assert masks.width <= 1100
        assert (pixels.min(axis=2) >= 250).mean() < 0.5  # mostly photos, not margins (23% blank on a sample)
    assert not list(working.rglob("ckpt-*.pth"))  # pruned when done: the final weights are kept once per stage
    assert sorted(p.name for p in (working / "imaterialist-model").iterdir()) == [
        "model-manifest.json", "rules.json", "stage1.pth", "stage2.pth"]  # fmt: skip
    with Image.open(working / "imaterialist-categories.png") as chart:
        assert chart.format == "PNG"
        assert chart.height > 100


def test_a_finished_runs_output_attached_to_a_new_kernel_predicts_without_training(demo, run_kernel, tmp_path):
    root, out = demo
    test_only = tmp_path / "competition"  # the test photos alone: no train.csv, no labels
    test_only.mkdir()
    (test_only / "test").symlink_to(root / "fashion-data/test")

    run = run_kernel(kernels_dir() / "imaterialist-fashion-2019/kernel.py", memory="6GiB", time="10min",
                     inputs={"imaterialist-fashion-2019-FGVC6": test_only, "my-training-run": out.submission.parent},
                     env={"KAGGLE_KIT_CONFIG": str(root / "demo-settings.json")})  # fmt: skip

    assert run.report.ok, run.explain()
    assert "kernel: predicting from the attached model" in run.stdout
    working = Path(run.report.working_dir)
    assert run_events(run.report)["checkpoint"] == []  # no training step, no Deadline: nothing checkpointed
    assert not (working / "checkpoints").exists()
    assert (working / "submission.csv").read_bytes() == out.submission.read_bytes()
    status = json.loads((working / "kaggle-kit-status.json").read_text())
    assert status["status"] == "done"
    assert status["model"].endswith("working/imaterialist-model")
    assert status["predicted_from"] == "the attached model"
    carried = working / "imaterialist-model"  # its output holds the model too: a chain's next run finds it there
    assert sorted(p.name for p in carried.iterdir()) == sorted(p.name for p in out.model.iterdir())
    assert (carried / "stage1.pth").read_bytes() == (out.model / "stage1.pth").read_bytes()
    _a_kernel_whose_prediction_settings_changed_refuses_the_attached_model(run_kernel, root, test_only, out, tmp_path)


def _a_kernel_whose_prediction_settings_changed_refuses_the_attached_model(run_kernel, root, test_only, out, tmp_path):
    """The same output attached to a kernel now set to another crop size and flip TTA: one line naming both and
    the ways out, before anything is trained or written."""
    settings = json.loads((root / "demo-settings.json").read_text())
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**settings, "crop_size": settings["crop_size"] * 2, "flip_tta": True}))
    run = run_kernel(kernels_dir() / "imaterialist-fashion-2019/kernel.py", memory="6GiB", time="10min",
                     inputs={"imaterialist-fashion-2019-FGVC6": test_only, "my-training-run": out.submission.parent},
                     env={"KAGGLE_KIT_CONFIG": str(changed)}, name="changed")  # fmt: skip

    assert run.report.exit_code == 1, run.explain()
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("kernel:")]
    crop = settings["crop_size"]
    for said in ("trained with other prediction settings", f"crop_size {crop} (now {crop * 2})",
                 "flip_tta False (now True)", '"retrain": true', '"model"'):  # fmt: skip
        assert said in line, line
    assert not (Path(run.report.working_dir) / "submission.csv").exists()


def test_the_inference_only_kernel_with_the_model_and_the_test_photos_alone(demo, run_kernel, tmp_path):
    root, out = demo
    test_only = tmp_path / "competition"  # no train.csv, no label_descriptions.json
    test_only.mkdir()
    (test_only / "test").symlink_to(root / "fashion-data/test")

    run = run_kernel(kernels_dir() / "imaterialist-predict/kernel.py", memory="4GiB", time="10min",
                     inputs={"imaterialist-fashion-2019-FGVC6": test_only,
                             "datasets/tester/imaterialist-model": out.model})  # fmt: skip

    assert run.report.ok, run.explain()
    assert (Path(run.report.working_dir) / "submission.csv").read_bytes() == out.submission.read_bytes()
    assert json.loads((Path(run.report.working_dir) / "kaggle-kit-status.json").read_text())["status"] == "done"


@pytest.mark.parametrize(("damage", "message"), [
    (lambda m: (m / "stage2.pth").unlink(), "stage2.pth is missing from the model folder"),
    (lambda m: _flip_last_byte(m / "stage1.pth"), "stage1.pth differs from the one the model was saved with"),
    (lambda m: _rules_of_another_model(m), "rules.json: rules tuned for another model than stage1.pth"),
    (lambda m: _manifest(m, format=99), "format 99 is newer than this kaggle_kit reads"),
    (lambda m: _setting(m, False, category_ids=[]), "model-manifest.json was edited after it was written"),
    (lambda m: _setting(m, True, sizes="abc"), "setting sizes='abc' is not a list of pixel sizes"),
])  # fmt: skip
def test_loading_a_model_whose_parts_do_not_belong_together_is_one_line_naming_the_file(demo, damage, message,
                                                                                        tmp_path):  # fmt: skip
    import shutil

    from kaggle_kit.modelfolder import ModelFolderError

    root, out = demo
    model = tmp_path / "imaterialist-model"
    shutil.copytree(out.submission.parent / "imaterialist-model", model)
    damage(model)

    with pytest.raises(ModelFolderError) as error:
        FashionModel.load(model, sorted((root / "fashion-data/test").glob("*.jpg")))

    assert message in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def _flip_last_byte(path):
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


def _manifest(model, resign=False, **changes):
    """Edit the manifest by hand; `resign`: recompute its own digest too, so the checks behind it are reached."""
    from kaggle_kit.modelfolder import _manifest_digest

    manifest = {**json.loads((model / "model-manifest.json").read_text()), **changes}
    if resign:
        manifest["digest"] = _manifest_digest(manifest)
    (model / "model-manifest.json").write_text(json.dumps(manifest))


def _setting(model, resign, **settings):
    manifest = json.loads((model / "model-manifest.json").read_text())
    _manifest(model, resign, settings={**manifest["settings"], **settings})


def _rules_of_another_model(model):
    """Another model's rules, with a manifest that lists their digest: only the rules' own key can tell."""
    import hashlib

    rules = json.loads((model / "rules.json").read_text())
    rules["key"]["model"] = "0" * 64
    data = json.dumps(rules).encode()
    (model / "rules.json").write_bytes(data)
    manifest = json.loads((model / "model-manifest.json").read_text())
    _manifest(model, resign=True, files={**manifest["files"], "rules.json": hashlib.sha256(data).hexdigest()})


def test_the_submission_is_valid(demo):
    root, out = demo
    data = root / "fashion-data"
    labels = read_labels(data / "label_descriptions.json")
    solution = pd.read_csv(data / SOLUTION_NAME)
    sizes = solution.groupby("ImageId")[["Height", "Width"]].first()

    submission = pd.read_csv(out.submission, dtype=str, keep_default_na=False)

    assert list(submission.columns) == ["ImageId", "EncodedPixels", "ClassId"]
    assert set(submission["ImageId"]) == set(sizes.index)
    for row in submission.itertuples():
        category, attributes = parse_class_id(row.ClassId)
        assert category in labels.categories
        assert all(a in labels.attributes for a in attributes)
        height, width = sizes.loc[row.ImageId]
        assert rle_decode(row.EncodedPixels, (height, width)).any()


MEMORY_KERNEL = """
import json, sys
from pathlib import Path
import torch
from fastai.vision.all import set_seed
import kaggle_kit as kk
from kaggle_kit.imaterialist import read_labels, read_train_csv
from kaggle_kit.imaterialist.stage1 import stage1_dataloaders, stage1_learner
from kaggle_kit.imaterialist.submission import COLUMNS, SubmissionRows

data = kk.Kernel.current().find_input("fashion")
labels = read_labels(data / "label_descriptions.json")
train = read_train_csv(data / "train.csv", labels)
set_seed(0)
dls = stage1_dataloaders(data / "train", train, labels.category_ids, 32, 4, Path("../cache"))
learn = stage1_learner(dls, len(labels.category_ids), "resnet18")
tests = sorted((data / "test").glob("*.jpg"))[: int(sys.argv[1])]
rows = SubmissionRows(labels.category_ids, None, threshold=0.5, min_area=0.0)  # random weights: many instances
summary = kk.stream_predict(learn, tests, kk.CsvSink("submission.csv", rows, COLUMNS), chunk_size=4, progress=False)
Path("../summary.json").write_text(json.dumps(summary.as_dict()))
"""


def test_memory_while_writing_the_submission_does_not_grow_with_the_test_set(run_kernel, tmp_path):
    data = make_dataset(tmp_path / "big", n_train=8, n_test=32, min_size=500, max_size=700, seed=5, profile="realistic")
    peaks = {}
    for n in (8, 32):
        run = run_kernel(MEMORY_KERNEL, memory="6GiB", inputs={"fashion": data}, args=[str(n)], name=f"mem{n}")
        assert run.report.ok, run.explain()
        assert json.loads((tmp_path / f"sandbox-mem{n}-{0 if n == 8 else 1}/summary.json").read_text())["done"] == n
        peaks[n] = run.report.peak_memory_bytes

    # Measured (8, 16, 32, 64 images): 0.975, 0.978, 0.984, 0.970 GiB, a spread of about 1.5%. Before, every instance
    # of an image was held at full size until its rows were written, so the peak followed the worst image seen and
    # rose with the test set (1.10 GiB at 8 to 1.18 GiB at 64).
    assert peaks[32] <= peaks[8] * 1.05, peaks


@pytest.mark.parametrize(("bad", "message"), [
    ({"decoder": "tiny"}, 'setting decoder .*must be "fastai" or "light"'),
    ({"train_crop": 16}, "setting train_crop .*must be null or a whole number >= 32"),
    ({"sizes": [], "epochs": [], "lrs": []}, "setting sizes .*must be a list of at least one value"),
    ({}, "input 'imaterialist-fashion-2019-FGVC6' is not attached"),  # run_kernel attaches no input
])  # fmt: skip
def test_a_bad_stage1_setting_is_one_line_before_any_work(bad, message, run_kernel, tmp_path):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps(bad))
    kernel = Path(__file__).parents[1] / "kernels/imaterialist-fashion-2019/kernel.py"
    run = run_kernel(kernel, memory="2GiB", env={"KAGGLE_KIT_CONFIG": str(config)})
    assert not run.report.ok
    lines = [line for line in run.stderr.splitlines() if line.startswith("kernel:")]
    assert len(lines) == 1, run.stderr
    assert re.search(message, lines[0]), run.stderr
    assert "Traceback" not in run.stderr


# --- kill -9 in every phase, each rerun a new process: the submission is byte-identical ---------------------------

# training crops and the light decoder on (the README's quick config; the demo resumes fastai's unet): random windows
# and the LightUnet's batch norms must resume exactly too
KILL_SETTINGS = {
    "encoder": "resnet18", "decoder": "light", "sizes": [48], "train_crop": 32, "epochs": [2], "lrs": [1e-2], "bs": 4,
    "num_workers": 0, "valid_pct": 0.25, "crop_size": 32, "stage2_epochs": 2, "stage2_lr": 3e-3, "stage2_bs": 8,
    "min_area": 0.0, "threshold": 0.3, "checkpoint_every": 0.0005, "reserve": 0.0, "safety": 0.0,
}  # fmt: skip


def _start(tmp_path, name, data):
    from conftest import start_kernel_process

    root = tmp_path / name
    if not root.exists():
        (root / "input").mkdir(parents=True)
        (root / "input" / "imaterialist-fashion-2019-FGVC6").symlink_to(data)
        (root / "working").mkdir()
        (root / "tmp").mkdir()
    kernel = Path(__file__).parents[1] / "kernels/imaterialist-fashion-2019/kernel.py"
    # a private temp dir: the kernel's mask and crop cache is rebuilt (and killed in) per sandbox
    env = {"KAGGLE_KIT_CONFIG": str(tmp_path / "kill.json"), "TMPDIR": str(root / "tmp")}
    return root, start_kernel_process(kernel, root, env)


def _phase_reached(root, phase):
    working = root / "working"
    if phase == "stage 1":
        return any((working / "checkpoints/stage1").glob("ckpt-*.pth"))
    if phase == "stage 2":
        return any((working / "checkpoints/stage2").glob("ckpt-*.pth"))
    if phase == "validation":
        return any(root.glob("tmp/kaggle-kit-imaterialist/*/validation_predictions.csv.progress.json"))
    manifest = working / "submission.csv.progress.json"
    try:
        return json.loads(manifest.read_text())["done"] > 0
    except (OSError, ValueError):
        return False


def test_a_kill_in_any_phase_then_a_new_process_gives_the_uninterrupted_submission(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=16, n_test=8, min_size=64, max_size=120, seed=3, profile="realistic")
    (tmp_path / "kill.json").write_text(json.dumps(KILL_SETTINGS))
    clean, proc = _start(tmp_path, "clean", data)
    out = proc.communicate(timeout=900)[0].decode()
    assert proc.returncode == 0, out

    kills = []
    for phase, extra_s in [("stage 1", 0), ("stage 2", 0), ("validation", 0), ("submission", 0), ("submission", 0.3)]:
        root, proc = _start(tmp_path, "killed", data)
        deadline = time.monotonic() + 600
        while not _phase_reached(root, phase) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(extra_s)  # the second submission kill lands later: inside the next chunk or its commit
        finished = proc.poll() is not None
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0].decode()
        assert not finished or proc.returncode == 0, output
        kills.append((phase, finished))
    (root / "working/.imaterialist-report.json.k1ll3d00.tmp").write_text("{")  # a kill inside an atomic write
    (root / "working/imaterialist-model/.rules.json.k1ll3d00.tmp").write_text("{")
    root, proc = _start(tmp_path, "killed", data)
    out = proc.communicate(timeout=900)[0].decode()

    assert proc.returncode == 0, out
    assert "predicting from the own model" in out  # written before the kills in the submission: not trained again
    assert (root / "working/submission.csv").read_bytes() == (clean / "working/submission.csv").read_bytes()
    assert not [p.name for p in (root / "working").rglob("*.tmp")]
    for name in ("rules.json", "stage1.pth", "stage2.pth"):  # tuned once, saved with the model, reused
        assert (root / "working/imaterialist-model" / name).read_bytes() == (
            clean / "working/imaterialist-model" / name).read_bytes(), name  # fmt: skip
    assert [finished for _phase, finished in kills[:-1]] == [False] * 4, kills  # the kills landed mid-run
