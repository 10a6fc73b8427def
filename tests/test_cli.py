"""Every `kaggle-kit` subcommand run as users run it: the console script in a subprocess, progress bars on.

Bad input gets one line on stderr (``kaggle-kit: ...``), exit code 2 for a usage error and 1 for a failure, and no
traceback; nothing outside what the command makes is deleted.
"""

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images
from PIL import Image

KAGGLE_KIT = str(Path(sys.executable).parent / "kaggle-kit")


def _run(*args, cwd=None, env=None, timeout=600):
    env = {**os.environ, "KAGGLE_CONFIG_DIR": "/nonexistent-kaggle-config", **(env or {})}  # no real credentials
    return subprocess.run([KAGGLE_KIT, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=env)  # fmt: skip


def _one_line_error(done, code):
    """Assert the command failed with `code` and exactly one stderr line, no traceback; return that line."""
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kaggle-kit: "), done.stderr
    return lines[0]


@pytest.fixture
def messy_folder(tmp_path):
    """Good images, a dangling link, an empty file and a CMYK JPEG: what `clean` exists for."""
    folder = tmp_path / "images"
    make_images(folder, 6)
    (folder / "masks").mkdir(exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    Image.new("CMYK", (8, 8)).save(folder / "cmyk.jpg")
    return folder


# --- clean: the command that crashed on every folder with an image ---------------------------------------------------


def test_clean_runs_with_its_progress_bar_on_a_pipe(messy_folder):
    done = _run("clean", messy_folder)

    assert done.returncode == 0, done.stderr
    report = json.loads(messy_folder.with_name("images-clean-report.json").read_text())
    problems = {f["path"]: f["problem"] for f in report["files"]}
    assert problems == {"empty.jpg": "zero bytes", "gone.png": "unreadable", "cmyk.jpg": "cmyk"}
    assert (messy_folder.with_name("images-quarantine") / "empty.jpg").exists()


def test_clean_runs_with_its_progress_bar_in_a_terminal(messy_folder):
    leader, follower = pty.openpty()
    proc = subprocess.Popen([KAGGLE_KIT, "clean", "--dry-run", str(messy_folder)], stdin=follower, stdout=follower,
                            stderr=follower, close_fds=True)  # fmt: skip
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes when the command exits
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)

    assert proc.wait(timeout=300) == 0, output.decode(errors="replace")
    assert b"Traceback" not in output
    assert b"dry run: nothing changed" in output


def test_clean_of_the_current_folder_reports_beside_it(tmp_path):
    folder = tmp_path / "here"
    make_images(folder, 2)

    done = _run("clean", "--dry-run", ".", cwd=folder)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "here-clean-report.json").exists()


def test_clean_in_a_read_only_folder_reports_the_failure_and_keeps_one_copy(tmp_path):
    folder = tmp_path / "ro"
    make_images(folder, 2)
    (folder / "empty.jpg").write_bytes(b"")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): permissions cannot be tested")
        done = _run("clean", folder, "--report", tmp_path / "report.json")
    finally:
        folder.chmod(0o755)

    assert done.returncode == 0, done.stderr
    entry = json.loads((tmp_path / "report.json").read_text())["files"][0]
    assert entry["action"].startswith("failed: PermissionError")
    assert (folder / "empty.jpg").exists()
    assert not (tmp_path / "ro-quarantine" / "empty.jpg").exists()


# --- run-local never deletes what it did not make --------------------------------------------------------------------


def test_run_local_refuses_a_root_holding_the_users_data(tmp_path):
    script = tmp_path / "k.py"
    script.write_text("print('hi')\n")
    project = tmp_path / "project"
    (project / "input").mkdir(parents=True)
    (project / "input" / "train.csv").write_text("precious\n")
    (project / "working").mkdir()
    (project / "working" / "model.pth").write_text("precious\n")

    line = _one_line_error(_run("run-local", script, "--root", project), 2)

    assert "already holds files run-local did not make" in line
    assert (project / "input" / "train.csv").read_text() == "precious\n"
    assert (project / "working" / "model.pth").read_text() == "precious\n"


