"""The README's commands, as written: every `kaggle-kit` command names a real subcommand and option, and the cheap
ones run, in order, in a fresh folder (push, status and output against the fake Kaggle API). Training runs are
started and stopped after their settings were accepted; the demo and the test command itself are what CI runs."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_images

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


def readme_commands() -> list[str]:
    """Every shell command in the README's ```bash blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _kaggle_kit_args(command: str) -> list[str] | None:
    words = shlex.split(command)
    if words and words[0] in ("kaggle-kit", ".venv/bin/kaggle-kit"):
        return words[1:]
    return None


def _run(args, cwd, env, timeout=300):
    return subprocess.run([str(BIN / "kaggle-kit"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_the_readme_names_only_real_commands_and_options():
    from kaggle_kit.cli import _build_parser

    parser = _build_parser()
    checked, bad = [], []
    for command in readme_commands():
        args = _kaggle_kit_args(command)
        if args is None:
            continue
        try:
            parser.parse_args([a for a in args if a != "--"])
        except SystemExit:
            bad.append(command)
        checked.append(args[0])
    assert bad == []
    documented = {"demo", "synth", "run-local", "init", "bundle", "push", "status", "output", "chain", "clean"}
    assert documented <= set(checked)


@pytest.mark.e2e
def test_the_cheap_readme_commands_run_as_written(fake_kaggle, tmp_path):
    (tmp_path / "kernels").symlink_to(ROOT / "kernels")
    make_images(tmp_path / "data" / "train", 6)
    env = {**os.environ, "KAGGLE_USERNAME": "tester"}
    ran = []
    for command in readme_commands():
        args = _kaggle_kit_args(command)
        if command.startswith("echo ") and command.endswith(".json"):
            payload, target = re.fullmatch(r"echo '(.*)' > (\S+)", command).groups()
            (tmp_path / target).write_text(payload)
            continue
        if args is None or args[0] in ("demo", "chain") or (args[0] == "clean" and "--dry-run" not in args):
            continue  # the demos are CI's e2e tests; chain waits on runs; clean without --dry-run rewrites files
        if args[0] == "run-local":
            attached = [args[i + 1].split("=", 1)[-1] for i, a in enumerate(args) if a == "--input"]
            if not all((tmp_path / path).exists() for path in attached):
                continue  # attaches data that a skipped command (a demo) makes
            args = [*args, "--time", "4s", "--grace", "1s", "--no-plot"]  # started, settings accepted, stopped
        done = _run(args, tmp_path, env)
        if args[0] == "run-local":
            assert "out of time" in done.stderr, (command, done.stderr[-2000:])
        else:
            assert done.returncode == 0, (command, done.stderr)
        ran.append(args[0])
    assert {"synth", "init", "bundle", "push", "status", "output", "clean", "run-local"} <= set(ran), ran
    assert fake_kaggle.calls("SaveKernel")[0]["slug"] == "tester/my-fashion-kernel"
