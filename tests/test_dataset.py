"""`kaggle-kit dataset push` against the local Kaggle: subfolders arrive, a second push is version 2, no secret."""

import json
import os
import subprocess
import sys

from kaggle_kit.modelfolder import ModelFolder

SECRET = "s3cr3t-key-0123456789"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "kaggle_kit.cli", *map(str, args)], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)  # fmt: skip


def _model(tmp_path):
    folder = tmp_path / "imaterialist-model"
    ModelFolder.write(folder, "imaterialist", {"stage1.pth": b"1" * 5000, "rules.json": b"{}"}, {"size": 64})
    (folder / "extras/plots").mkdir(parents=True)
    (folder / "extras/plots/loss.png").write_bytes(b"png bytes")
    return folder


def test_dataset_push_creates_then_versions_and_keeps_subfolders(local_kaggle, tmp_path):
    folder = _model(tmp_path)

    first = _cli("dataset", "push", folder, "--id", "tester/fashion-model")
    (folder / "extras/notes.txt").write_text("second")
    second = _cli("dataset", "push", folder, "--id", "tester/fashion-model", "-m", "more notes")

    assert first.returncode == 0, first.stderr
    assert "tester/fashion-model created" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "tester/fashion-model new version" in second.stdout
    latest = local_kaggle.datasets.latest("tester/fashion-model")
    assert latest.name == "2"
    assert (latest / "stage1.pth").read_bytes() == b"1" * 5000
    assert (latest / "extras/plots/loss.png").read_bytes() == b"png bytes"  # the subfolder arrived, unpacked
    assert (latest / "extras/notes.txt").read_text() == "second"
    assert json.loads((folder / "dataset-metadata.json").read_text())["id"] == "tester/fashion-model"
    ModelFolder.load(latest, "imaterialist")  # what arrived is the model, verified
    assert len(local_kaggle.calls("CreateDataset")) == len(local_kaggle.calls("CreateDatasetVersion")) == 1
    sent = json.dumps(local_kaggle.requests) + "".join(
        p.read_bytes().decode("latin-1") for p in local_kaggle.datasets.root.rglob("*") if p.is_file()
    )
    assert SECRET not in sent
    assert SECRET not in first.stdout + first.stderr + second.stdout + second.stderr


def test_a_folder_that_is_not_a_verified_model_is_refused_before_any_request(local_kaggle, tmp_path):
    folder = _model(tmp_path)
    (folder / "stage1.pth").write_bytes(b"2" * 5000)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "data.csv").write_text("a\n")

    changed = _cli("dataset", "push", folder, "--id", "tester/fashion-model")
    not_a_model = _cli("dataset", "push", plain, "--id", "tester/plain-data")
    anyway = _cli("dataset", "push", plain, "--id", "tester/plain-data", "--any")

    assert changed.returncode == 2
    assert "stage1.pth differs from the one the model was saved with" in changed.stderr
    assert not_a_model.returncode == 2
    assert "has no model-manifest.json: not a trained model folder (pass --any" in not_a_model.stderr
    assert anyway.returncode == 0, anyway.stderr
    assert local_kaggle.calls("CreateDataset")[0]["slug"] == "plain-data"


def test_a_credential_in_the_folder_is_refused(local_kaggle, tmp_path):
    folder = _model(tmp_path)
    (folder / "extras/kaggle.json").write_text(json.dumps({"username": "tester", "key": SECRET}))

    proc = _cli("dataset", "push", folder, "--id", "tester/fashion-model")

    assert proc.returncode == 2
    assert "holds extras/kaggle.json: a credential never travels" in proc.stderr
    assert local_kaggle.requests == []