def test_run_local_reuses_its_own_root_and_two_default_runs_get_two_roots(tmp_path):
    script = tmp_path / "k.py"
    script.write_text("from pathlib import Path\nPath('out.txt').write_text('x')\n")

    first, second = _run("run-local", script, cwd=tmp_path), _run("run-local", script, cwd=tmp_path)
    again = _run("run-local", script, "--root", tmp_path / "mine", cwd=tmp_path)
    reused = _run("run-local", script, "--root", tmp_path / "mine", cwd=tmp_path)

    assert [d.returncode for d in (first, second, again, reused)] == [0, 0, 0, 0], reused.stderr
    assert len(list((tmp_path / "kaggle-kit-runs").iterdir())) == 2


def test_run_local_cpus_pins_the_kernel_and_the_kernel_sees_what_it_got(tmp_path):
    script = tmp_path / "k.py"
    script.write_text("import os\nimport kaggle_kit as kk\nkernel = kk.Kernel.current()\n"
                      "print('cpus', kernel.cpus, len(os.sched_getaffinity(0)), os.environ.get('OMP_NUM_THREADS'),"
                      " kernel.workers(None), kernel.workers(0))\n")  # fmt: skip
    here = len(os.sched_getaffinity(0))

    one = _run("run-local", script, "--cpus", 1, "--no-plot", cwd=tmp_path)
    more = _run("run-local", script, "--cpus", here + 1, "--no-plot", cwd=tmp_path)
    bad = _run("run-local", script, "--cpus", 0, cwd=tmp_path)

    assert one.returncode == 0, one.stderr
    assert "cpus 1 1 1 1 0" in one.stdout
    assert more.returncode == 0, more.stderr
    assert f"cpus {here} {here} None {here} 0" in more.stdout  # all it has, and it says so
    assert f"gives a kernel {here + 1} CPU cores; this machine has {here}, so it gets those" in more.stderr
    assert "--cpus 0: give a whole number of cores >= 1" in _one_line_error(bad, 2)


# --- one line for every bad input, in every subcommand --------------------------------------------------------------

BAD_INPUTS = [
    # (arguments, exit code, words the line must hold)
    (["run-local", "{tmp}/nope.py"], 2, "does not exist"),
    (["run-local", "{script}", "--memory", "1e999"], 2, "--memory='1e999' must be a positive size"),
    (["run-local", "{script}", "--time", "1e999"], 2, "--time='1e999' must be a positive duration"),
    (["run-local", "{script}", "--config", "{tmp}/nope.json"], 2, "no such file"),
    (["synth", "{file}"], 1, "Not a directory"),
    (["synth", "{tmp}/data", "--train", "-5"], 2, "--train -5"),
    (["synth", "{tmp}/data", "--min-size", "4"], 2, "need 16 <= min <= max"),
    (["demo", "--streaming", "--test-images", "-5"], 2, "--test-images -5: need at least 1"),
    (["demo", "--memory", "lots"], 2, "--memory='lots' is not a size"),
    (["clean", "{tmp}/nope"], 2, "is not a folder of images"),
    (["clean", "--", "--help"], 2, "is not a folder of images"),
    (["convert-imat2018", "{tmp}/nope.json", "{tmp}/out.csv"], 1, "nope.json"),
    (["bundle", "{tmp}"], 2, "kernel-metadata.json not found"),
    (["bundle", "{kernel}", "--out", "{file}/x"], 1, "Not a directory"),
    (["push", "{tmp}"], 2, "kernel-metadata.json not found"),
    (["push", "{kernel}", "--shards", "1"], 2, "--shards 1: use 2 or more"),
    (["push", "{kernel}", "--shards", "0"], 2, "--shards 0: use 2 or more, or leave it out"),
    (["chain", "{kernel}", "--max-runs", "0"], 2, "--max-runs 0: at least 1"),
    (["clean", "{tmp}", "--max-pixels", "-1"], 2, "--max-pixels -1: give a positive number of pixels"),
    (["convert-imat2018", "{tmp}/x.json", "{tmp}/o.csv", "--columns", "a,b"], 2, "--columns a,b: give three"),
    (["status", "../evil"], 2, "'../evil' is not a kernel id: give owner/kernel-slug"),
    (["output", "someone/some-kernel/3"], 2, "is not a kernel id"),
    (["status", "someone/some-kernel"], 2, "no Kaggle credentials"),
    (["output", "someone/some-kernel"], 2, "no Kaggle credentials"),
    (["chain", "{kernel}"], 2, "no Kaggle credentials"),
    (["merge", "{tmp}/all.csv", "{tmp}/missing.csv"], 1, "shard file(s) missing"),
    (["merge", "{tmp}/all.csv", "{shard0}", "--allow-partial"], 1, "needs keys: give --keys-csv"),
    (["merge", "{tmp}/all.csv", "{shard0}", "--keys-csv", "{keys}", "--key-column", "x"], 2, "'x' is not a column"),
]  # fmt: skip


