import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import make_images

from kaggle_kit.push import api
from kaggle_kit.push.bundle import BOOTSTRAP_MARK, build_bundle, set_bundle_setting

SECRET = "s3cr3t-key-0123456789"


SAYS_WHERE = "import sys, kaggle_kit as kk\nprint('kernel ran with', kk.__file__, f'no_site={sys.flags.no_site}')\n"


def _kernel(folder: Path, script: str = SAYS_WHERE, **meta) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.py").write_text(script)
    (folder / "kaggle.json").write_text(json.dumps({"username": "tester", "key": SECRET}))  # must never travel
    metadata = {"id": "tester/my-fashion-kernel", "title": "My fashion kernel", "code_file": "kernel.py",
                "language": "python", "kernel_type": "script", "enable_gpu": True,
                "competition_sources": ["imaterialist-fashion-2019-FGVC6"], **meta}  # fmt: skip
    (folder / "kernel-metadata.json").write_text(json.dumps(metadata))
    return folder


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kaggle_kit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_push_sends_the_bundled_script_and_metadata_but_no_credential(local_kaggle, weird_path):
    kernel = _kernel(weird_path / "kernel")

    proc = _cli("push", str(kernel), "--out", str(weird_path / "build"))

    assert proc.returncode == 0, proc.stderr
    assert "version 1 https://www.kaggle.com/code/tester/my-fashion-kernel" in proc.stdout
    (body,) = local_kaggle.calls("SaveKernel")
    assert body["slug"] == "tester/my-fashion-kernel"
    assert body["text"].startswith(BOOTSTRAP_MARK)
    assert body["text"].endswith((kernel / "kernel.py").read_text())
    assert body["competitionDataSources"] == ["imaterialist-fashion-2019-FGVC6"]
    assert (body["enableInternet"], body["enableGpu"], body["isPrivate"]) == (False, True, True)
    assert SECRET not in json.dumps(body)
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("meta", "message"), [
    ({"id": "tester/My Kernel"}, "id 'tester/My Kernel' must be 'owner/kernel-slug'"),
    ({"id": "tester/my-fashion-kernel/3"}, "without a version"),
    ({"title": "Dog"}, "title 'Dog' must have at least 5 characters"),
    ({"title": "Another title"}, "becomes the slug 'another-title', not 'my-fashion-kernel'"),
    ({"code_file": "missing.py"}, "code_file 'missing.py' does not exist"),
    ({"language": "r"}, "language 'r' must be 'python'"),
    ({"kernel_type": "app"}, "kernel_type 'app' must be 'script' or 'notebook'"),
    ({"dataset_sources": ["just-a-slug"]}, "dataset_sources entry 'just-a-slug' must be 'owner/dataset-slug'"),
    ({"kernel_sources": ["a/b/c"]}, "kernel_sources entry 'a/b/c' must be 'owner/kernel-slug'"),
    ({"model_sources": ["google/gemma"]}, "model_sources entry 'google/gemma' must be"),
    ({"enable_internet": "no"}, "enable_internet 'no' must be true or false"),
    ({"machine_shape": "big gpu"}, "machine_shape 'big gpu' must be a name"),
])  # fmt: skip
def test_invalid_metadata_is_refused_before_any_request(meta, message, local_kaggle, tmp_path):
    kernel = _kernel(tmp_path / "kernel", **meta)

    proc = _cli("push", str(kernel), "--out", str(tmp_path / "build"))

    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert local_kaggle.requests == []


def test_missing_credentials_say_how_to_set_them(tmp_path, monkeypatch):
    for key in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "empty"))

    proc = _cli("status", "tester/my-fashion-kernel")

    assert proc.returncode == 2
    assert proc.stderr.startswith("kaggle-kit: no Kaggle credentials: set KAGGLE_API_TOKEN")


def test_a_kaggle_json_readable_by_others_gets_a_warning(tmp_path, caplog):
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "kaggle.json").write_text("{}")
    (config / "kaggle.json").chmod(0o644)

    api.check_credentials({"KAGGLE_CONFIG_DIR": str(config)})

    assert "chmod 600" in caplog.text


def _site_packages_only_env() -> dict:
    # PYTHONPATH entries do not run .pth files, so the editable install of kaggle_kit is invisible with -S
    return {"PYTHONPATH": sysconfig.get_paths()["purelib"]}


