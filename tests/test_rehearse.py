"""`kaggle-kit rehearse` end to end: a local Kaggle runs every pushed version, each run a new process."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import make_images
from PIL import Image

from kaggle_kit.limits import KernelLimits
from kaggle_kit.local.emulate import run_local
from kaggle_kit.templates import kernels_dir

pytestmark = pytest.mark.e2e

TESTS = str(Path(__file__).parent)
DOCS = Path(__file__).parents[1] / "docs/rehearse.md"
# A tiny classifier under kk.Deadline. Sleeping after each batch puts a floor under the training time whatever the
# machine (sleeping draws no random numbers), so a 30 s kernel needs 3 or more runs (of which a loaded machine spends
# up to 15 s importing fastai). A slow machine only needs more runs (each trains at least one batch), hence the
# generous --max-runs. `ballast_gb` is allocated when the run resumes: run 2 can be made to die for memory.
# `sleep_s`: the floor per batch (0 for the uninterrupted reference run, which has no time limit to outlast).
DEADLINE_KERNEL = """
import sys, time
sys.path.insert(0, {tests!r})
from fastai.callback.core import Callback
import kaggle_kit as kk
from kaggle_kit.config import load_settings
from conftest import make_learner

print("kaggle_kit from", kk.__file__)
settings = load_settings({{"ballast_gb": 0.0, "sleep_s": 0.5}})
kernel = kk.Kernel.current()
if settings["ballast_gb"] and any((path / "checkpoints").is_dir() for _slug, path in kernel.inputs()):
    ballast = bytearray(int(settings["ballast_gb"] * 2**30))


class Slow(Callback):
    def after_batch(self):
        time.sleep(settings["sleep_s"])


images = sorted(kernel.find_input("squares").glob("*.png"))
learn = make_learner("tiny", images[:32], augment=True)
deadline = kk.Deadline(every=0.05, reserve=0.1, safety=0.0)
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(6, 1e-2, cbs=[deadline, Slow()])
kk.stream_predict(learn, images, kk.ArraySink("predictions.npy"), chunk_size=8, reserve_s=2, progress=False)
kk.mark_done()
"""
# A prediction-only kernel (random but seeded weights): what --shards splits and merges.
PREDICT_KERNEL = """
import sys
sys.path.insert(0, {tests!r})
import kaggle_kit as kk
from conftest import make_learner