@pytest.fixture
def places(tmp_path):
    script = tmp_path / "k.py"
    script.write_text("print('hi')\n")
    (tmp_path / "afile").write_text("x")
    kernel = tmp_path / "kernel"
    kernel.mkdir()
    (kernel / "k.py").write_text("print('hi')\n")
    (kernel / "kernel-metadata.json").write_text(json.dumps({
        "id": "someone/some-kernel", "title": "Some Kernel", "code_file": "k.py", "language": "python",
        "kernel_type": "script"}))  # fmt: skip
    (tmp_path / "shard0.csv").write_text("id,label\na,1\n")
    (tmp_path / "keys.csv").write_text("id\na\n")
    return {"tmp": tmp_path, "script": script, "file": tmp_path / "afile", "kernel": kernel,
            "shard0": tmp_path / "shard0.csv", "keys": tmp_path / "keys.csv"}  # fmt: skip


@pytest.mark.parametrize(("args", "code", "words"), BAD_INPUTS, ids=[" ".join(a[:2]) + f" {i}" for i, (a, _c, _w)
                                                                       in enumerate(BAD_INPUTS)])  # fmt: skip
def test_bad_input_is_one_line_with_the_right_exit_code(args, code, words, places, tmp_path):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    line = _one_line_error(_run(*[a.format(**places) for a in args], cwd=tmp_path), code)

    assert words in line
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert set(before) <= set(after)  # nothing the user had was deleted


def test_an_unknown_option_shows_the_commands_own_usage(tmp_path):
    done = _run("bundle", tmp_path, "--outt", "x")

    assert done.returncode == 2
    assert "usage: kaggle-kit bundle" in done.stderr
    assert "unrecognized arguments: --outt" in done.stderr


def test_dataset_push_help_is_its_own(tmp_path):
    done = _run("dataset", "push", "--help")

    assert done.returncode == 0
    assert "usage: kaggle-kit dataset push" in done.stdout
    assert "--any" in done.stdout


def test_debug_shows_the_traceback(tmp_path):
    done = _run("--debug", "clean", tmp_path / "nope")

    assert done.returncode != 0
    assert "Traceback" in done.stderr


# --- happy paths of the cheap commands -------------------------------------------------------------------------------


def test_synth_then_bundle_then_merge_work_as_written(tmp_path):
    assert _run("synth", tmp_path / "data", "--train", "2", "--test", "2").returncode == 0
    kernel_dir = Path(__file__).parents[1] / "kernels/imaterialist-fashion-2019"
    bundled = _run("bundle", kernel_dir, "--out", tmp_path / "build")
    for i, rows in enumerate(["id,v\na,1\nc,3\n", "id,v\nb,2\n"]):
        (tmp_path / f"s{i}.csv").write_text(rows)
    (tmp_path / "keys.csv").write_text("id\na\nb\nc\n")
    merged = _run(
        "merge",
        tmp_path / "all.csv",
        tmp_path / "s0.csv",
        tmp_path / "s1.csv",
        "--keys-csv",
        tmp_path / "keys.csv",
        "--key-column",
        "id",
        "--allow-partial",
    )  # fmt: skip (bare CSVs: no manifests)

    assert bundled.returncode == 0, bundled.stderr
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "all.csv").read_text() == "id,v\na,1\nb,2\nc,3\n"
    assert sorted(p.name for p in (tmp_path / "data").iterdir())[:2] == ["label_descriptions.json",
                                                                          "sample_submission.csv"]  # fmt: skip


def test_merge_refuses_shards_out_of_order_and_leaves_no_partial_file(tmp_path):
    for i, rows in enumerate(["id,v\na,1\nc,3\n", "id,v\nb,2\n"]):
        (tmp_path / f"s{i}.csv").write_text(rows)
    (tmp_path / "keys.csv").write_text("id\na\nb\nc\n")

    line = _one_line_error(_run("merge", tmp_path / "all.csv", tmp_path / "s1.csv", tmp_path / "s0.csv",
                                "--keys-csv", tmp_path / "keys.csv", "--key-column", "id", "--allow-partial"),
                           1)  # fmt: skip

    assert "shard rows were left" in line
    assert not (tmp_path / "all.csv").exists()


