import os
import time

import pytest

from kaggle_kit.errors import KernelLayoutError, LimitsError
from kaggle_kit.kernel import Kernel


def _layout(root, *dirs):
    for d in dirs:
        (root / "input" / d).mkdir(parents=True)
    (root / "working").mkdir(parents=True, exist_ok=True)


def test_local_sandbox_comes_from_kaggle_kit_root(tmp_path):
    kernel = Kernel.current({"KAGGLE_KIT_ROOT": str(tmp_path), "KAGGLE_KIT_STARTED_AT": "100"})

    assert (kernel.input_dir, kernel.working_dir) == (tmp_path / "input", tmp_path / "working")
    assert not kernel.on_kaggle
    assert kernel.started_at == 100.0


def test_kaggle_is_detected_from_the_run_type_variable():
    kernel = Kernel.current({"KAGGLE_KERNEL_RUN_TYPE": "Batch"})

    assert kernel.on_kaggle
    assert kernel.working_dir.as_posix() == "/kaggle/working"


def test_inputs_are_found_in_the_old_layout(tmp_path):
    _layout(tmp_path, "imaterialist-fashion-2019-FGVC6")
    kernel = Kernel(tmp_path)

    assert kernel.find_input("imaterialist-fashion-2019-FGVC6") == tmp_path / "input/imaterialist-fashion-2019-FGVC6"


def test_inputs_are_found_in_the_current_layout(tmp_path):
    _layout(
        tmp_path,
        "competitions/imaterialist-fashion-2019-FGVC6",
        "datasets/alice/resnet34-weights",
        "notebooks/bob/previous-run",
    )
    kernel = Kernel(tmp_path)

    assert kernel.find_input("imaterialist-fashion-2019-FGVC6").parent.name == "competitions"
    assert kernel.find_input("resnet34-weights") == tmp_path / "input/datasets/alice/resnet34-weights"
    assert kernel.find_input("bob/previous-run") == tmp_path / "input/notebooks/bob/previous-run"
    assert sorted(s for s, _ in kernel.inputs()) == [
        "imaterialist-fashion-2019-FGVC6",
        "previous-run",
        "resnet34-weights",
    ]


def test_missing_input_error_lists_what_is_attached(tmp_path):
    _layout(tmp_path, "datasets/alice/weights")

    with pytest.raises(KernelLayoutError, match=r"input 'train-data' is not attached .*\(attached: weights\)"):
        Kernel(tmp_path).find_input("train-data")


def test_same_slug_from_two_owners_is_ambiguous(tmp_path):
    _layout(tmp_path, "datasets/alice/weights", "datasets/bob/weights")

    with pytest.raises(KernelLayoutError, match="ambiguous"):
        Kernel(tmp_path).find_input("weights")
    assert Kernel(tmp_path).find_input("bob/weights").parent.name == "bob"


def test_elapsed_and_remaining_count_from_the_kernel_start(tmp_path, fake_clock):
    kernel = Kernel.current(
        {
            "KAGGLE_KIT_ROOT": str(tmp_path),
            "KAGGLE_KIT_TIME_LIMIT": "9h",
            "KAGGLE_KIT_STARTED_AT": str(fake_clock.now - 600),
        },
        clock=fake_clock,
    )

    fake_clock.advance(3000)

    assert kernel.elapsed_s() == 3600
    assert kernel.remaining_s() == 8 * 3600


def test_start_time_defaults_to_this_process_start_locally(tmp_path):
    import psutil

    kernel = Kernel.current({"KAGGLE_KIT_ROOT": str(tmp_path)})

    assert kernel.started_at == psutil.Process().create_time()
    assert 0 <= kernel.elapsed_s() < time.time() - kernel.started_at + 1


def test_on_kaggle_the_start_is_the_oldest_ancestor():
    import psutil

    kernel = Kernel.current({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"})

    oldest = min(p.create_time() for p in [psutil.Process(), *psutil.Process().parents()])
    assert kernel.started_at == oldest


def test_bad_start_time_is_a_clear_error():
    with pytest.raises(LimitsError, match="KAGGLE_KIT_STARTED_AT='yesterday' is not a Unix time"):
        Kernel.current({"KAGGLE_KIT_STARTED_AT": "yesterday", "KAGGLE_KIT_ROOT": os.getcwd()})