images = sorted(kk.Kernel.current().find_input("squares").glob("*.png"))
learn = make_learner("tiny", images[:16])
rows = lambda items, preds: [(p.stem, int(x.argmax())) for p, x in zip(items, preds)]
kk.stream_predict(learn, images, kk.CsvSink("submission.csv", rows, ["id", "label"]), progress=False)
kk.stream_predict(learn, images, kk.ArraySink("predictions.npy"), progress=False)
kk.mark_done()
"""


def _kernel(folder: Path, source: str, slug: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "kernel.py").write_text(source.format(tests=TESTS))
    (folder / "kernel-metadata.json").write_text(json.dumps({
        "id": f"tester/{slug}", "title": slug.replace("-", " ").capitalize(), "code_file": "kernel.py",
        "language": "python", "kernel_type": "script", "dataset_sources": ["tester/squares"],
    }))  # fmt: skip
    return folder


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}  # no credentials: none are needed


def _rehearse(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kaggle_kit.cli", "rehearse", *map(str, args)], capture_output=True,
                          text=True, env=_env(), timeout=900)  # fmt: skip


def _runs(root: Path, ref: str) -> list[dict]:
    return json.loads((root / "rehearsal.json").read_text())["kernels"][ref]["runs"]


def _uninterrupted(script: Path, data: Path, root: Path, env: dict | None = None):
    limits = KernelLimits().with_overrides(memory="3GB", time="10min")
    with open(root.parent / f"{root.name}.log", "w") as out:
        report = run_local(script, inputs={"squares": data}, limits=limits, root=root, env=env, stdout=out, stderr=out)
    assert report.ok, (root.parent / f"{root.name}.log").read_text()
    return Path(report.working_dir)


def test_a_chain_killed_for_memory_continues_after_the_fix_and_ends_as_one_uninterrupted_run(tmp_path):
    data = make_images(tmp_path / "squares", 40)[0].parent
    kernel = _kernel(tmp_path / "kernel", DEADLINE_KERNEL, "deadline-kernel")
    config, root, out = tmp_path / "settings.json", tmp_path / "rehearsal", tmp_path / "final"
    config.write_text(json.dumps({"ballast_gb": 4}))
    common = [kernel, "--data", f"tester/squares={data}", "--config", config, "--time", "30s", "--memory", "3GB",
              "--max-runs", "30", "--root", root, "-p", out]  # fmt: skip

    killed = _rehearse(*common)
    config.write_text(json.dumps({"ballast_gb": 0}))  # the fix
    fixed = _rehearse(*common)

    assert killed.returncode == 1, killed.stdout + killed.stderr
    assert "run 2 ended ERROR: Your notebook tried to allocate more memory than is available." in killed.stdout
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "continuing the chain of tester/deadline-kernel: 2 run(s) recorded; run 2 ended error" in fixed.stdout
    runs = _runs(root, "tester/deadline-kernel")
    assert [r["state"] for r in runs[:2]] == ["COMPLETE", "ERROR"]
    good = [r for r in runs if r["state"] == "COMPLETE"]
    # the time limit stopped training at least once before the fix: run 3 resumed from run 1 across the failed run 2
    # (a fast machine may finish after that; a slow one stops again, and each further resume is checked below too)
    assert len(good) >= 2, fixed.stdout
    assert good[-1]["kernel_status"] == "done"
    assert all(r["kernel_status"] == "needs-resume" for r in good[:-1])
    # each run resumed at the exact checkpoint its predecessor left
    for before, after in zip(good, good[1:], strict=False):
        status = json.loads((Path(before["folder"]) / "sandbox/working/kaggle-kit-status.json").read_text())
        log = (Path(after["folder"]) / "log.txt").read_text()
        resumed = re.search(r"resuming stage 0 at epoch \d+, batch \d+ from (\S+)", log)
        assert resumed, log
        assert resumed.group(1).endswith(f"input/notebooks/tester/deadline-kernel/checkpoints/{status['checkpoint']}")
        assert ".zip/kaggle_kit/__init__.py" in log  # the bundle's own copy ran
    config.write_text(json.dumps({"ballast_gb": 0, "sleep_s": 0}))  # no time limit to outlast: no floor needed
    whole = _uninterrupted(kernel / "kernel.py", data, tmp_path / "whole", {"KAGGLE_KIT_CONFIG": str(config)})
    assert (out / "predictions.npy").read_bytes() == (whole / "predictions.npy").read_bytes()
    with Image.open(root / "rehearsal.png") as picture:
        assert picture.height > 85 * len(runs)  # one lane per run, of both rehearsals in this root


def test_shards_under_a_session_cap_of_one_run_one_after_the_other_and_merge_into_the_whole(tmp_path):
    data = make_images(tmp_path / "squares", 30)[0].parent
    kernel = _kernel(tmp_path / "kernel", PREDICT_KERNEL, "predict-kernel")
    keys = tmp_path / "keys.csv"
    keys.write_text("id\n" + "\n".join(p.stem for p in sorted(data.glob("*.png"))) + "\n")
    root, out = tmp_path / "rehearsal", tmp_path / "final"

    limits = ["--time", "2min", "--memory", "3GB", "--max-running", 1]
    done = _rehearse(kernel, "--data", f"tester/squares={data}", "--shards", 2, *limits, "--key-column", "id",
                     "--keys-csv", keys, "--root", root, "-p", out)  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    shard_runs = [_runs(root, f"tester/predict-kernel-shard-{i}-of-2")[0] for i in range(2)]
    reports = [json.loads((Path(r["folder"]) / "sandbox/run-report.json").read_text()) for r in shard_runs]
    first, second = sorted(reports, key=lambda r: r["started_at"])
    assert second["started_at"] >= first["started_at"] + first["elapsed_s"]  # the cap held: one at a time
    whole = _uninterrupted(kernel / "kernel.py", data, tmp_path / "whole")
    for name in ("predictions.npy", "submission.csv"):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name


def _run_as_written(page: Path, block: int, cwd: Path) -> None:
    """Run the `block`-th bash block of a docs page in `cwd`, command by command, as a user would."""
    text = re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)[block]
    for command in (line for line in text.splitlines() if line.strip()):
        if command.startswith("echo "):
            payload, target = re.fullmatch(r"echo '(.*)' > (\S+)", command).groups()
            (cwd / target).write_text(payload)
            continue
        words = shlex.split(command)
        assert words[0] == "kaggle-kit", command
        done = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", *words[1:]], capture_output=True, text=True,
                              cwd=cwd, env=_env(), timeout=900)  # fmt: skip
        assert done.returncode == 0, (command, done.stdout + done.stderr)


def test_the_imaterialist_kernel_rehearses_training_then_an_inference_kernel_as_the_docs_say(tmp_path):
    from kaggle_kit.imaterialist.data import parse_class_id, read_labels
    from kaggle_kit.imaterialist.synth import SOLUTION_NAME

    (tmp_path / "kernels").symlink_to(kernels_dir())
    _run_as_written(DOCS, 0, tmp_path)

    root, data = tmp_path / "kaggle-kit-rehearsals/imaterialist-fashion-2019-kaggle-kit", tmp_path / "fashion-data"
    runs = _runs(root, "your-kaggle-username/imaterialist-fashion-2019-kaggle-kit")
    # a busy machine is stopped by the 60 s limit and resumes (run 1 needs a resume); an idle one may finish in one
    assert runs[-1]["kernel_status"] == "done"
    assert all(r["kernel_status"] == "needs-resume" for r in runs[:-1]), runs
    predicted = json.loads((tmp_path / "kaggle-kit-rehearsals/my-predict-kernel/rehearsal.json").read_text())
    (inference,) = predicted["kernels"]["your-kaggle-username/my-predict-kernel"]["runs"]  # one run, no training
    assert "nothing is trained" in (Path(inference["folder"]) / "log.txt").read_text()
    assert (tmp_path / "predicted/submission.csv").read_bytes() == (tmp_path / "final/submission.csv").read_bytes()
    submission = pd.read_csv(tmp_path / "final/submission.csv", dtype=str, keep_default_na=False)
    solution = pd.read_csv(data / SOLUTION_NAME, dtype=str)
    labels = read_labels(data / "label_descriptions.json")
    assert set(submission["ImageId"]) == set(solution["ImageId"])  # every test image
    assert all(parse_class_id(c)[0] in labels.categories for c in submission["ClassId"] if c)


def test_every_kind_init_writes_rehearses_to_done_as_the_docs_say(tmp_path):
    """The classification kernel, its inference-only kernel from the published model, and the blank kernel."""
    _run_as_written(DOCS, 1, tmp_path)

    owner = "your-kaggle-username"
    trained = _runs(tmp_path / "kaggle-kit-rehearsals/my-classifier", f"{owner}/my-classifier")
    assert len(trained) >= 2, trained  # 35 s a run: stopped and resumed at least once
    assert trained[-1]["kernel_status"] == "done"
    guessed = trained[0]["chain"]["estimate"]  # after run 1, from its share of the fit
    assert len(trained) / 2 <= guessed["runs"] <= 2 * len(trained), (guessed, len(trained))  # within a factor of 2
    assert guessed["seconds_left"] >= (guessed["runs"] - 1) * 3600  # scaled: each run stands for a 12-hour session
    submission = pd.read_csv(tmp_path / "trained/submission.csv", dtype=str, keep_default_na=False)
    assert sorted(submission["id"]) == sorted(p.stem for p in (tmp_path / "shapes/test").glob("*.png"))
    assert (tmp_path / "trained/classifier-model/model-manifest.json").is_file()
    (inference,) = _runs(tmp_path / "kaggle-kit-rehearsals/my-classifier-predict", f"{owner}/my-classifier-predict")
    assert "nothing is trained" in (Path(inference["folder"]) / "log.txt").read_text()
    assert (tmp_path / "predicted/submission.csv").read_bytes() == (tmp_path / "trained/submission.csv").read_bytes()
    (blank,) = _runs(tmp_path / "kaggle-kit-rehearsals/my-first-kernel", f"{owner}/my-first-kernel")
    assert blank["kernel_status"] == "done"


# A quick kernel (no fastai) that does what its settings say: hang (with a double-forked daemon that writes its pid
# where the test reads it), or finish done.
QUICK_KERNEL = """
import os, time
from pathlib import Path
import kaggle_kit as kk
from kaggle_kit.config import load_settings
from kaggle_kit.status import write_status

