import subprocess
import sys

import pytest


def test_importing_the_package_does_not_import_torch_or_fastai():
    code = (
        "import sys, kaggle_kit as kk; kk.KernelLimits(); kk.rle_encode; print(sorted(m for m in sys.modules if "
        "m.split('.')[0] in ('torch', 'fastai')))"
    )

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "[]"


def test_public_names_resolve():
    import kaggle_kit as kk

    for name in kk.__all__:
        assert getattr(kk, name) is not None


@pytest.mark.parametrize(
    "command", ["run-local", "demo", "synth", "bundle", "push", "status", "output", "chain", "merge"]
)
def test_every_command_has_help(command):
    proc = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", command, "--help"], capture_output=True, text=True)

    assert proc.returncode == 0
    assert "usage:" in proc.stdout


def test_no_command_prints_usage_and_fails():
    proc = subprocess.run([sys.executable, "-m", "kaggle_kit.cli"], capture_output=True, text=True)

    assert proc.returncode == 2
    assert "commands" in proc.stdout
