"""`kaggle-kit dataset push` against the local Kaggle: subfolders arrive, a second push is version 2, no secret."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kaggle_kit.modelfolder import ModelFolder
from kaggle_kit.push.secrets import looks_like_credential

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


def _refused_before_any_request(proc, local_kaggle, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for word in words:
        assert word in proc.stderr
    assert local_kaggle.requests == []


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_symlink_in_the_folder_is_refused_whatever_it_is_called(kind, local_kaggle, tmp_path):
    folder = _model(tmp_path)
    home_kaggle = tmp_path / "home/.kaggle"
    home_kaggle.mkdir(parents=True)
    (home_kaggle / "kaggle.json").write_text(json.dumps({"username": "tester", "key": "another-key-987654"}))
    if kind == "folder":
        (folder / "cfg").symlink_to(home_kaggle, target_is_directory=True)
    else:
        (folder / "extras/notes.txt").symlink_to(home_kaggle / "kaggle.json")

    proc = _cli("dataset", "push", folder, "--id", "tester/fashion-model")

    shown = "cfg" if kind == "folder" else "extras/notes.txt"
    _refused_before_any_request(proc, local_kaggle, f"holds {shown}, a symbolic link (to {home_kaggle}")


NAMES = [
    "kaggle.json.bak",
    "KAGGLE.JSON",
    "sub/Access_Token",
    ".env.local",
    "kaggle (1).json",
    "my_kaggle.json",
    "Copy of kaggle.json",
    "kaggle2.json",
    "kag\u200bgle.json",
    "prod.env",
    "_netrc",
    "AccessToken",
    "application_default_credentials.json",
    ".kaggle.bak/notes.txt",
    ".config/kaggle/notes.txt",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_credentials_name_in_any_case_or_variant_is_refused(name, local_kaggle, tmp_path):
    folder = _model(tmp_path)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("whatever it holds")

    proc = _cli("dataset", "push", folder, "--id", "tester/fashion-model")

    first = next(part for part in Path(name).parts if looks_like_credential(part))
    shown = name[: name.index(first) + len(first)]  # the first part of the path that is refused
    _refused_before_any_request(proc, local_kaggle, f"holds {shown}: a credential never travels")


@pytest.mark.parametrize("where", ["KAGGLE_KEY", "access_token"])
def test_a_file_whose_bytes_hold_the_users_key_or_token_is_refused(where, local_kaggle, tmp_path):
    folder = _model(tmp_path)
    home = tmp_path / "user-home"
    (home / ".kaggle").mkdir(parents=True)
    token = "KGAT_canary0123456789abcdef"
    (home / ".kaggle/access_token").write_text(token + "\n")
    secret = SECRET if where == "KAGGLE_KEY" else token  # the fixture's KAGGLE_KEY, or the token in ~/.kaggle
    (folder / "extras/plots/notes.txt").write_bytes(b"x" * (1 << 20) + f"key={secret}".encode() + b"y" * 100)

    proc = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", "dataset", "push", str(folder), "--id",
                           "tester/fashion-model"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOME": str(home)})  # fmt: skip

    _refused_before_any_request(proc, local_kaggle, "extras/plots/notes.txt, whose bytes contain your Kaggle key")
    assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_name_holding_the_users_key_is_refused(kind, local_kaggle, tmp_path):
    folder = _model(tmp_path)
    named = folder / f"{SECRET}.txt" if kind == "file" else folder / SECRET / "a.txt"
    named.parent.mkdir(exist_ok=True)
    named.write_text("x")

    proc = _cli("dataset", "push", folder, "--id", "tester/fashion-model")

    _refused_before_any_request(proc, local_kaggle, "whose name contains your Kaggle key or token")
    assert SECRET not in proc.stderr


def test_a_path_like_id_is_refused_and_the_local_kaggle_writes_nothing_outside_its_root(local_kaggle, tmp_path):
    folder = _model(tmp_path)

    proc = _cli("dataset", "push", folder, "--id", "../evil-slug")
    code, answer = local_kaggle.answer("CreateDataset", {"ownerSlug": "..", "slug": "evil-slug", "files": []})
    listed, _ = local_kaggle.answer("GetDatasetStatus", {"ownerSlug": "../..", "datasetSlug": "etc"})

    assert proc.returncode == 2
    assert "id '../evil-slug' must be 'owner/dataset-slug'" in proc.stderr
    assert (code, listed) == (400, 404), answer
    assert not (local_kaggle.datasets.root.parent / "evil-slug").exists()
    assert not (local_kaggle.root.parent / "evil-slug").exists()


def test_a_sparse_file_and_too_many_files_are_refused_before_any_request(local_kaggle, tmp_path):
    sparse_folder, many = tmp_path / "sparse", tmp_path / "many"
    sparse_folder.mkdir()
    with open(sparse_folder / "weights.bin", "wb") as f:
        f.truncate(20 * 10**9)  # 20 GB long, nothing on disk
    many.mkdir()
    for i in range(1001):
        (many / f"part-{i:04d}.csv").write_text("a\n")

    sparse = _cli("dataset", "push", sparse_folder, "--id", "tester/sparse-data", "--any")
    too_many = _cli("dataset", "push", many, "--id", "tester/many-files", "--any")

    _refused_before_any_request(sparse, local_kaggle, "weights.bin is a sparse file (18.63 GiB long")
    _refused_before_any_request(too_many, local_kaggle, "holds 1001 files: a Kaggle dataset version takes at most 1000")


def test_a_folder_over_the_size_limit_is_refused_before_any_request(local_kaggle, tmp_path):
    from kaggle_kit.errors import UsageError
    from kaggle_kit.push.dataset import push_dataset

    folder = tmp_path / "big"
    folder.mkdir()
    for name in ("a.bin", "b.bin"):
        (folder / name).write_bytes(os.urandom(3000))  # real bytes, not a sparse file

    with pytest.raises(UsageError) as error:  # the limit lowered as a rehearsal lowers it to its free disk
        push_dataset(folder, "tester/big-data", any_folder=True, max_bytes=5000, secrets=[])

    assert "holds 5.86 KiB: more than the 4.88 KiB a dataset push may send" in str(error.value)
    assert local_kaggle.requests == []


@pytest.mark.parametrize("path", ["nothere.bin", "../../etc/passwd"])
def test_resources_naming_a_file_not_in_the_folder_are_one_line(path, local_kaggle, tmp_path):
    folder = _model(tmp_path)
    (folder / "dataset-metadata.json").write_text(json.dumps({
        "title": "Fashion model", "id": "tester/fashion-model", "licenses": [{"name": "CC0-1.0"}],
        "resources": [{"path": path}]}))  # fmt: skip

    proc = _cli("dataset", "push", folder)

    _refused_before_any_request(proc, local_kaggle, f"resources names {path!r}, which is not in")


def test_resources_that_are_not_a_list_of_files_are_one_line(local_kaggle, tmp_path):
    folder = _model(tmp_path)
    (folder / "dataset-metadata.json").write_text(
        json.dumps(
            {"title": "Fashion model", "id": "tester/fashion-model", "licenses": [{"name": "CC0-1.0"}], "resources": 5}
        )
    )

    proc = _cli("dataset", "push", folder)

    _refused_before_any_request(proc, local_kaggle, 'resources must be a list of objects with a "path"')