settings = load_settings({{"hang": False, "pids": ""}})
if settings["hang"]:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            Path(settings["pids"]).write_text(f"{{os.getppid()}} {{os.getpid()}}")
            time.sleep(600)
        os._exit(0)
    os.wait()
    time.sleep(600)
write_status(".", "done", stage=0, epoch=0, iteration=0)
print("kernel done with", kk.__file__)
"""
# Loaded by every Python process of a rehearsal (PYTHONPATH): records each byte sent on a socket, and each file
# opened under the user's (throwaway) home, into files the test reads.
SPY = """
import builtins, io, os, socket, sys
_log = os.environ["SPY_DIR"]
_home = os.environ["SPY_HOME"]


def _record(kind, data):
    with _open(os.path.join(_log, f"{kind}-{os.getpid()}"), "ab") as f:
        f.write(bytes(data) + b"\\n")


def _wrap(name):
    original = getattr(socket.socket, name)

    def sending(self, data, *args, **kwargs):
        _record("sent", data)
        return original(self, data, *args, **kwargs)

    setattr(socket.socket, name, sending)


for _name in ("send", "sendall", "sendto"):
    _wrap(_name)
_open = builtins.open


def _opener():
    frame = sys._getframe(2)
    while frame is not None:  # the kit's own check reads the key to refuse uploads holding it: say so
        if frame.f_code.co_filename.endswith(os.path.join("kaggle_kit", "push", "secrets.py")):
            return b"the kit's upload check"
        frame = frame.f_back
    return b"other"


