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


def doc_pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def readme_commands() -> list[str]:
    """Every shell command in the ```bash blocks of the README and docs/, continuation lines joined, comments
    dropped."""
    blocks = [b for page in doc_pages() for b in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#") and line not in commands:  # a page may repeat another's command
                commands.append(line)
    return commands


def _kaggle_kit_args(command: str) -> list[str] | None:
    words = shlex.split(command)
    if words and words[0] in ("kaggle-kit", ".venv/bin/kaggle-kit"):
        return words[1:]
    return None


def _code_spans(text: str) -> list[str]:
    """The text of every code block and inline `code` span."""
    blocks = re.findall(r"```\w*\n(.*?)```", text, flags=re.S)
    rest = re.sub(r"```\w*\n.*?```", "", text, flags=re.S)
    return blocks + re.findall(r"`([^`\n]+)`", rest)


def _resolves(dotted: str) -> bool:
    """`kaggle_kit.a.b` names a module, or a module's attribute."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                value = getattr(value, name)
        except AttributeError:
            return False
        return True
    return False


def _subcommands() -> dict:
    import argparse

    from kaggle_kit.cli import _build_parser

    def options(parser) -> set[str]:
        return {flag for action in parser._actions for flag in action.option_strings}

    parser = _build_parser()
    found = {}
    for name, sub in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices.items():
        found[name] = options(sub)
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for inner_name, inner in nested[0].choices.items() if nested else ():
            found[f"{name} {inner_name}"] = options(inner)
    return found


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_every_name_and_command_the_docs_mention_exists(page):
    import kaggle_kit as kk

    commands = _subcommands()
    missing = []
    for span in _code_spans(page.read_text()):
        missing += [f"kk.{n}" for n in re.findall(r"\bkk\.([A-Za-z_]\w*)", span) if not hasattr(kk, n)]
        missing += [d for d in re.findall(r"\bkaggle_kit(?:\.[A-Za-z_]\w*)+", span) if not _resolves(d)]
        for call in re.split(r"(?<![\w-])(?=kaggle-kit )", span)[1:]:  # not a slug ending in -kaggle-kit
            words = call.split()
            if len(words) < 2 or not re.fullmatch(r"[a-z][a-z0-9-]*", words[1]):
                continue
            name = f"{words[1]} {words[2]}" if len(words) > 2 and f"{words[1]} {words[2]}" in commands else words[1]
            if name not in commands:
                missing.append(f"kaggle-kit {name}")
                continue
            flags = {w.split("=")[0] for w in words[2:] if re.fullmatch(r"--[a-z][\w-]*(=.*)?", w)}
            missing += [f"kaggle-kit {name} {f}" for f in sorted(flags - commands[name] - {"--help"})]
    assert missing == []


def test_the_readme_module_map_matches_the_package():
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## The package, by job") :].split("```")[1]
    named = set()
    for line in block.splitlines()[2:]:  # after "kaggle_kit/": names, then 3+ spaces, then what they are for
        pieces = re.split(r"\s{3,}", line.strip())
        if pieces[0].endswith("/"):  # a subpackage: its modules follow, or it counts as one
            folder = pieces[0].rstrip("/")
            words = pieces[1].split() if len(pieces) > 2 else []
            named |= {f"{folder}/{w}.py" for w in words} if words else {f"{folder}/"}
        else:
            named |= {f"{w}.py" for w in pieces[0].split()}
    package = ROOT / "kaggle_kit"
    shims = ("__init__.py", "__main__.py")
    modules = {str(p.relative_to(package)) for p in package.rglob("*.py") if p.name not in shims}
    modules = {m for m in modules if not m.startswith("imaterialist/")} | {"imaterialist/"}

    assert named == modules, (named - modules, modules - named)


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
def test_the_cheap_readme_commands_run_as_written(local_kaggle, tmp_path):
    (tmp_path / "kernels").symlink_to(ROOT / "kernels")
    (tmp_path / "no-model").mkdir()  # the dataset the README's inference kernel attaches (a trained model: e2e tests)
    local_kaggle.data["your-name/imaterialist-model"] = tmp_path / "no-model"
    make_images(tmp_path / "data" / "train", 6)
    env = {**os.environ, "KAGGLE_USERNAME": "your-name"}  # the user the docs write: their status commands work
    ran = []
    for command in readme_commands():
        args = _kaggle_kit_args(command)
        if command.startswith("echo ") and command.endswith(".json"):
            payload, target = re.fullmatch(r"echo '(.*)' > (\S+)", command).groups()
            (tmp_path / target).write_text(payload)
            continue
        if (
            args is None
            or args[0] in ("demo", "chain", "rehearse", "dataset")
            or (args[0] == "clean" and "--dry-run" not in args)
        ):
            continue  # the demos are CI's e2e tests, and rehearse's (test_rehearse runs docs/rehearse.md's as written);
            # chain waits on runs; dataset push needs a trained model (test_dataset); clean without --dry-run rewrites
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
    assert local_kaggle.calls("SaveKernel")[0]["slug"] == "your-name/my-fashion-kernel"
