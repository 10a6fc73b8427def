import json
import re

import pytest
import torch

from kaggle_kit.kernel import Kernel
from kaggle_kit.train.checkpoint import CheckpointError, CheckpointSaver, find_latest_checkpoint


def _state(stage, epoch, iteration, step):
    return {"stage": stage, "epoch": epoch, "iteration": iteration, "step": step, "w": torch.full((3,), float(step))}


def test_save_then_load_latest_round_trips_the_state(tmp_path):
    saver = CheckpointSaver(tmp_path)
    saver.save(_state(0, 1, 5, 1))

    state, path = saver.load_latest()

    assert re.fullmatch(r"ckpt-s00-e0001-i0000005-[0-9a-f]{16}\.pth", path.name)
    assert state["step"] == 1
    assert torch.equal(state["w"], torch.ones(3))


def test_rotation_keeps_the_newest_two_files_and_the_manifest(tmp_path):
    saver = CheckpointSaver(tmp_path, keep=2)
    for step in range(5):
        saver.save(_state(0, step, 0, step))

    assert [p.name[:23] for p in sorted(tmp_path.iterdir())] == [
        "checkpoints.json", "ckpt-s00-e0003-i0000000", "ckpt-s00-e0004-i0000000"]  # fmt: skip
    manifest = json.loads((tmp_path / "checkpoints.json").read_text())
    assert [e["epoch"] for e in manifest["checkpoints"]] == [3, 4]
    assert all(len(e["sha256"]) == 64 for e in manifest["checkpoints"])


def test_load_latest_falls_back_when_newest_is_truncated(tmp_path, caplog):
    saver = CheckpointSaver(tmp_path, keep=2)
    saver.save(_state(0, 0, 10, 1))
    newest = saver.save(_state(0, 0, 20, 2))
    newest.write_bytes(newest.read_bytes()[:100])  # what a broken copy leaves

    state, path = saver.load_latest()

    assert state["step"] == 1
    assert path.name.startswith("ckpt-s00-e0000-i0000010-")
    assert "checksum" in caplog.text


def test_no_valid_checkpoint_is_a_clear_error(tmp_path):
    saver = CheckpointSaver(tmp_path)
    only = saver.save(_state(0, 0, 1, 1))
    only.write_bytes(b"garbage")

    with pytest.raises(CheckpointError, match="no valid checkpoint in"):
        saver.load_latest()


def test_files_are_loaded_even_without_a_manifest(tmp_path):
    saver = CheckpointSaver(tmp_path)
    saver.save(_state(0, 0, 1, 1))
    saver.save(_state(0, 0, 2, 2))
    (tmp_path / "checkpoints.json").unlink()

    state, _ = saver.load_latest()

    assert state["step"] == 2


def test_loading_refuses_pickled_code(tmp_path):
    saver = CheckpointSaver(tmp_path)
    path = saver.save(_state(0, 0, 1, 1))
    torch.save({"stage": 0, "evil": print}, path)
    (tmp_path / "checkpoints.json").unlink()

    with pytest.raises(CheckpointError):
        saver.load_latest()


def test_the_most_advanced_checkpoint_wins_across_working_and_inputs(tmp_path):
    kernel = Kernel(tmp_path)
    working = CheckpointSaver(kernel.working_dir / "checkpoints")
    working.save(_state(0, 2, 0, 1))
    previous_kernel = CheckpointSaver(tmp_path / "input/notebooks/me/run-1/checkpoints")
    previous_kernel.save(_state(1, 0, 3, 2))

    state, path = find_latest_checkpoint(kernel, working)

    assert state["step"] == 2
    assert "run-1" in str(path)


def test_no_checkpoint_anywhere_gives_none(tmp_path):
    kernel = Kernel(tmp_path)
    (tmp_path / "input/datasets/me/data").mkdir(parents=True)

    assert find_latest_checkpoint(kernel, CheckpointSaver(kernel.working_dir / "checkpoints")) is None