def test_the_bundle_runs_where_kaggle_kit_is_not_installed_without_writing_to_working(run_kernel, tmp_path):
    bundle = build_bundle(_kernel(tmp_path / "kernel"), tmp_path / "build")
    check = subprocess.run(
        [sys.executable, "-S", "-c", "import kaggle_kit"],
        env=_site_packages_only_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )

    run = run_kernel(bundle / "kernel.py", python_args=["-S"], env=_site_packages_only_env())

    assert check.returncode != 0  # kaggle_kit really is not importable there
    assert run.report.ok, run.explain()
    assert "kernel ran with" in run.stdout
    assert "no_site=1" in run.stdout  # the option reached the child: it really ran without site-packages
    assert ".zip/kaggle_kit/__init__.py" in run.stdout
    assert run.report.output_files == 0


def test_a_tampered_bundle_refuses_to_run(run_kernel, tmp_path):
    bundle = build_bundle(_kernel(tmp_path / "kernel"), tmp_path / "build")
    script = bundle / "kernel.py"
    text = script.read_text()
    i = text.index('    "', text.index("_KK_PACKAGE")) + 10
    script.write_text(text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :])

    run = run_kernel(script)

    assert run.report.exit_code == 1
    assert "fails its checksum" in run.stderr


def test_push_with_shards_pushes_one_kernel_per_shard(local_kaggle, tmp_path):
    kernel = _kernel(tmp_path / "kernel")

    proc = _cli("push", str(kernel), "--shards", "3", "--out", str(tmp_path / "build"))

    assert proc.returncode == 0, proc.stderr
    slugs = [b["slug"] for b in local_kaggle.calls("SaveKernel")]
    assert slugs == [f"tester/my-fashion-kernel-shard-{i}-of-3" for i in range(3)]
    assert all(f"'KAGGLE_KIT_SHARD': '{i}/3'" in b["text"] for i, b in enumerate(local_kaggle.calls("SaveKernel")))


TRAINS = """
SETTINGS = {{"model": {model}, "epochs": 3}}
learn.fit_one_cycle(SETTINGS["epochs"], 1e-3, cbs=kk.Deadline())
"""


@pytest.mark.parametrize(("model", "refused"), [("None", True), ('"my-model"', False)])
def test_sharding_a_kernel_that_trains_is_refused_unless_its_settings_give_a_model(model, refused, local_kaggle,
                                                                                   tmp_path):  # fmt: skip
    kernel = _kernel(tmp_path / "kernel", script=TRAINS.format(model=model))

    proc = _cli("push", str(kernel), "--shards", "2", "--out", str(tmp_path / "build"))

    if refused:
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "trains a model: --shards would train one per shard" in proc.stderr
        assert local_kaggle.requests == []
    else:
        assert proc.returncode == 0, proc.stderr
        assert len(local_kaggle.calls("SaveKernel")) == 2