def _spying_open(file, *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and os.fspath(file).startswith(_home):
        _record("opened", os.fsencode(file) + b" by " + _opener())
    return _open(file, *args, **kwargs)


builtins.open = io.open = _spying_open
"""


def _quick(tmp_path: Path, **settings) -> tuple[Path, Path]:
    kernel = _kernel(tmp_path / "kernel", QUICK_KERNEL, "quick-kernel")
    meta = json.loads((kernel / "kernel-metadata.json").read_text())
    (kernel / "kernel-metadata.json").write_text(json.dumps({**meta, "dataset_sources": []}))
    config = tmp_path / "settings.json"
    config.write_text(json.dumps(settings))
    return kernel, config


def test_no_byte_of_the_users_credentials_is_read_or_sent_by_any_process_of_a_rehearsal(tmp_path):
    import base64

    kernel, config = _quick(tmp_path)
    home, spy = tmp_path / "user-home", tmp_path / "spy"
    (home / ".kaggle").mkdir(parents=True)
    spy.mkdir()
    key, token = "canary-key-3c9d7e1f55", "KGAT_canary-token-8a2b4c6d"
    (home / ".kaggle/kaggle.json").write_text(json.dumps({"username": "someone", "key": key}))
    (home / ".kaggle/access_token").write_text(token)
    (spy / "sitecustomize.py").write_text(SPY)
    env = {**_env(), "HOME": str(home), "KAGGLE_KEY": key, "KAGGLE_USERNAME": "someone", "KAGGLE_API_TOKEN": token,
           "PYTHONPATH": str(spy), "SPY_DIR": str(spy), "SPY_HOME": str(home)}  # fmt: skip

    done = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", "rehearse", str(kernel), "--config", str(config),
                           "--root", str(tmp_path / "rehearsal"), "--max-runs", "1"], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    sent = b"".join(p.read_bytes() for p in spy.glob("sent-*"))
    assert b"SaveKernel" in sent  # the spy saw the client's requests
    assert b"kernel done with" in sent or (tmp_path / "rehearsal/output/quick-kernel.log").exists()
    basic = [base64.b64decode(m + b"==") for m in re.findall(rb"Basic ([A-Za-z0-9+/=]+)", sent)]
    for secret in (key, token):
        assert secret.encode() not in sent
        assert not [b for b in basic if secret.encode() in b]
    opened = b"".join(p.read_bytes() for p in spy.glob("opened-*")).splitlines()
    assert opened  # the kit read the key once, to refuse an upload holding it (the test below)
    assert all(line.endswith(b" by the kit's upload check") for line in opened), opened  # the client never did


def test_one_rehearsal_per_root_sigterm_ends_its_kernels_and_daemons_and_the_stop_is_no_run(tmp_path):
    import signal
    import time

    kernel, config = _quick(tmp_path, hang=True, pids=str(tmp_path / "pids"))
    root = tmp_path / "rehearsal"
    command = [sys.executable, "-m", "kaggle_kit.cli", "rehearse", kernel, "--config", config, "--root", root,
               "--max-runs", "1", "--time", "10min"]  # fmt: skip
    first = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env())  # fmt: skip
    try:
        for _ in range(3000):  # until the kernel and its daemon run (polling a file, not timing)
            if (tmp_path / "pids").exists() and len((tmp_path / "pids").read_text().split()) == 2:
                break
            time.sleep(0.05)
        daemon = int((tmp_path / "pids").read_text().split()[1])
        kernel_log = next(root.glob("kaggle/kernels/tester/quick-kernel/1/log.txt"))

        second = _rehearse(*command[4:])
        still_running = psutil.pid_exists(daemon) and kernel_log.exists()
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    config.write_text(json.dumps({"hang": False}))  # the same command again, now with a kernel that finishes
    again = _rehearse(*command[4:])

    assert second.returncode == 1, second.stdout + second.stderr
    assert f"is in use by process {first.pid} (a rehearsal or local Kaggle)" in second.stderr
    assert still_running  # the second one never touched the first one's kernel
    assert first.returncode == 128 + signal.SIGTERM, out + err
    assert err.strip().splitlines()[-1].startswith("kaggle-kit: stopped by SIGTERM; every kernel it started was")
    assert not psutil.pid_exists(daemon)
    assert again.returncode == 0, again.stdout + again.stderr  # --max-runs 1: the stopped run did not count
    assert "kaggle-kit rehearse: done: done after 1 run(s)" in again.stdout
    (run,) = _runs(root, "tester/quick-kernel")
    assert run["state"] == "COMPLETE"


def test_data_for_a_source_the_metadata_does_not_attach_is_one_line_before_anything_runs(tmp_path):
    kernel, _config = _quick(tmp_path)
    (tmp_path / "shapes").mkdir()

    done = _rehearse(kernel, "--data", f"images={tmp_path / 'shapes'}", "--root", tmp_path / "rehearsal")

    assert done.returncode == 2, done.stdout + done.stderr
    assert "--data images=...: " in done.stderr
    assert "attaches no source 'images' (it attaches: none); attach it in the metadata" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "rehearsal").exists()  # nothing ran, nothing was made


@pytest.mark.parametrize("config", [None, {"epochs": 3}, {"model": "tester/my-model"}])
def test_sharding_a_kernel_that_trains_is_refused_unless_its_config_gives_a_model(config, tmp_path):
    trains = 'import kaggle_kit as kk\nSETTINGS = {{"model": None, "epochs": 3}}\nlearn.fit(1, cbs=kk.Deadline())\n'
    kernel = _kernel(tmp_path / "kernel", trains, "trainer")
    (tmp_path / "squares").mkdir()
    args = ["--data", f"tester/squares={tmp_path / 'squares'}", "--root", tmp_path / "rehearsal", "--shards", "2"]
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
        args += ["--config", tmp_path / "config.json"]

    done = _rehearse(kernel, *args, "--max-runs", "0")  # past the shard check, --max-runs 0 stops it before any run

    assert done.returncode == 2, done.stdout + done.stderr
    said = "trains a model: --shards would train one per shard"
    assert (said in done.stderr) == ("model" not in (config or {})), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "rehearsal").exists()


@pytest.mark.parametrize("where", ["the kernel script", "a published folder"])
def test_a_rehearsal_refuses_an_upload_holding_the_users_key_even_to_the_local_kaggle(where, tmp_path):
    from kaggle_kit.modelfolder import ModelFolder

    kernel, config = _quick(tmp_path)
    home = tmp_path / "user-home"
    (home / ".kaggle").mkdir(parents=True)
    key = "canary-key-77aa88bb99"
    (home / ".kaggle/kaggle.json").write_text(json.dumps({"username": "someone", "key": key}))
    args = [kernel, "--config", config, "--root", tmp_path / "rehearsal", "--max-runs", "1"]
    if where == "the kernel script":
        (kernel / "kernel.py").write_text(f"API_KEY = {key!r}\n" + (kernel / "kernel.py").read_text())
    else:
        ModelFolder.write(tmp_path / "model", "demo", {"notes.txt": f"my key is {key}".encode()}, {})
        args += ["--publish", f"{tmp_path / 'model'}=tester/demo-model"]

    done = subprocess.run([sys.executable, "-m", "kaggle_kit.cli", "rehearse", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env={**_env(), "HOME": str(home)})  # fmt: skip

    assert done.returncode == 2, done.stdout + done.stderr
    assert "holds your Kaggle key or token" in done.stderr or "whose bytes contain your Kaggle key" in done.stderr
    stored = [p for p in (tmp_path / "rehearsal").rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert stored == []  # not in a bundle, not in the local Kaggle's datasets or kernels


def test_a_daemon_left_by_a_killed_rehearsal_is_ended_when_it_is_started_again(tmp_path):
    import signal
    import time

    kernel, config = _quick(tmp_path, hang=True, pids=str(tmp_path / "pids"))
    args = [kernel, "--config", config, "--root", tmp_path / "rehearsal", "--max-runs", "1", "--time", "10min"]
    killed = subprocess.Popen([sys.executable, "-m", "kaggle_kit.cli", "rehearse", *map(str, args)], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(3000):
            if (tmp_path / "pids").exists() and len((tmp_path / "pids").read_text().split()) == 2:
                break
            time.sleep(0.05)
        daemon = int((tmp_path / "pids").read_text().split()[1])
    finally:
        killed.send_signal(signal.SIGKILL)  # nothing of it can clean up: only its next start can
        killed.wait()
    left = psutil.pid_exists(daemon)
    config.write_text(json.dumps({"hang": False}))

    again = _rehearse(*args)

    assert left  # the daemon outlived its killed rehearsal
    assert again.returncode == 0, again.stdout + again.stderr
    gone = not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
    assert gone


# A GPU kernel of three short runs (no fastai): each sleeps 2 s, what a rehearsal at --time 20s scales to 1.2 hours of a
# 12-hour GPU session's quota.
GPU_KERNEL = """
import json, time
from pathlib import Path
from kaggle_kit.status import write_status

attached = sorted(Path("../input").glob("notebooks/*/*/kaggle-kit-status.json"))
runs = (json.loads(attached[0].read_text())["runs"] if attached else 0) + 1
time.sleep(2)
write_status(".", "done" if runs >= 3 else "needs-resume", stage=0, epoch=runs, iteration=0, runs=runs)
"""


def test_a_rehearsal_spends_a_gpu_quota_at_the_real_scale_and_stops_where_it_runs_out(tmp_path):
    kernel = tmp_path / "gpu-kernel"
    kernel.mkdir()
    (kernel / "kernel.py").write_text(GPU_KERNEL)
    (kernel / "kernel-metadata.json").write_text(json.dumps({
        "id": "tester/gpu-kernel", "title": "Gpu kernel", "code_file": "kernel.py", "language": "python",
        "kernel_type": "script", "enable_gpu": True,
    }))  # fmt: skip
    args = [kernel, "--time", "20s", "--quota", "13h", "--root", tmp_path / "rehearsal"]

    stopped = _rehearse(*args)
    told = _rehearse(*args, "--ignore-quota")
    past = _rehearse(kernel, "--time", "20s", "--quota", "1h", "--ignore-quota", "--root", tmp_path / "past")

    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "tester/gpu-kernel: GPU quota: 0.0 h used of 13.0 h, 13.0 h left" in stopped.stdout
    assert re.search(r"kaggle-kit rehearse: quota: tester/gpu-kernel: run 2 not pushed: GPU quota: \d+\.\d h used of "
                     r"13\.0 h", stopped.stdout), stopped.stdout  # fmt: skip
    assert told.returncode == 0, told.stdout + told.stderr
    assert len(_runs(tmp_path / "rehearsal", "tester/gpu-kernel")) == 3
    # pushed past the quota anyway: 1 h is 1.7 s of a 20 s run here, and the quota, not the kernel, ends the run
    assert past.returncode == 1, past.stdout + past.stderr
    assert "run 1 ended ERROR: Your GPU quota ran out" in past.stdout, past.stdout