def _shard(path, rows: str, shard: int, n: int, done: int, total: int, **fingerprint) -> None:
    """A shard's CSV and the progress manifest its run would have left: `done` of `total` items committed."""
    import hashlib

    from kaggle_kit.predict.progress import Commit, ProgressManifest, RunFingerprint, manifest_path_for

    path.write_text(rows)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    commit = Commit(done, 0, {"bytes": len(data), "sha256": digest}, len(data), digest)
    run = RunFingerprint(**{"items": "x", "n_items": 3, **fingerprint, "shard": (shard, n)})
    ProgressManifest(run, total, [commit] if done else []).commit(manifest_path_for(path))


def test_merge_with_a_shard_missing_is_refused_unless_allowed(tmp_path):
    _shard(tmp_path / "s0.csv", "id,v\na,1\nc,3\n", 0, 2, 2, 2)
    (tmp_path / "keys.csv").write_text("id\na\nb\nc\n")
    args = ["merge", tmp_path / "all.csv", tmp_path / "s0.csv", "--keys-csv", tmp_path / "keys.csv", "--key-column",
            "id"]  # fmt: skip

    line = _one_line_error(_run(*args), 2)
    allowed = _run(*args, "--allow-partial")

    assert "is shard 0 of 2, but 1 shard(s) were given" in line
    assert allowed.returncode == 0, allowed.stderr  # asked for: what the one shard holds, in key order
    assert (tmp_path / "all.csv").read_text() == "id,v\na,1\nc,3\n"


@pytest.mark.parametrize(("damage", "words"), [
    (lambda p: p.write_bytes(b"{\xff"), "cannot be verified"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "fingerprint": None})), "cannot be verified"),
    (lambda p: p.unlink(), "s1.csv.progress.json is missing"),
    (lambda p: _shard(p.parent / "s1.csv", "id,v\nb,2\n", 1, 2, 1, 2), "s1.csv is unfinished (1 of 2 items verified)"),
    (lambda p: (p.parent / "s1.csv").write_text("id,v\nb,9\n"), "s1.csv is unfinished (0 of 1 items verified)"),
    (lambda p: _shard(p.parent / "s1.csv", "id,v\nb,2\n", 1, 2, 1, 1, items="y", n_items=6),
     "s1.csv is a shard of another run than"),
    (lambda p: _shard(p.parent / "s1.csv", "id,v\nb,2\n", 1, 2, 1, 1, model="another"), "model weights"),
])  # fmt: skip
def test_merge_refuses_a_shard_whose_progress_cannot_be_verified_unless_allowed(damage, words, tmp_path):
    _shard(tmp_path / "s0.csv", "id,v\na,1\nc,3\n", 0, 2, 2, 2)
    _shard(tmp_path / "s1.csv", "id,v\nb,2\n", 1, 2, 1, 1)
    (tmp_path / "keys.csv").write_text("id\na\nb\nc\n")
    damage(tmp_path / "s1.csv.progress.json")
    args = ["merge", tmp_path / "all.csv", tmp_path / "s0.csv", tmp_path / "s1.csv", "--keys-csv",
            tmp_path / "keys.csv", "--key-column", "id"]  # fmt: skip

    line = _one_line_error(_run(*args), 2)
    nothing_written = not (tmp_path / "all.csv").exists()
    allowed = _run(*args, "--allow-partial")

    assert words in line
    assert nothing_written
    assert allowed.returncode == 0, allowed.stderr


def test_a_kernel_with_a_typo_in_its_settings_fails_in_one_line_before_its_imports(tmp_path):
    config = tmp_path / "typo.json"
    config.write_text(json.dumps({"bs": 8.7}))
    kernel = Path(__file__).parents[1] / "kernels/imaterialist-fashion-2019"

    done = _run("run-local", kernel, "--config", config, "--root", tmp_path / "run", cwd=tmp_path)

    assert done.returncode == 1, done.stderr
    assert "kernel: setting 'bs'=8.7" in done.stderr
    assert "Traceback" not in done.stderr
    assert np.isfinite(json.loads((tmp_path / "run/run-report.json").read_text())["elapsed_s"])


