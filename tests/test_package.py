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


def _commands() -> list[str]:
    import argparse

    from kaggle_kit.cli import _build_parser

    parser = _build_parser()
    return sorted(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command):
    proc = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", command, "--help"], capture_output=True, text=True)

    assert proc.returncode == 0
    assert "usage:" in proc.stdout


def test_no_command_prints_usage_and_fails():
    proc = subprocess.run([sys.executable, "-m", "kaggle_kit.cli"], capture_output=True, text=True)

    assert proc.returncode == 2
    assert "commands" in proc.stdout


# DESIGN.md's order, lowest first (resume reads checkpoints: above them); the platform modules at the top of the
# package, then the prediction and training jobs module by module, then the pipeline, the local Kaggle, push and
# the command line. A module may import only its layer or lower ones; imaterialist/, push/, rehearsal/ and cli/
# count as one each.
LAYERS = [
    {"errors", "atomic", "events", "locks", "templates"}, {"limits", "accelerator"}, {"kernel"},
    {"memory", "outputs", "launch"},
    {"config", "status", "modelfolder"},
    {"vision.rle", "vision.metrics", "vision.charts", "vision.clean", "vision.synthetic", "vision.images",
     "predict.identity", "predict.writers"},
    {"predict.sinks"}, {"predict.progress"}, {"predict.chunks", "predict.batches", "predict.ranks"}, {"predict.stream"},
    {"train.state"}, {"train.checkpoint"}, {"train.resume"},
    {"train.deadline", "train.guard", "train.weights", "train.lr", "train.precision", "train.distributed"},
    {"classification.data"}, {"classification.model", "classification.report"},
    {"imaterialist"}, {"local.report", "local.bundle_only"}, {"local.runplot", "local.supervise", "local.sandbox"},
    {"local.emulate"}, {"local.demo"},
    {"push"}, {"rehearsal"}, {"cli"},
]  # fmt: skip
WHOLE = ("imaterialist", "push", "rehearsal", "cli")  # packages that count as one layer


def _layer_key(dotted: str) -> str:
    """ "predict.stream" for kaggle_kit/predict/stream.py; "push" for anything in kaggle_kit/push/."""
    parts = dotted.split(".")
    return parts[0] if parts[0] in WHOLE else ".".join(parts[:2])


def test_lower_modules_never_import_higher_ones():
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1] / "kaggle_kit"
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    problems, seen = [], set()
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        own = _layer_key(".".join(parts))
        seen.add(own)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])  # fmt: skip
            for name in names:
                if name.startswith("kaggle_kit.") and _layer_key(name.removeprefix("kaggle_kit.")) != own:
                    other = _layer_key(name.removeprefix("kaggle_kit."))
                    if layer.get(other, len(LAYERS)) > layer[own]:
                        problems.append(f"{'/'.join(parts)} imports {name}")
    assert seen == set(layer), seen ^ set(layer)  # every module has its place, and every place a module
    assert problems == []
