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


# DESIGN.md's order, lowest first (resume reads checkpoints: above them), with the modules added since; a module
# may import only its layer or lower ones
LAYERS = [
    {"errors", "atomic"}, {"limits"}, {"kernel"}, {"memory", "outputs"}, {"config", "status"},
    {"rle", "metrics", "data", "convert", "writers", "synthetic", "images", "identity"}, {"sinks"}, {"progress"},
    {"chunks"}, {"predict"}, {"train_state"}, {"checkpoint"}, {"resume"}, {"deadline", "guard", "weights"},
    {"imaterialist"}, {"emulate", "demo", "runplot"}, {"push", "scaffold"}, {"cli", "cli_push"},
]  # fmt: skip


def test_lower_modules_never_import_higher_ones():
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1] / "kaggle_kit"
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    problems, seen = [], set()
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts == ("__init__",):
            continue
        own = parts[0]
        seen.add(own)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])  # fmt: skip
            for name in names:
                if name.startswith("kaggle_kit.") and name.split(".")[1] != own:
                    other = name.split(".")[1]
                    if layer.get(other, -1) > layer[own]:
                        problems.append(f"{'/'.join(parts)} imports {name}")
    assert seen <= set(layer), seen - set(layer)  # every module has its place
    assert problems == []