def test_convert_imat2018_says_which_images_have_no_url(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps({"images": [{"imageId": "1", "url": "u"}, {"imageId": "2"}]}))

    done = _run("convert-imat2018", tmp_path / "train.json", tmp_path / "train.csv")

    assert done.returncode == 0, done.stderr
    assert "1 image(s) have no URL (written with an empty one): 2" in done.stderr


def test_convert_imat2018_writes_the_csv(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps({"images": [{"imageId": "1", "url": "u"}],
                                                     "annotations": [{"imageId": "1", "labelId": ["3"]}]}))  # fmt: skip

    done = _run("convert-imat2018", tmp_path / "train.json", tmp_path / "train.csv")

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "train.csv").read_text().splitlines() == ["image,url,labels", "1.jpg,u,3"]


@pytest.mark.parametrize(("profile", "low", "high"), [("easy", 96, 160), ("realistic", 100, 300)])
def test_synth_profiles_write_photos_of_their_sizes(tmp_path, profile, low, high):
    extra = ["--max-size", "300"] if profile == "realistic" else []
    done = _run("synth", tmp_path / "d", "--train", "6", "--test", "1", "--profile", profile, *extra)

    assert done.returncode == 0, done.stderr
    assert f"({profile})" in done.stdout
    sides = [max(Image.open(p).size) for p in (tmp_path / "d/train").glob("*.jpg")]
    assert len(sides) == 6
    assert all(low <= side <= high for side in sides), sides


def test_version_and_flags_after_the_command_work_as_users_type_them(tmp_path):
    from kaggle_kit import __version__

    version = _run("--version")
    debug_after = _run("synth", tmp_path / "d", "--min-size", "4", "--debug")
    quiet = _run("synth", tmp_path / "d", "--min-size", "4")

    assert version.returncode == 0
    assert version.stdout.strip() == f"kaggle-kit {__version__}"
    assert "Traceback" in debug_after.stderr  # --debug after the command is honoured
    assert "Traceback" not in quiet.stderr
    assert _run("-v", "synth", tmp_path / "e", "--train", "1", "--test", "1", "--max-size", "120").returncode == 0
    assert _run("synth", tmp_path / "f", "--train", "1", "--test", "1", "--max-size", "120", "-v").returncode == 0


def test_every_argument_of_every_command_has_help():
    import argparse

    from kaggle_kit.cli import _build_parser

    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    nested = {f"{name} {inner}": sub for name, command in commands.items() for action in command._actions
              if isinstance(action, argparse._SubParsersAction) for inner, sub in action.choices.items()}  # fmt: skip
    missing = [f"{name} {action.dest}" for name, command in {**commands, **nested}.items() for action in
               command._actions if not action.help and not isinstance(action, argparse._HelpAction)]  # fmt: skip
    assert "dataset push" in nested
    assert len(commands) >= 11
    assert missing == []


@pytest.mark.parametrize(
    ("second", "keys", "words", "code"),
    [
        ("label,id\n2,b\n4,d\n", "id\na\nb\nc\nd\n", "every shard must have the same header", 1),
        ("id,label,extra\nb,2,x\nd,4,y\n", "id\na\nb\nc\nd\n", "every shard must have the same header", 1),
        ("", "id\na\nb\nc\nd\n", "is not a CSV with a header", 1),
        ("id,label\nb,2\nd,4\n", "", "--keys-csv", 2),
    ],
    ids=["columns swapped", "extra column", "empty shard", "empty keys"],
)
def test_merge_refuses_shards_that_do_not_share_a_header_or_are_empty(second, keys, words, code, tmp_path):
    (tmp_path / "s0.csv").write_text("id,label\na,1\nc,3\n")
    (tmp_path / "s1.csv").write_text(second)
    (tmp_path / "keys.csv").write_text(keys)

    line = _one_line_error(_run("merge", tmp_path / "o.csv", tmp_path / "s0.csv", tmp_path / "s1.csv",
                                "--key-column", "id", "--keys-csv", tmp_path / "keys.csv", "--allow-partial"),
                           code)  # fmt: skip

    assert words in line
    assert not (tmp_path / "o.csv").exists()


def test_run_local_on_a_folder_with_broken_metadata_is_one_line(tmp_path):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "kernel-metadata.json").write_text('{"code_file":')

    line = _one_line_error(_run("run-local", tmp_path / "k", "--root", tmp_path / "sandbox"), 2)

    assert "is not JSON" in line
