import json

import pytest

from kaggle_kit.modelfolder import MANIFEST_NAME, ModelFolder, ModelFolderError, carry_model, find_model_folder


def _folder(tmp_path):
    return ModelFolder.write(
        tmp_path / "model",
        "demo",
        {"weights.pth": b"w" * 100, "rules.json": b"{}"},
        {"size": 64, "names": {1: "shirt"}, "sizes": (48, 64)},
    )  # fmt: skip (as JSON reads back)


def test_a_written_folder_loads_with_its_settings_and_digests(tmp_path):
    written = _folder(tmp_path)

    loaded = ModelFolder.load(tmp_path / "model", "demo")

    assert loaded.settings == {"size": 64, "names": {"1": "shirt"}, "sizes": [48, 64]}
    assert loaded.files == written.files
    assert loaded.file("weights.pth").read_bytes() == b"w" * 100
    assert find_model_folder([tmp_path / "elsewhere", tmp_path], "model") == tmp_path / "model"


@pytest.mark.parametrize(("damage", "message"), [
    (lambda m: (m / "weights.pth").unlink(), "weights.pth is missing from the model folder"),
    (lambda m: (m / "weights.pth").write_bytes(b"w" * 99 + b"x"), "weights.pth differs from the one the model was"),
    (lambda m: (m / MANIFEST_NAME).unlink(), "model-manifest.json is missing: "),
    (lambda m: (m / MANIFEST_NAME).write_text("{"), "cannot be read as a model manifest"),
    (lambda m: _edit(m, format=3), "format 3 is newer than this kaggle_kit reads (2)"),
    (lambda m: _edit(m, format="1"), "format '1' is not a model format"),
    (lambda m: _edit(m, format=True), "format True is not a model format"),
    (lambda m: _edit(m, format=0), "format 0 is not a model format"),
    (lambda m: _edit(m, settings={"size": 32}, resign=False), "model-manifest.json was edited after it was written"),
    (lambda m: _edit(m, settings=[1, 2]), "settings must be an object"),
    (lambda m: _edit(m, kind="classification"), "a 'classification' model, not 'demo'"),
    (lambda m: _edit(m, files={"../escape": "0"}), "names '../escape', not a file in the folder"),
])  # fmt: skip
def test_a_folder_whose_parts_do_not_belong_together_is_refused_naming_the_file(damage, message, tmp_path):
    _folder(tmp_path)
    damage(tmp_path / "model")

    with pytest.raises(ModelFolderError) as error:
        ModelFolder.load(tmp_path / "model", "demo")

    assert message in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def test_a_cut_manifest_is_one_line_when_a_kernel_carries_the_model_on_and_nothing_is_copied(tmp_path):
    _folder(tmp_path)
    manifest = tmp_path / "model" / MANIFEST_NAME
    manifest.write_bytes(manifest.read_bytes()[:40])  # a copy that stopped part-way

    with pytest.raises(ModelFolderError) as error:
        carry_model(tmp_path / "model", tmp_path / "working/model")

    assert "cannot be read as a model manifest" in str(error.value)
    assert len(str(error.value).splitlines()) == 1
    assert not (tmp_path / "working").exists()


def _edit(folder, resign=True, **changes):
    """Edit the manifest by hand; `resign`: also recompute its digest, as a deliberate forger would, so the checks
    behind the digest are reached."""
    from kaggle_kit.modelfolder import _manifest_digest

    manifest = {**json.loads((folder / MANIFEST_NAME).read_text()), **changes}
    if resign:
        manifest["digest"] = _manifest_digest(manifest)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_a_rewrite_removes_the_manifest_first_so_a_killed_write_is_never_a_model(tmp_path, monkeypatch):
    _folder(tmp_path)
    import kaggle_kit.modelfolder as modelfolder

    def killed(path, data):
        raise KeyboardInterrupt  # the kill lands while the first file is written

    monkeypatch.setattr(modelfolder, "atomic_write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        _folder(tmp_path)

    assert not (tmp_path / "model" / MANIFEST_NAME).exists()
    assert find_model_folder([tmp_path], "model") is None


def test_an_attached_model_is_found_and_carried_into_this_kernels_output(tmp_path):
    from kaggle_kit.kernel import Kernel
    from kaggle_kit.modelfolder import trained_model

    previous = tmp_path / "previous-output"
    ModelFolder.write(previous / "model", "demo", {"weights.pth": b"w" * 100}, {"size": 64})
    (previous / "confusion_matrix.png").write_bytes(b"png")  # the training run's pictures and report
    (previous / "classification-report.json").write_text("{}")
    (previous / "submission.csv").write_text("id,label\n")  # not a report: never carried
    root = tmp_path / "kernel"
    (root / "working").mkdir(parents=True)
    (root / "input/notebooks/tester").mkdir(parents=True)
    (root / "input/notebooks/tester/run-1").symlink_to(previous)
    kernel = Kernel(root)

    found, whose = trained_model(kernel, "model")
    retrained = trained_model(kernel, "model", retrain=True)

    assert (found, whose) == (root / "working/model", "attached")
    assert ModelFolder.load(found, "demo").files == ModelFolder.load(previous / "model", "demo").files
    assert trained_model(kernel, "model") == (root / "working/model", "own")  # the next call finds its own copy
    assert retrained == (None, "")
    assert (root / "working/confusion_matrix.png").read_bytes() == b"png"
    assert (root / "working/classification-report.json").exists()
    assert not (root / "working/submission.csv").exists()


def test_a_found_model_whose_prediction_settings_differ_from_the_kernels_is_refused_naming_them(tmp_path):
    from kaggle_kit.kernel import Kernel
    from kaggle_kit.modelfolder import trained_model

    previous = tmp_path / "previous-output"
    ModelFolder.write(previous / "model", "demo", {"weights.pth": b"w" * 100},
                      {"arch": "resnet18", "size": 32, "top_k": 1, "tta": ["hflip"]})  # fmt: skip
    root = tmp_path / "kernel"
    (root / "working").mkdir(parents=True)
    (root / "input/notebooks/tester").mkdir(parents=True)
    (root / "input/notebooks/tester/run-1").symlink_to(previous)
    kernel = Kernel(root)
    same = {"arch": "resnet18", "size": 32, "top_k": 1, "tta": ("hflip",)}  # a tuple is the list it was saved as

    with pytest.raises(ModelFolderError) as error:
        trained_model(kernel, "model", expected={**same, "arch": "resnet34", "size": 48})
    refused_nothing_carried = not (root / "working/model").exists()
    given = trained_model(kernel, "model", model=str(previous / "model"), expected={**same, "size": 48})
    found = trained_model(kernel, "model", expected=same)

    message = str(error.value)
    assert "the attached model" in message
    assert "arch 'resnet18' (now 'resnet34'), size 32 (now 48);" in message
    assert '"retrain": true' in message
    assert '"model":' in message
    assert len(message.splitlines()) == 1
    assert refused_nothing_carried
    assert given == (previous / "model", "given")  # named on purpose: predicted from as it is
    assert found == (root / "working/model", "attached")
