"""What a kernel asked for against what it was given (kaggle_kit.accelerator), on faked hardware."""

import subprocess
import sys

import pytest

from kaggle_kit.accelerator import AcceleratorError, asked_for, check_accelerator, granted_gpus
from kaggle_kit.status import KernelStatus, write_status

T4S = {"KAGGLE_KIT_ASKED": "gpu NvidiaTeslaT4", "KAGGLE_KIT_FAKE_ARCHS": "sm_75 sm_80 sm_86 sm_90"}


@pytest.mark.parametrize(("granted", "line", "stops"), [
    ("Tesla T4:7.5,Tesla T4:7.5", "asked GPU T4 x2, got 2 x Tesla T4 (sm_75)", False),
    ("Tesla T4:7.5", "asked GPU T4 x2, got 1 x Tesla T4 (sm_75)", False),  # half of it: said, not stopped
    ("", "asked GPU T4 x2, got no GPU", True),
    ("Tesla P100-PCIE-16GB:6.0", "asked GPU T4 x2, got 1 x Tesla P100-PCIE-16GB (sm_60), which this torch cannot run "
     "(it has kernels for sm_75 sm_80 sm_86 sm_90)", True),
])  # fmt: skip
def test_what_was_granted_is_said_in_one_line_and_a_gpu_torch_cannot_use_stops_the_kernel(granted, line, stops):
    env, said = {**T4S, "KAGGLE_KIT_FAKE_GPUS": granted}, []

    if stops:
        with pytest.raises(AcceleratorError) as error:
            check_accelerator(environ=env, say=said.append)
        assert str(error.value).startswith(f"accelerator: {line}: stopped before any work")
        assert "\n" not in str(error.value)
    check = check_accelerator(environ=env, say=said.append, stop=False)  # the setting that goes on regardless

    assert check.line == line
    assert said[-1] == f"kaggle-kit: accelerator: {line}"
    assert (check.problem is not None) is stops


def test_a_kernel_that_asked_for_no_gpu_or_is_no_bundle_is_never_stopped():
    for env in ({"KAGGLE_KIT_ASKED": "none", "KAGGLE_KIT_FAKE_GPUS": ""}, {"KAGGLE_KIT_FAKE_GPUS": ""}):
        check = check_accelerator(environ=env, say=lambda line: None)
        assert check.problem is None
    assert check.line == "got no GPU"


@pytest.mark.parametrize(("meta", "asked"), [
    ({"enable_gpu": True, "machine_shape": "NvidiaTeslaT4"}, "gpu NvidiaTeslaT4"), ({"enable_gpu": True}, "gpu"),
    ({"machine_shape": "TpuV5E8"}, "tpu TpuV5E8"), ({"enable_gpu": False}, "none"), ({}, "none"),
])  # fmt: skip
def test_what_the_metadata_asks_for(meta, asked):
    assert asked_for(meta) == asked


def test_a_faked_gpu_that_is_not_name_and_capability_is_a_one_line_error():
    with pytest.raises(Exception, match="compute capability 'seven' is not like 7.5"):
        granted_gpus({"KAGGLE_KIT_FAKE_GPUS": "Tesla T4:seven"})
    with pytest.raises(Exception, match="give each GPU as name:capability"):
        granted_gpus({"KAGGLE_KIT_FAKE_GPUS": "Tesla T4"})


def test_what_was_asked_is_read_whatever_its_case():
    with pytest.raises(AcceleratorError, match="asked GPU, got no GPU"):
        check_accelerator(environ={"KAGGLE_KIT_ASKED": "GPU", "KAGGLE_KIT_FAKE_GPUS": ""}, say=lambda line: None)


def test_every_status_written_after_the_check_carries_its_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_FAKE_GPUS", "Tesla T4:7.5")
    monkeypatch.setenv("KAGGLE_KIT_FAKE_ARCHS", "sm_75")
    monkeypatch.setenv("KAGGLE_KIT_ASKED", "gpu NvidiaTeslaT4")
    check_accelerator(say=lambda line: None)
    write_status(tmp_path, "needs-resume", stage=0, epoch=1, iteration=0)

    assert KernelStatus.load(tmp_path).accelerator == "asked GPU T4 x2, got 1 x Tesla T4 (sm_75)"


def test_importing_the_kit_and_checking_the_accelerator_initialise_no_cuda():
    probe = ("import sys, kaggle_kit as kk\n"
             "print('torch' in sys.modules)\n"
             "kk.check_accelerator(say=lambda line: None)\n"
             "import torch\n"
             "print(torch.cuda.is_initialized())\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "KAGGLE_KIT_FAKE_GPUS": "Tesla T4:7.5"})  # fmt: skip

    assert done.stdout.split() == ["False", "False"]  # torch is not even imported by `import kaggle_kit`


def test_a_shipped_kernel_pushed_for_t4s_and_given_none_stops_at_once_in_one_line(run_kernel, tmp_path):
    from kaggle_kit.push.bundle import build_bundle
    from kaggle_kit.templates import kernels_dir

    bundle = build_bundle(kernels_dir() / "imaterialist-predict", tmp_path / "build")  # its metadata: GPU T4 x2
    (tmp_path / "data").mkdir()

    run = run_kernel(bundle / "kernel.py", inputs={"imaterialist-fashion-2019-FGVC6": tmp_path / "data"},
                     env={"KAGGLE_KIT_FAKE_GPUS": ""}, bundle_only=True, time="5min")  # fmt: skip

    assert run.report.exit_code == 1, run.explain()
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("kernel: accelerator: asked GPU T4 x2, got no GPU: stopped before any work")
    )
    assert "kaggle-kit: accelerator: asked GPU T4 x2, got no GPU" in run.stdout
