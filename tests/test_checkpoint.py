import json

import pytest
import torch

from kaggle_kit.checkpoint import CheckpointError, CheckpointSaver, find_latest_checkpoint
from kaggle_kit.kernel import Kernel


def _state(stage, epoch, iteration, step):
    return {"stage": stage, "epoch": epoch, "iteration": iteration, "step": step, "w": torch.full((3,), float(step))}


def test_save_then_load_latest_round_trips_the_state(tmp_path):
    saver = CheckpointSaver(tmp_path)
    saver.save(_state(0, 1, 5, 1))

    state, path = saver.load_latest()

    assert path.name == "ckpt-s00-e0001-i0000005.pth"
    assert state["step"] == 1
    assert torch.equal(state["w"], torch.ones(3))


def test_rotation_keeps_the_newest_two_files_and_the_manifest(tmp_path):
    saver = CheckpointSaver(tmp_path, keep=2)
    for step in range(5):
        saver.save(_state(0, step, 0, step))

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoints.json", "ckpt-s00-e0003-i0000000.pth", "ckpt-s00-e0004-i0000000.pth"]  # fmt: skip
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
    assert path.name == "ckpt-s00-e0000-i0000010.pth"
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