def _saved_pair(tmp_path):
    saver = CheckpointSaver(tmp_path, keep=2)
    older = saver.save(_state(0, 0, 10, 1))
    newer = saver.save(_state(0, 0, 20, 2))
    return saver, older, newer


@pytest.mark.parametrize("damage", ["deleted", "truncated", "emptied", "not json", "a newer version"])
def test_a_lost_manifest_still_resumes_from_the_newest_valid_file(damage, tmp_path, caplog):
    saver, _older, newer = _saved_pair(tmp_path)
    manifest = tmp_path / "checkpoints.json"
    if damage == "deleted":
        manifest.unlink()
    elif damage == "truncated":
        manifest.write_bytes(manifest.read_bytes()[:30])
    elif damage == "emptied":
        manifest.write_text('{"checkpoints": []}')
    elif damage == "a newer version":
        manifest.write_text(manifest.read_text().replace('"version": 2', '"version": 3'))
    else:
        manifest.write_text("[]")

    state, path = saver.load_latest()

    assert (state["step"], path) == (2, newer)
    assert "found 2 checkpoint file(s) by name" in caplog.text


def test_without_a_manifest_a_corrupt_newest_file_falls_back_to_the_previous(tmp_path, caplog):
    saver, _older, newer = _saved_pair(tmp_path)
    (tmp_path / "checkpoints.json").unlink()
    data = bytearray(newer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: torch.load alone would not notice
    newer.write_bytes(bytes(data))

    state, _path = saver.load_latest()

    assert state["step"] == 1
    assert "fails its checksum" in caplog.text


def test_rotation_never_removes_a_checkpoint_newer_than_the_one_saved(tmp_path):
    saver, older, newer = _saved_pair(tmp_path)
    (tmp_path / "checkpoints.json").unlink()

    again = saver.save(_state(0, 0, 5, 3))  # a fit that went back to an earlier point

    assert {older, newer, again} <= set(tmp_path.iterdir())
    state, path = saver.load_latest()
    assert (state["step"], path) == (2, newer)


def test_every_file_corrupt_warns_and_starts_fresh_deleting_nothing(tmp_path, caplog):
    kernel = Kernel(tmp_path)
    saver = CheckpointSaver(kernel.working_dir / "checkpoints")
    files = [saver.save(_state(0, 0, i, i)) for i in (1, 2)]
    for f in files:
        f.write_bytes(b"garbage")

    assert find_latest_checkpoint(kernel, saver) is None
    assert "starting from scratch" in caplog.text
    assert all(f.name in caplog.text for f in files)
    assert all(f.exists() for f in files)


def test_a_killed_save_leaves_no_temp_file_after_the_next_save(tmp_path):
    saver = CheckpointSaver(tmp_path)
    saver.save(_state(0, 0, 1, 1))
    (tmp_path / ".ckpt-s00-e0000-i0000002.ab12cd34.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".checkpoints.json.zz99yy88.tmp").write_text("{")

    saver.save(_state(0, 0, 3, 3))

    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_pruning_keeps_the_final_weights_once_and_removes_only_checkpoints(tmp_path):
    import torch

    from kaggle_kit.train.checkpoint import prune_checkpoints

    folder = tmp_path / "checkpoints" / "stage1"
    folder.mkdir(parents=True)
    names = ["ckpt-s00-e0001-i0000010-0123456789abcdef.pth", "ckpt-s00-e0002-i0000020-fedcba9876543210.pth",
             "checkpoints.json", ".ckpt-s00-e0003-i0000030.pth.123.tmp"]  # fmt: skip
    for name in names:
        (folder / name).write_bytes(b"x" * 100)
    (tmp_path / "checkpoints" / "notes.txt").write_text("the user's")
    model = torch.nn.Linear(3, 2)

    freed = prune_checkpoints(tmp_path / "checkpoints", model, tmp_path / "model.pth")

    assert freed == 400
    assert not folder.exists()
    assert (tmp_path / "checkpoints" / "notes.txt").read_text() == "the user's"
    saved = torch.load(tmp_path / "model.pth", weights_only=True)
    assert torch.equal(saved["weight"], model.weight)
