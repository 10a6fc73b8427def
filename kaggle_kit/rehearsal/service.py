"""A Kaggle on loopback that really runs what is pushed to it: the rehearsal stage of a Kaggle job.

`LocalKaggle` answers the requests the official `kaggle` client makes for kernels (push, status, the paged output
listing, the output downloads) when the client is pointed at it (`client_env`: KAGGLE_API_ENVIRONMENT=LOCALHOST and
HTTP_PROXY to its port), and the dataset calls of `kaggle-kit dataset push` (``local_datasets``). Each pushed
kernel version runs through `run_local` as Kaggle would run it:
- the pushed script itself (the bundle), with the installed kaggle_kit hidden, so the bundle's own copy is used;
- ``input/`` filled from the push's sources at Kaggle's current paths: ``competitions/<slug>`` and
  ``datasets/<owner>/<slug>`` from the folders given as `data` (or the latest version of a dataset pushed here),
  ``notebooks/<owner>/<slug>`` from the latest
  completed output of that kernel here (or from `data`); a fresh ``working/``;
- the limits of the machine the push asks for (`enable_gpu` or a `machine_shape`: the "gpu" profile, else "cpu"),
  with the memory and time limits the rehearsal chooses (a 9 h kernel rehearsed in 3 minutes);
- Kaggle's outcomes: QUEUED -> RUNNING -> COMPLETE, or ERROR with a Kaggle-like message; at most `max_running`
  versions run at once (Kaggle's session cap), the others wait QUEUED.

Where Kaggle's behaviour is not documented, this service assumes (and the README repeats):
- a run killed at the time limit ends ERROR with "exceeded the max allowed execution duration";
- a run with more output files than the limit ends ERROR, and its listing still holds every file;
- the status and the output of a kernel are its latest version's, whatever its state;
- a kernel attached as a source gives the output of its latest COMPLETE version at the time of the push;
- the log is the run's stdout and stderr as plain text (Kaggle's is JSON lines with timestamps).

Its state (every version, its folder, its outcome) is kept in ``<root>/local-kaggle.json`` (atomic), so a rehearsal
started again continues: versions that were queued or running when it stopped (interrupted, not failed: they count
as no run) run again from the start. One process serves a root at a time (a lock that dies with its holder): a
second one is refused in one line naming the first, never runs or removes the first one's kernels.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from kaggle_kit.atomic import atomic_write_json
from kaggle_kit.errors import KaggleKitError
from kaggle_kit.local.emulate import run_local
from kaggle_kit.local.report import OK, STOPPED
from kaggle_kit.local.supervise import Enforcement, end_leftovers
from kaggle_kit.locks import ExclusiveLock, LockBusyError
from kaggle_kit.rehearsal.datasets import DATASET_METHODS, LocalDatasets
from kaggle_kit.rehearsal.loopback import loopback_handler
from kaggle_kit.rehearsal.platform import QUOTA_MESSAGE, Platform, granted_env, quota_answer, run_stopper
from kaggle_kit.rehearsal.versions import (
    KAGGLE_MESSAGES,
    KernelVersion,
    failure_message,
    notebook_code,
    output_names,
)

__all__ = ["LocalKaggle", "LocalKaggleBusyError", "KernelVersion", "KAGGLE_MESSAGES", "STATE_NAME"]

log = logging.getLogger(__name__)

STATE_NAME = "local-kaggle.json"
LOCK_NAME = ".local-kaggle.lock"  # held by the one process serving a root
QUEUED, RUNNING, COMPLETE, FAILED = "QUEUED", "RUNNING", "COMPLETE", "ERROR"
_KERNEL_OWNER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,49}")
_KERNEL_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?")
_SOURCE_KINDS = (("competitionDataSources", "competitions"), ("datasetDataSources", "datasets"),
                 ("kernelDataSources", "notebooks"))  # fmt: skip


class LocalKaggleBusyError(LockBusyError):
    """Another process serves this local Kaggle's root: two at once would run (and remove) each other's kernels."""


class LocalKaggle:
    """A loopback Kaggle for the official client that runs each pushed kernel version (see the module docstring).

    `root`: where versions, their sandboxes and the service's state live. `data`: {source as written in
    kernel-metadata.json ("imaterialist-fashion-2019-FGVC6", "owner/dataset", "owner/kernel"): local folder}.
    `platform`: each run's limits, the session cap, the weekly GPU quota (``Platform``). `env`: extra environment for
    every kernel (e.g. KAGGLE_KIT_CONFIG). `on_finished`: called with each version when its run ends.
    Scripted answers for tests that need a server error: `script_answer(method, answer)`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        data: Mapping[str, str | os.PathLike] | None = None,
        *,
        platform: Platform | None = None,
        env: Mapping[str, str] | None = None,
        on_finished: Callable[[KernelVersion], None] | None = None,
    ):
        self.platform = platform or Platform()
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = {name: Path(path).resolve() for name, path in (data or {}).items()}
        self.env = dict(env or {})
        self.on_finished = on_finished
        self._quota_asked: float | None = None  # when the quota was first asked for: it refreshes a week later
        self._root_lock = ExclusiveLock(self.root / LOCK_NAME, lambda who: f"{self.root} is in use by {who} (a "
                                        "rehearsal or local Kaggle); wait for it to end, stop it, or use another "
                                        "--root", LocalKaggleBusyError).acquire()  # fmt: skip
        self.requests: list[tuple[str, dict]] = []  # (method, JSON body) of every API call, in order
        self._scripted: dict[str, deque[dict]] = {}
        self._stale: dict[str, int] = {}  # ref -> output listings still to answer from the version before the latest
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._slots = threading.Semaphore(self.platform.max_running)
        self._cancel = threading.Event()
        self._workers: list[threading.Thread] = []
        try:
            self._versions: dict[str, list[KernelVersion]] = self._load_state()
        except BaseException:
            self._root_lock.release()
            raise
        self.datasets = LocalDatasets(self.root / "datasets")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), loopback_handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-kaggle", daemon=True)

    # --- life -----------------------------------------------------------------------------------------------------

    def start(self) -> LocalKaggle:
        """Serve on loopback, and run again the versions a previous service left queued or running."""
        self._thread.start()
        with self._lock:
            for version in (v for vs in self._versions.values() for v in vs if v.state in (QUEUED, RUNNING)):
                ended = end_leftovers(version.token)  # a service killed outright could stop none of them
                if ended:
                    log.warning("local Kaggle: ended %d process(es) %s version %d left running", len(ended),
                                version.ref, version.number)  # fmt: skip
                log.info("local Kaggle: %s version %d was not finished; running it again", version.ref, version.number)
                version.state = QUEUED
                self._launch(version)
            self._save_state()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop serving; kernels still running are stopped as Kaggle would (SIGTERM, grace, SIGKILL)."""
        self._cancel.set()
        for worker in self._workers:
            worker.join(timeout_s)
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._root_lock.release()

    def __enter__(self) -> LocalKaggle:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client_env(self, user: str, home: str | os.PathLike) -> dict[str, str]:
        """Environment variables that send the official client here as `user`, with throwaway credentials and a
        throwaway `home` (HOME, KAGGLE_CONFIG_DIR and XDG_CONFIG_HOME inside it): the client reads
        ``~/.kaggle/access_token`` whatever KAGGLE_CONFIG_DIR says, so no file of the user's is read, let alone
        sent. PYTHONUSERBASE keeps the user's own site-packages importable by the kernels under the new HOME."""
        import site

        proxy = f"http://127.0.0.1:{self.port}"
        home = Path(home).resolve()
        (home / ".kaggle").mkdir(parents=True, exist_ok=True)
        return {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
            "NO_PROXY": "",
            "no_proxy": "",
            "KAGGLE_USERNAME": user,
            "KAGGLE_KEY": f"local-kaggle-{uuid.uuid4().hex}",  # throwaway: never a literal a file could hold
            "HOME": str(home),
            "KAGGLE_CONFIG_DIR": str(home / ".kaggle"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "PYTHONUSERBASE": os.environ.get("PYTHONUSERBASE") or site.getuserbase(),
        }

    # --- what tests and rehearse read -----------------------------------------------------------------------------

    def calls(self, method: str) -> list[dict]:
        """The JSON bodies of every `method` request ("SaveKernel", "GetKernelSessionStatus", ...)."""
        return [body for m, body in self.requests if m == method]

    def versions(self, ref: str) -> list[KernelVersion]:
        """Every version of the kernel `ref` ("owner/slug") pushed here, oldest first."""
        with self._lock:
            return list(self._versions.get(ref, []))

    def wait(self, ref: str, timeout_s: float = 600.0) -> KernelVersion:
        """Block until the latest version of `ref` has finished; return it."""
        end = time.time() + timeout_s
        with self._changed:
            while True:
                latest = self._versions.get(ref, [None])[-1]
                if latest is not None and latest.state not in (QUEUED, RUNNING):
                    return latest
                if time.time() >= end:
                    raise KaggleKitError(f"{ref} did not finish within {timeout_s:.0f} s", ref)
                self._changed.wait(1.0)

    def script_answer(self, method: str, answer: dict) -> None:
        """Answer the next `method` request with `answer` instead of the real one (e.g. {"error": "..."}, or
        {"code": 500, "message": "..."} for an HTTP error)."""
        self._scripted.setdefault(method, deque()).append(answer)

    def set_gpu_quota(self, seconds: float | None) -> None:
        """Change the weekly GPU quota (seconds at the real scale, see ``Platform``; None: none); what GPU runs
        used stays."""
        self.platform = dataclasses.replace(self.platform, gpu_quota_s=seconds)

    def serve_stale_output(self, ref: str, times: int = 1) -> None:
        """Answer the next `times` output listings of `ref` with the version before the latest's output, as Kaggle
        may while a new version's output is not published yet (the client cannot name a version, kaggle-cli #1200)."""
        self._stale[ref] = times

    # --- the API ----------------------------------------------------------------------------------------------------

    def answer(self, method: str, body: dict) -> tuple[int, dict]:
        """(HTTP code, JSON answer) for one API call."""
        self.requests.append((method, body))
        if self._scripted.get(method):
            scripted = dict(self._scripted[method].popleft())
            return int(scripted.pop("code", 200)), scripted
        if method == "SaveKernel":
            return 200, self._push(body)
        if method in DATASET_METHODS:
            return self.datasets.answer(method, body)
        if method == "GetAcceleratorQuotaStatistics":
            self._quota_asked = self._quota_asked or time.time()
            used = [v.used_s for vs in self._versions.values() for v in vs]
            return 200, quota_answer(self.platform, used, self._quota_asked)
        ref = f"{body.get('userName')}/{body.get('kernelSlug')}"
        latest = self.versions(ref)[-1:] or [None]
        if latest[0] is None:
            return 404, {"code": 404, "message": f"Notebook {ref} not found"}
        if method == "GetKernelSessionStatus":
            version = latest[0]
            return 200, {"status": version.state, **({"failureMessage": version.failure} if version.failure else {})}
        if method == "ListKernelSessionOutput":
            versions = self.versions(ref)
            label = str(body.get("versionLabel") or "")
            if label:  # a named version ("v3"): what the logs call asks for
                named = [v for v in versions if f"v{v.number}" == label]
                if not named:
                    return 404, {"code": 404, "message": f"Notebook {ref} has no version {label}"}
                return 200, self._listing(named[0], body)
            if self._stale.get(ref) and len(versions) > 1:
                self._stale[ref] -= 1
                return 200, self._listing(versions[-2], body)
            return 200, self._listing(latest[0], body)
        return 404, {"code": 404, "message": f"the local Kaggle does not answer {method}"}

    def output_file(self, url_path: str) -> Path | None:
        """The output file a download URL names, if it is one (never a path outside a version's output)."""
        parts = [unquote(p) for p in url_path.split("/files/", 1)[-1].split("/")]
        if len(parts) < 4 or not parts[2].isdigit():
            return None
        ref, number, relative = f"{parts[0]}/{parts[1]}", int(parts[2]), "/".join(parts[3:])
        version = next((v for v in self.versions(ref) if v.number == number), None)
        if version is None:
            return None
        base = version.output_dir.resolve()
        path = (base / relative).resolve()
        return path if path.is_file() and path.is_relative_to(base) else None

    def _push(self, body: dict) -> dict:
        ref = str(body.get("slug") or "")
        owner, _, slug = ref.partition("/")
        if not (_KERNEL_OWNER.fullmatch(owner) and _KERNEL_SLUG.fullmatch(slug)):  # never a path outside root
            return {"error": f"the slug {ref!r} must be owner/kernel-slug"}
        with self._lock:
            try:
                mounts = self._mounts(body)
            except KaggleKitError as exc:
                return {"error": str(exc)}
            number = len(self._versions.get(ref, [])) + 1
            folder = self.root / "kernels" / ref / str(number)
            if folder.exists():  # a version a crashed service made but never recorded
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            is_notebook = str(body.get("kernelType", "")).lower() == "notebook"
            code = notebook_code(body.get("text") or "") if is_notebook else body.get("text") or ""
            (folder / "kernel.py").write_text(code, encoding="utf-8")
            gpu = bool(body.get("enableGpu")) or str(body.get("machineShape") or "").lower() not in ("", "none")
            version = KernelVersion(ref=ref, number=number, state=QUEUED, folder=str(folder), code_file="kernel.py",
                                    profile="gpu" if gpu else "cpu", mounts=mounts, pushed_at=time.time())  # fmt: skip
            self._versions.setdefault(ref, []).append(version)
            self._save_state()
            self._launch(version)
        url = f"https://www.kaggle.com/code/{ref}"
        return {"ref": f"/code/{ref}", "url": url, "versionNumber": number}

    def _mounts(self, body: dict) -> dict[str, str]:
        """{path under input/: folder} for a push's sources; a source that is nowhere is refused, as Kaggle would."""
        mounts: dict[str, str] = {}
        for key, kind in _SOURCE_KINDS:
            for source in body.get(key) or []:
                name = str(source).split("/", 2)
                if any(part in ("", ".", "..") for part in name[:2]):
                    raise KaggleKitError(f"the source {source!r} is not a Kaggle source name", source)
                where = f"{kind}/{'/'.join(name[:2])}"
                if source in self.data:
                    mounts[where] = str(self.data[source])
                elif kind == "datasets" and self.datasets.latest(source) is not None:
                    mounts[where] = str(self.datasets.latest(source))
                elif kind == "notebooks":
                    done = [v for v in self._versions.get(source, []) if v.state == COMPLETE]
                    if not done:
                        raise KaggleKitError(f"the kernel source {source} has no completed version here", source)
                    mounts[where] = str(done[-1].output_dir)
                else:
                    raise KaggleKitError(f"the {kind[:-1]} source {source} was not found (rehearse it with --data "
                                         f"{source}=PATH)", source)  # fmt: skip
        return mounts

    def _listing(self, version: KernelVersion, body: dict) -> dict:
        names = output_names(version.output_dir)
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or 20)
        prefix = f"http://localhost/files/{quote(version.ref)}/{version.number}/"
        answer: dict[str, Any] = {
            "files": [{"url": prefix + quote(name), "fileName": name} for name in names[start : start + size]],
            "log": version.log_path.read_text(errors="replace") if version.log_path.exists() else "",
        }
        if start + size < len(names):
            answer["nextPageToken"] = str(start + size)
        return answer

    # --- running versions -------------------------------------------------------------------------------------------

    def _launch(self, version: KernelVersion) -> None:
        worker = threading.Thread(target=self._run, args=(version,), name=f"kernel {version.ref} v{version.number}",
                                  daemon=True)  # fmt: skip
        self._workers.append(worker)
        worker.start()

    def _run(self, version: KernelVersion) -> None:
        with self._slots:
            if self._cancel.is_set():
                return
            version.token = uuid.uuid4().hex
            self._set(version, RUNNING)  # the token is saved before the kernel starts
            limits, enforcement = self.platform.limits(version.profile), Enforcement(self.platform.grace_s)
            quota_s = self.platform.quota_time_s(version.profile, sum(v.used_s for vs in self._versions.values()
                                                                      for v in vs))  # fmt: skip
            stop, out_of_quota = run_stopper(
                self._cancel, quota_s if quota_s is not None and quota_s < limits.time_s else None
            )
            if version.sandbox.exists():  # a version run again after the service stopped: from a fresh sandbox
                shutil.rmtree(version.sandbox)
            version.sandbox.mkdir(parents=True)
            try:
                with open(version.log_path, "w", encoding="utf-8") as out:
                    report = run_local(Path(version.folder) / version.code_file, inputs=version.mounts, limits=limits,
                                       root=version.sandbox, env={**granted_env(version.profile), **self.env},
                                       enforcement=enforcement,
                                       stdout=out, stderr=out, bundle_only=True, cancel=stop,
                                       run_token=version.token)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a version that cannot start is an ERROR, never a dead service
                self._set(version, FAILED, f"the local Kaggle could not run it: {exc}")
            else:
                if report.verdict == STOPPED and out_of_quota.is_set():  # Kaggle ends it, whatever its Deadline thinks
                    version.used_s = self.platform.quota_used_s(version.profile, report.elapsed_s)
                    self._set(version, FAILED, QUOTA_MESSAGE)
                elif report.verdict == STOPPED and self._cancel.is_set():  # the service stopped, not the kernel failed
                    log.info("local Kaggle: %s version %d was stopped with the service; it runs again when the "
                             "service starts again", version.ref, version.number)  # fmt: skip
                    self._set(version, QUEUED)
                    return
                else:
                    version.used_s = self.platform.quota_used_s(version.profile, report.elapsed_s)
                    outcome = COMPLETE if report.verdict == OK else FAILED
                    self._set(version, outcome, failure_message(report, version.log_path))
            finally:
                stop.set()  # ends this run's watcher thread
        if self.on_finished is not None:
            self.on_finished(version)

    def _set(self, version: KernelVersion, state: str, failure: str | None = None) -> None:
        with self._changed:
            version.state, version.failure = state, failure
            self._save_state()
            self._changed.notify_all()

    # --- state ------------------------------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, list[KernelVersion]]:
        path = self.root / STATE_NAME
        if not path.exists():
            return {}
        try:
            raw = json.loads(path.read_text())
            return {ref: [KernelVersion(**v) for v in versions] for ref, versions in raw["kernels"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KaggleKitError(f"{path} is not a local Kaggle's state ({exc}); delete {self.root} to start over",
                                 str(path)) from None  # fmt: skip

    def _save_state(self) -> None:
        kernels = {ref: [asdict(v) for v in versions] for ref, versions in self._versions.items()}
        atomic_write_json(self.root / STATE_NAME, {"kernels": kernels})