def test_sharded_kernels_merge_into_the_unsharded_submission(run_kernel, tmp_path):
    images = make_images(tmp_path / "images", 20)
    script = f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        import kaggle_kit as kk
        from conftest import make_learner
        images = sorted(Path({str(images[0].parent)!r}).glob("*.png"))
        learn = make_learner("tiny", images)
        rows = lambda items, preds: [(p.stem, int(x.argmax())) for p, x in zip(items, preds)]
        kk.stream_predict(learn, images, kk.CsvSink("submission.csv", rows, ["id", "label"]), progress=False)
    """
    whole = run_kernel(script, name="whole")
    shards = [run_kernel(script, name=f"shard{i}", env={"KAGGLE_KIT_SHARD": f"{i}/2"}) for i in range(2)]
    keys = tmp_path / "keys.csv"
    keys.write_text("id\n" + "\n".join(p.stem for p in images) + "\n")

    proc = _cli(
        "merge",
        str(tmp_path / "merged.csv"),
        *[str(Path(s.report.working_dir) / "submission.csv") for s in shards],
        "--key-column",
        "id",
        "--keys-csv",
        str(keys),
    )

    assert proc.returncode == 0, proc.stderr
    assert all(s.report.ok for s in [whole, *shards])
    assert (tmp_path / "merged.csv").read_bytes() == (Path(whole.report.working_dir) / "submission.csv").read_bytes()


def test_the_official_kaggle_cli_pushes_a_bundle_folder_as_it_is(local_kaggle, tmp_path):
    bundle = build_bundle(_kernel(tmp_path / "kernel"), tmp_path / "build")

    proc = subprocess.run(
        [str(Path(sys.executable).parent / "kaggle"), "kernels", "push", "-p", str(bundle)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    (body,) = local_kaggle.calls("SaveKernel")
    assert body["text"] == (bundle / "kernel.py").read_text()
    assert body["enableInternet"] is False


@pytest.mark.parametrize("code_file", ["ABSOLUTE", "../kaggle.json", "link.py"])
def test_a_code_file_outside_the_kernel_folder_is_refused_and_no_secret_travels(code_file, local_kaggle, tmp_path):
    home = tmp_path / "home" / ".kaggle"
    home.mkdir(parents=True)
    (home / "kaggle.json").write_text(json.dumps({"username": "tester", "key": SECRET}))
    kernel = _kernel(tmp_path / "home" / "kernel")
    (kernel / "link.py").symlink_to(home / "kaggle.json")
    name = str(home / "kaggle.json") if code_file == "ABSOLUTE" else code_file
    meta = json.loads((kernel / "kernel-metadata.json").read_text())
    (kernel / "kernel-metadata.json").write_text(json.dumps({**meta, "code_file": name}))

    pushed = _cli("push", str(kernel), "--out", str(tmp_path / "build"))
    bundled = _cli("bundle", str(kernel), "--out", str(tmp_path / "build"))

    for proc in (pushed, bundled):
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert "must be" in pushed.stderr
    assert local_kaggle.requests == []
    assert not any(SECRET in p.read_text() for p in (tmp_path / "build").rglob("*") if p.is_file())


@pytest.mark.parametrize(("meta", "message"), [
    ({"id": "../x"}, "must be 'owner/kernel-slug'"),
    ({"dataset_sources": ["../x"]}, "has characters Kaggle does not allow"),
    ({"kernel_sources": ["./kernel"]}, "has characters Kaggle does not allow"),
])  # fmt: skip
def test_paths_are_not_slugs(meta, message, tmp_path):
    kernel = _kernel(tmp_path / "kernel", **meta)

    proc = _cli("bundle", str(kernel), "--out", str(tmp_path / "build"))

    assert proc.returncode == 2
    assert message in proc.stderr


def test_a_notebook_kernel_is_bundled_as_a_valid_notebook(tmp_path):
    kernel = _kernel(tmp_path / "kernel", kernel_type="notebook")

    out = build_bundle(kernel, tmp_path / "build")

    notebook = json.loads((out / "kernel.ipynb").read_text())
    assert notebook["nbformat"] == 4
    (cell,) = notebook["cells"]
    assert "".join(cell["source"]).startswith(BOOTSTRAP_MARK)
    assert json.loads((out / "kernel-metadata.json").read_text())["code_file"] == "kernel.ipynb"


@pytest.mark.parametrize("kind", ["script", "notebook"])
def test_a_setting_set_in_a_built_bundle_reaches_the_kernels_environment(kind, tmp_path):
    kernel = _kernel(tmp_path / "kernel", kernel_type=kind)
    out = build_bundle(kernel, tmp_path / "build", settings={"KAGGLE_KIT_SHARD": "0/2"})
    set_bundle_setting(out, "KAGGLE_KIT_RUN_ID", "run-one")
    set_bundle_setting(out, "KAGGLE_KIT_RUN_ID", "run-two")  # each run of a chain replaces the last one's

    code_file = out / json.loads((out / "kernel-metadata.json").read_text())["code_file"]
    code = code_file.read_text()
    if kind == "notebook":
        code = "".join(json.loads(code)["cells"][0]["source"])
    bootstrap = code.split("_kk_bootstrap()\n")[0] + "_kk_bootstrap()\n"
    shown = bootstrap + "print(_kk_os.environ['KAGGLE_KIT_SHARD'], _kk_os.environ['KAGGLE_KIT_RUN_ID'])\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_KIT_")}
    (tmp_path / "bootstrap.py").write_text(shown)
    proc = subprocess.run([sys.executable, str(tmp_path / "bootstrap.py")], capture_output=True, text=True, env=env,
                          check=True)  # fmt: skip
    assert proc.stdout.split() == ["0/2", "run-two"]


def test_the_bootstrap_replaces_a_planted_zip_instead_of_importing_it(run_kernel, tmp_path):
    out = build_bundle(_kernel(tmp_path / "kernel"), tmp_path / "build")
    script = (out / "kernel.py").read_text()
    sha = script.split('_KK_SHA256 = "')[1][:16]
    planted_dir = tmp_path / "tmp"
    planted_dir.mkdir()
    import zipfile

    with zipfile.ZipFile(planted_dir / f"kaggle-kit-{sha}.zip", "w") as zf:
        zf.writestr("kaggle_kit/__init__.py", "raise SystemExit('planted code ran')\n")

    run = run_kernel(
        out / "kernel.py", env={"TMPDIR": str(planted_dir), **_site_packages_only_env()}, python_args=["-S"]
    )

    assert run.report.ok, run.explain()
    assert "planted code ran" not in run.stdout + run.stderr
    assert "kernel ran with" in run.stdout


@pytest.mark.parametrize(
    "record",
    [
        '{"runs": [1]}',
        '{"runs": [{"run": "../../escaped", "state": "complete", "version": 1}]}',
        '{"format": 2, "runs": []}',
        '{"format": true, "runs": []}',
    ],
    ids=["not a run", "a run number holding a path", "a newer format", "a format that is not a number"],
)
def test_a_malformed_chain_record_is_a_one_line_error(record, local_kaggle, tmp_path):
    kernel = _kernel(tmp_path / "kernel")
    bundle = build_bundle(kernel, tmp_path / "build")
    (bundle / "chain.json").write_text(record)

    proc = _cli("chain", str(kernel), "--out", str(tmp_path / "build"))

    assert proc.returncode == 1
    assert "cannot be read as a chain record" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*escaped*"))


@pytest.mark.parametrize("damage", ['{"id":', '{"id": 5}', "[]"], ids=["cut", "id not a string", "a list"])
def test_chain_on_a_kernel_with_damaged_metadata_is_one_line(damage, local_kaggle, tmp_path):
    kernel = _kernel(tmp_path / "kernel")
    bundle = build_bundle(kernel, tmp_path / "build")
    (bundle / "chain.json").write_text('{"runs": []}')  # a chain in progress: the bundle is rebuilt from the kernel
    (kernel / "kernel-metadata.json").write_text(damage)

    proc = _cli("chain", str(kernel), "--out", str(tmp_path / "build"))

    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(("shape", "warning"), [
    ("NvidiaTeslaP100", "machine_shape NvidiaTeslaP100 is retired: Kaggle runs it on NvidiaTeslaT4 instead"),
    ("NvidiaTeslaV100", "machine_shape 'NvidiaTeslaV100' is not one kaggle-kit knows (NvidiaTeslaT4, TpuV5E8)"),
    ("NvidiaTeslaT4", None),
])  # fmt: skip
def test_the_accelerator_asked_for_is_checked_and_pushed_as_asked(shape, warning, local_kaggle, tmp_path):
    kernel = _kernel(tmp_path / "kernel", machine_shape=shape)

    proc = _cli("push", str(kernel), "--out", str(tmp_path / "build"))

    assert proc.returncode == 0, proc.stderr
    assert local_kaggle.calls("SaveKernel")[0]["machineShape"] == shape
    if warning:
        assert warning in proc.stderr
    else:
        assert "machine_shape" not in proc.stderr


def test_a_script_holding_the_users_key_is_refused_before_any_request(local_kaggle, tmp_path):
    kernel = _kernel(tmp_path / "kernel", script=f"KEY = {SECRET!r}  # pasted to call the API from the kernel\n")

    proc = _cli("push", str(kernel), "--out", str(tmp_path / "build"))

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "kernel.py holds your Kaggle key or token: a credential never travels" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert local_kaggle.requests == []
    assert not list((tmp_path / "build").rglob("*.py"))


def test_a_log_kept_as_kaggles_json_entries_reads_as_its_text():
    raw = json.dumps([{"stream_name": "stdout", "time": 1.5, "data": "epoch 1\n"},
                      {"stream_name": "stderr", "time": 2.0, "data": "ValueError: boom\n"}])  # fmt: skip
    assert api.log_text(raw) == "epoch 1\nValueError: boom\n"
    assert api.log_text("[not json, a line of text\n") == "[not json, a line of text\n"
