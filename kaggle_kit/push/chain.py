"""`kaggle-kit chain`: push a kernel, follow it, and push resume runs until its job is done.

Run 1 is the bundle as it is. When a run completes and its output's kaggle-kit-status.json says "needs-resume", the
next run is pushed with the kernel itself in kernel_sources, so the previous run's output (its checkpoints) is under
/kaggle/input and kk.Deadline resumes from it. After each such run the chain says about how many runs and (GPU)
hours the job still needs (``estimate``). The chain stops when a run says "done", errors, makes no progress (nothing
the next run will not redo: no batch, no new checkpoint, no prediction item, ``estimate.made_progress``), makes too
little (under `MIN_PROGRESS` of its fit's batches, predicting nothing more: a hundred runs or more to go), when the
GPU quota left is under one run, or after `max_runs`.
Its history is kept in <bundle>/chain.json (atomic), so an interrupted `chain` picks up where the chain is; started
again after a run that errored (fix the config or the script first), it pushes that run again: the kernel resumes
from the last good output, not from scratch.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaggle_kit.atomic import atomic_write_bytes, atomic_write_json
from kaggle_kit.errors import KaggleKitError
from kaggle_kit.limits import KernelLimits
from kaggle_kit.push import api as kaggle_api
from kaggle_kit.push.bundle import set_bundle_setting
from kaggle_kit.push.estimate import estimate, made_progress
from kaggle_kit.push.metadata import METADATA_NAME, MetadataError, load_metadata, uses_gpu, write_metadata
from kaggle_kit.status import DONE, NEEDS_RESUME, RUN_ID_ENV, STATUS_NAME, KernelStatus, StatusError

__all__ = ["run_chain", "ChainOutcome", "ChainRecord", "CHAIN_NAME", "MIN_PROGRESS"]

log = logging.getLogger(__name__)

CHAIN_NAME = "chain.json"
CHAIN_FORMAT = 1  # chain.json's format; a record without one (written before it had one) is format 1
STATUS_PATTERN = r"^kaggle-kit-status\.json$"  # what a chain downloads of each run's output
_RUNNING = {"QUEUED", "RUNNING", "NEW_SCRIPT", "CANCEL_REQUESTED"}
_RETRIED = ("error", "no-status", "stuck")  # how a run may have ended that a chain started again pushes once more
MIN_PROGRESS = 0.01  # the least share of its fit's batches a run must train (or it must predict more) to go on
LOG_TAIL = 20  # lines of a failed run's log that a chain shows
STALE_TRIES = 4  # downloads of a run's status that may come back from another run before the chain stops


@dataclass
class ChainOutcome:
    """How a chain ended: `result` ("done", "error", "max-runs", "no-status", "stuck" or the last run's state), a
    one-line `reason`, and the `runs` as recorded in chain.json (run number, version, url, state, position)."""

    result: str
    reason: str
    runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ChainRecord:
    """chain.json: the chain of one kernel, every run pushed (run number, version, url, state, position) and how it
    ended. Its one owner: `load` validates (a file that is not a chain record is one line naming it) and `commit`
    writes it atomically with its format version; nobody else reads or writes the file."""

    kernel: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    result: str | None = None
    reason: str | None = None

    @classmethod
    def load(cls, path: Path, ref: str) -> ChainRecord:
        """The record in `path`, or a new one for the kernel `ref` when there is none."""
        if not path.exists():
            return cls(ref)
        try:
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            version = raw.get("format", 1)
            if type(version) is not int or version < 1:
                raise ValueError(f"format {version!r} is not a chain record format")
            if version > CHAIN_FORMAT:
                raise ValueError(f"format {version} is newer than this kaggle_kit reads ({CHAIN_FORMAT})")
            runs = raw.get("runs")
            if not isinstance(runs, list) or not all(
                isinstance(r, dict) and isinstance(r.get("state"), str) and type(r.get("run")) is int and r["run"] > 0
                for r in runs
            ):  # fmt: skip (run names a folder: an int, never a path)
                raise ValueError("not a chain record")
        except (OSError, ValueError) as exc:
            raise KaggleKitError(f"{path} cannot be read as a chain record ({exc}); delete it to start a new chain",
                                 str(path)) from None  # fmt: skip
        return cls(str(raw.get("kernel") or ref), runs, raw.get("result"), raw.get("reason"))

    def commit(self, path: Path) -> None:
        """Write the record atomically (a kill leaves the previous one, never a cut file)."""
        atomic_write_json(path, {"format": CHAIN_FORMAT, "kernel": self.kernel, "runs": self.runs,
                                 "result": self.result, "reason": self.reason})  # fmt: skip


def run_chain(
    bundle_dir: str | Path,
    max_runs: int,
    api=None,
    *,
    poll_s: float = 30.0,
    max_poll_s: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = log.info,
    ignore_quota: bool = False,
    time_scale: float = 1.0,
) -> ChainOutcome:
    """Push and follow runs of the kernel bundled in `bundle_dir` until done, an error, or `max_runs` runs.

    Polls the run's status with back-off from `poll_s` to `max_poll_s` seconds. Re-invoking it with the same bundle
    continues the recorded chain instead of starting another. Before each GPU run, the weekly GPU quota is read: with
    less left than one run's time limit the chain stops ("quota") unless `ignore_quota`. After each run that needs a
    resume it says about how many runs and hours the job still needs (``estimate``; `time_scale`: what one second of
    these runs stands for, for a rehearsal's shortened runs).
    """
    bundle_dir = Path(bundle_dir)
    api = api or kaggle_api.client()
    meta = load_metadata(bundle_dir)  # the one reader: damaged metadata is one MetadataError, not a traceback
    ref = meta.get("id")
    if not isinstance(ref, str) or "/" not in ref:
        raise MetadataError(f"{bundle_dir / METADATA_NAME}: id {ref!r} must be 'owner/slug'", ref)
    if not isinstance(meta.get("kernel_sources"), list):
        raise MetadataError(f"{bundle_dir / METADATA_NAME}: kernel_sources must be a list", meta.get("kernel_sources"))
    state_path = bundle_dir / CHAIN_NAME
    state = ChainRecord.load(state_path, ref)
    runs: list[dict[str, Any]] = state.runs
    retry = bool(runs) and runs[-1]["state"] in _RETRIED
    if runs:
        again = f"; run {runs[-1]['run']} ended {runs[-1]['state']}: pushing it again" if retry else ""
        say(f"continuing the chain of {ref}: {len(runs)} run(s) recorded{again}")
    while True:
        if not runs or runs[-1]["state"] == NEEDS_RESUME or retry:
            if len(runs) >= max_runs:
                return _finish(state, state_path, "max-runs", f"{max_runs} run(s) pushed, the job still needs more")
            short = None if ignore_quota or not uses_gpu(meta) else _quota_short(api, len(runs) + 1, say)
            if short:
                return _finish(state, state_path, "quota", short)
            retry = False
            if any(r["state"] == NEEDS_RESUME for r in runs):  # an output to resume from exists
                _add_self_as_source(bundle_dir, meta, ref)
            run_id = uuid.uuid4().hex[:16]  # the run's status must carry it: a status from another run is refused
            set_bundle_setting(bundle_dir, RUN_ID_ENV, run_id)
            pushed = kaggle_api.push(bundle_dir, api)
            runs.append({"run": len(runs) + 1, "version": pushed.version, "url": pushed.url, "state": "pushed",
                         "pushed_at": time.time(), "run_id": run_id})  # fmt: skip
            state.commit(state_path)
            say(f"run {len(runs)}: pushed version {pushed.version} ({pushed.url})")
        run = runs[-1]
        if run["state"] == "pushed":
            name, failure = _wait(api, ref, poll_s, max_poll_s, sleep)
            run["kernel_status"] = name
            if name != "COMPLETE":
                run["state"] = "error"
                state.commit(state_path)
                _keep_log(api, ref, run, bundle_dir, say)
                return _finish(state, state_path, "error", f"run {run['run']} ended {name}: {failure or 'no message'}")
            status, problem = _run_status(api, ref, bundle_dir / f"run-{run['run']}-output", run, poll_s, sleep, say)
            if problem == "stale":  # the run stays "pushed": started again, the chain downloads its status again
                return _finish(state, state_path, "stale-status", f"run {run['run']}: Kaggle served a status written "
                               f"by another run {STALE_TRIES} times (not run id {run.get('run_id')}); this version's "
                               "output may not be published yet: run kaggle-kit chain again later")  # fmt: skip
            if status is None:
                run["state"] = "no-status"
                state.commit(state_path)
                return _finish(state, state_path, "no-status", f"run {run['run']} left {problem}")
            run["state"] = status.status
            run.update(stage=status.stage, epoch=status.epoch, iteration=status.iteration,
                       time_used_s=status.time_used_s, predicted=status.extra.get("predicted"),
                       items=status.extra.get("items"), epochs=status.extra.get("epochs"),
                       batches=status.extra.get("batches"), training=status.extra.get("training"),
                       checkpoint=status.checkpoint)  # fmt: skip
            state.commit(state_path)
            before = [r for r in runs[:-1] if r["state"] == NEEDS_RESUME]
            guess = estimate([*before, run], uses_gpu(meta), time_scale) if status.status == NEEDS_RESUME else None
            if guess:  # kept with the run: what the chain expected then
                run["estimate"] = {"runs": guess.runs, "seconds_left": round(guess.seconds_left)}
                state.commit(state_path)
            which = guess.run_of() if guess else f"run {run['run']}"
            say(f"{which}: {status.status} ({status.where()})" + (f"; {guess.left()}" if guess else ""))
            if status.status == NEEDS_RESUME and before and made_progress(before[-1], run) <= 0:
                run["state"] = "stuck"
                state.commit(state_path)
                return _finish(state, state_path, "stuck", f"run {run['run']} made no progress: it stopped where run "
                               f"{before[-1]['run']} did ({status.where()}); the time left after the Deadline"
                               "'s reserve is too short for one step")  # fmt: skip
            slow = _too_slow(run, before[-1] if before else None) if status.status == NEEDS_RESUME else None
            if slow:
                run["state"] = "stuck"
                state.commit(state_path)
                return _finish(state, state_path, "stuck", slow)
        if run["state"] == DONE:
            return _finish(state, state_path, "done", f"done after {len(runs)} run(s)")
        if run["state"] not in (NEEDS_RESUME, "pushed"):
            return _finish(state, state_path, run["state"], f"run {run['run']} ended as {run['state']}")


def _quota_short(api, run: int, say) -> str | None:
    """Why run `run` is not pushed: the GPU quota left is under one GPU run's time limit; None when it is not."""
    try:
        quota = kaggle_api.quota(api)
    except KaggleKitError as exc:
        say(f"run {run}: {exc}; pushing it all the same")
        return None
    if quota is None:
        return None
    limit_s = KernelLimits.profile_named("gpu").time_s
    say(quota.describe())
    if quota.left_s >= limit_s:
        return None
    return (
        f"run {run} not pushed: {quota.describe()}, under one GPU run's {limit_s / 3600:.0f} h (it would stop at "
        "the quota, not at its Deadline); run the chain again after the refresh, or pass --ignore-quota"
    )


def _keep_log(api, ref: str, run: dict[str, Any], bundle_dir: Path, say) -> None:
    """Keep the failed run's whole log beside chain.json (run-N.log) and say its last `LOG_TAIL` lines."""
    try:
        text = kaggle_api.logs(ref, api, version=run.get("version"))
    except KaggleKitError as exc:
        say(f"run {run['run']}: its log could not be read ({exc})")
        return
    path = bundle_dir / f"run-{run['run']}.log"
    atomic_write_bytes(path, text.encode("utf-8"))
    lines = text.rstrip("\n").splitlines()[-LOG_TAIL:]
    say(f"run {run['run']}: the last {len(lines)} line(s) of its log (all of it in {path}):")
    for line in lines:
        say(f"  | {line}")


def _run_status(api, ref: str, dest: Path, run: dict[str, Any], poll_s: float, sleep,
                say) -> tuple[KernelStatus | None, str]:  # fmt: skip
    """The status the run wrote (downloaded into `dest`), or (None, why not): "stale" when every try came back with
    another run's status (the client cannot ask for a version's output, kaggle-cli #1200)."""
    for attempt in range(STALE_TRIES):
        kaggle_api.output(ref, dest, api, file_pattern=STATUS_PATTERN)  # not the whole output: GBs of weights
        try:
            status, problem = KernelStatus.load(dest), "no kaggle-kit-status.json"
        except StatusError as exc:
            return None, f"a status file that is not one ({exc})"
        if status is None or "run_id" not in run or status.run_id == run["run_id"]:
            return status, problem
        say(f"run {run['run']}: the status Kaggle served is another run's (run id {status.run_id}, not "
            f"{run['run_id']}); waiting for this run's")  # fmt: skip
        (dest / STATUS_NAME).unlink()
        if attempt < STALE_TRIES - 1:
            sleep(poll_s * 2**attempt)
    return None, "stale"


def _wait(api, ref: str, poll_s: float, max_poll_s: float, sleep) -> tuple[str, str | None]:
    delay = poll_s
    while True:
        name, failure = kaggle_api.status(ref, api)
        if name not in _RUNNING:
            return name, failure
        sleep(delay)
        delay = min(max_poll_s, delay * 2)


def _too_slow(run: dict[str, Any], before: dict[str, Any] | None) -> str | None:
    """Why a run that trained less than `MIN_PROGRESS` of its fit's batches (and predicted nothing more) stops the
    chain: at that pace the job would need over a hundred runs of GPU quota; None when it made enough progress."""
    epochs, batches = run.get("epochs"), run.get("batches")
    if not (isinstance(epochs, int) and isinstance(batches, int) and epochs > 0 and batches > 0):
        return None  # a script whose status does not say how long its fit is: only "no progress" is known
    if before is None:
        before = {"stage": 0, "epoch": 0, "iteration": 0, "predicted": None}
    if any(before.get(k) != run.get(k) for k in ("training", "stage", "predicted")):
        return None
    trained = (run["epoch"] * batches + run["iteration"]) - (before["epoch"] * batches + before["iteration"])
    total = epochs * batches
    if trained <= 0 or trained >= MIN_PROGRESS * total:
        return None
    return (f"run {run['run']} trained {trained} batch(es), {100 * trained / total:.1f}% of the fit: at this pace the "
            f"job needs about {round((total - run['epoch'] * batches - run['iteration']) / trained)} more runs; give "
            "each run more time, or a smaller Deadline reserve or safety")  # fmt: skip


def _add_self_as_source(bundle_dir: Path, meta: dict, ref: str) -> None:
    if ref not in meta["kernel_sources"]:
        meta["kernel_sources"] = [*meta["kernel_sources"], ref]
        write_metadata(bundle_dir, meta)


def _finish(state: ChainRecord, state_path: Path, result: str, reason: str) -> ChainOutcome:
    state.result, state.reason = result, reason
    state.commit(state_path)
    return ChainOutcome(result=result, reason=reason, runs=state.runs)
