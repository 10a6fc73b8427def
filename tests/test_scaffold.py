"""`kaggle-kit init`: a kernel folder from one command, named after the user, that bundles, runs and pushes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KAGGLE_KIT = str(Path(sys.executable).parent / "kaggle-kit")


def _run(*args, env=None):
    return subprocess.run([KAGGLE_KIT, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.mark.parametrize(
    "kind", ["imaterialist", "classification", "imaterialist-predict", "classification-predict", "blank"]
)
def test_init_then_bundle_round_trip_with_the_users_name(kind, tmp_path):
    env = {"KAGGLE_USERNAME": "tester", "KAGGLE_CONFIG_DIR": str(tmp_path / "none")}
    done = _run("init", tmp_path / "My Fashion Kernel", "--kind", kind, env=env)
    bundled = _run("bundle", tmp_path / "My Fashion Kernel", "--out", tmp_path / "build", env=env)

    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "My Fashion Kernel/kernel-metadata.json").read_text())
    assert meta["id"] == "tester/my-fashion-kernel"
    assert meta["enable_internet"] is False
    assert not [s for s in meta["dataset_sources"] if s.startswith("your-kaggle-username")]
    assert bundled.returncode == 0, bundled.stderr
    assert (tmp_path / "build/my-fashion-kernel/kernel.py").is_file()
    assert meta.get("machine_shape") == (None if kind == "blank" else "NvidiaTeslaT4")  # GPU T4 x2 for GPU kinds
    if kind == "imaterialist-predict":  # the model the user publishes, attached under their name
        assert meta["dataset_sources"] == ["tester/imaterialist-model"]
        assert meta["competition_sources"] == ["imaterialist-fashion-2019-FGVC6"]
    if kind == "classification-predict":
        assert meta["dataset_sources"] == ["tester/your-images", "tester/classifier-model"]
    if kind.startswith("classification"):  # the script reads the input the metadata attaches, by the same name
        assert meta["dataset_sources"][0] == "tester/your-images"
        assert '"input": "your-images"' in (tmp_path / "My Fashion Kernel/kernel.py").read_text()


def test_the_user_name_comes_from_kaggle_json(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/kaggle.json").write_text(json.dumps({"username": "from-json", "key": "k"}))
    env = {"KAGGLE_USERNAME": "", "KAGGLE_CONFIG_DIR": str(tmp_path / "cfg")}

    assert _run("init", tmp_path / "kernel-one", env=env).returncode == 0
    assert json.loads((tmp_path / "kernel-one/kernel-metadata.json").read_text())["id"] == "from-json/kernel-one"


def test_the_blank_kernel_runs_locally(tmp_path):
    assert _run("init", tmp_path / "blank-kernel").returncode == 0
    done = _run("run-local", tmp_path / "blank-kernel", "--root", tmp_path / "sandbox", "--time", "5min")

    assert done.returncode == 0, done.stderr
    status = json.loads((tmp_path / "sandbox/working/kaggle-kit-status.json").read_text())
    assert status["status"] == "done"


def test_without_a_user_name_init_says_so_and_push_refuses_the_placeholder(local_kaggle, tmp_path):
    env = {"KAGGLE_USERNAME": "", "KAGGLE_CONFIG_DIR": str(tmp_path / "empty")}
    done = _run("init", tmp_path / "new-kernel", env=env)
    pushed = _run("push", tmp_path / "new-kernel", "--out", tmp_path / "build")

    assert done.returncode == 0, done.stderr
    assert "no Kaggle user name found" in done.stdout
    assert pushed.returncode == 2
    assert "placeholder owner" in pushed.stderr
    assert len(pushed.stderr.strip().splitlines()) == 1
    assert local_kaggle.calls("SaveKernel") == []


@pytest.mark.parametrize(("name", "message"), [("kernel-one", "is not an empty folder"), ("ab", "at least 5")])
def test_init_refuses_a_used_folder_or_a_name_too_short_for_a_slug(name, message, tmp_path):
    (tmp_path / "kernel-one").mkdir()
    (tmp_path / "kernel-one/notes.txt").write_text("mine")

    done = _run("init", tmp_path / name)

    assert done.returncode == 2
    assert message in done.stderr
    assert (tmp_path / "kernel-one/notes.txt").read_text() == "mine"


def test_a_pip_installed_kit_starts_every_kind_of_kernel_from_its_own_copy_of_the_kernels(tmp_path):
    """Not from a clone: the wheel carries kernels/ as kaggle_kit.kernels, and init works from it anywhere."""
    repo = Path(__file__).parents[1]
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(repo),
                    "-w", str(wheel_dir)], check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    *map(str, wheel_dir.glob("*.whl"))], check=True, capture_output=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy first, the clone nowhere on the path
    env.pop("KAGGLE_USERNAME", None)
    where = subprocess.run(
        [sys.executable, "-c", "import kaggle_kit.templates as t; print(t.kernels_dir())"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout.strip()
    made = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", "init", "my-classifier", "--kind", "classification"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip

    assert where == str(site / "kaggle_kit" / "kernels")
    assert made.returncode == 0, made.stderr
    assert "classification_block" in (tmp_path / "my-classifier" / "kernel.py").read_text()
