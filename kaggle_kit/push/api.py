"""The official `kaggle` client's calls that kaggle-kit needs: push, status, output. Never hand-written HTTP.

Credentials are the client's own (KAGGLE_API_TOKEN, ~/.kaggle/access_token, kaggle.json, KAGGLE_USERNAME and
KAGGLE_KEY); kaggle-kit checks they exist before any call, never prints or logs them, and warns when kaggle.json is
readable by others.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from kaggle_kit.errors import KaggleKitError, UsageError

__all__ = [
    "KaggleApiError",
    "CredentialsError",
    "PushResult",
    "client",
    "push",
    "status",
    "output",
    "logs",
    "quota",
    "Quota",
    "log_text",
    "check_credentials",
]

log = logging.getLogger(__name__)

MAX_OUTPUT_FILES = 500  # Kaggle's limit of output files per kernel version


class KaggleApiError(KaggleKitError):
    """Kaggle refused a request, or no credentials are set."""


class CredentialsError(KaggleApiError, UsageError):
    """No Kaggle credentials are set where the official client looks."""


@dataclass(frozen=True)
class PushResult:
    """What Kaggle answered to a push: the kernel's ref ("owner/slug"), its URL and the new version number."""

    ref: str
    url: str
    version: int | None


def check_credentials(environ: dict | None = None) -> None:
    """Raise KaggleApiError with the way to set credentials if none are found; warn if kaggle.json is world-readable."""
    env = os.environ if environ is None else environ
    config_dir = Path(env.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    kaggle_json = config_dir / "kaggle.json"
    if kaggle_json.exists() and kaggle_json.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s is readable by other users; fix it with: chmod 600 %s", kaggle_json, kaggle_json)
    if (env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"))
            or kaggle_json.exists() or (config_dir / "access_token").exists()):  # fmt: skip
        return
    raise CredentialsError(
        f"no Kaggle credentials: set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY), or put "
        f"kaggle.json from kaggle.com/settings in {config_dir} (chmod 600)",
        None,
    )


def client():
    """An authenticated official KaggleApi (imported here: the kaggle package authenticates at import)."""
    check_credentials()
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR")
    if config_dir:  # the class read it at import: a rehearsal that set a throwaway one later must still get it
        api.config_dir, api.config = config_dir, os.path.join(config_dir, api.config_file)
    try:
        api.authenticate()
    except (SystemExit, Exception) as exc:  # the client exits, or raises requests' HTTPError for a refused token
        reason = f" ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})" if str(exc) else ""
        raise KaggleApiError(
            f"the kaggle client could not authenticate with the credentials found{reason}; check them at "
            "kaggle.com/settings",
            None,
        ) from None
    return api


def push(bundle_dir: str | os.PathLike, api=None) -> PushResult:
    """Push a bundle folder (from `build_bundle`) with the official client; raise with Kaggle's reason if refused."""
    api = api or client()
    try:
        response = api.kernels_push(str(bundle_dir))
    except Exception as exc:  # the client raises ValueError / HTTPError with Kaggle's message
        raise KaggleApiError(f"push of {bundle_dir} failed: {exc}", str(bundle_dir)) from None
    if getattr(response, "error", None):
        raise KaggleApiError(f"Kaggle refused the push of {bundle_dir}: {response.error}", response.error)
    return PushResult(response.ref, response.url, response.version_number)


def status(kernel: str, api=None) -> tuple[str, str | None]:
    """(status name, failure message) of a kernel's latest run: QUEUED, RUNNING, COMPLETE, ERROR, ..."""
    api = api or client()
    try:
        response = api.kernels_status(kernel)
    except Exception as exc:
        raise KaggleApiError(f"status of {kernel} failed: {exc}", kernel) from None
    return response.status.name, response.failure_message


def logs(kernel: str, api=None, version: int | None = None) -> str:
    """The log of a kernel's run (`version`; None: the latest) as Kaggle keeps it, through the client's
    ``kernels_logs`` (kaggle-cli #966): the kernel's stdout and stderr."""
    api = api or client()
    try:
        return log_text(api.kernels_logs(kernel if version is None else f"{kernel}/{version}"))
    except Exception as exc:
        raise KaggleApiError(f"log of {kernel}{'' if version is None else f' version {version}'} failed: {exc}",
                             kernel) from None  # fmt: skip


@dataclass(frozen=True)
class Quota:
    """The weekly GPU quota as Kaggle counts it: seconds `used` of `total`, and when it refreshes (`refresh_at`,
    Unix time; None when Kaggle does not say)."""

    used_s: float
    total_s: float
    refresh_at: float | None

    @property
    def left_s(self) -> float:
        return max(0.0, self.total_s - self.used_s)

    def describe(self) -> str:
        """E.g. "GPU quota: 26.0 h used of 30.0 h, 4.0 h left, refreshes Sat 12 Dec 00:00 UTC"."""
        refresh = ""
        if self.refresh_at is not None:
            refresh = ", refreshes " + time.strftime("%a %d %b %H:%M UTC", time.gmtime(self.refresh_at))
        return (f"GPU quota: {self.used_s / 3600:.1f} h used of {self.total_s / 3600:.1f} h, "
                f"{self.left_s / 3600:.1f} h left{refresh}")  # fmt: skip


def quota(api=None) -> Quota | None:
    """The account's weekly GPU quota through the client's ``quota_view`` (kaggle-cli #1029); None when Kaggle
    gives no GPU quota in its answer."""
    api = api or client()
    try:
        response = api.quota_view()
    except Exception as exc:
        raise KaggleApiError(f"the GPU quota could not be read: {exc}", None) from None
    gpu = response.gpu_quota
    if gpu is None or gpu.total_time_allowed is None:
        return None
    refresh = response.quota_refresh_time
    if refresh is not None and refresh.utcoffset() is None:  # the SDK gives UTC without a zone
        refresh = refresh.replace(tzinfo=datetime.UTC)
    used = gpu.time_used.total_seconds() if gpu.time_used is not None else 0.0
    return Quota(used, gpu.total_time_allowed.total_seconds(), refresh.timestamp() if refresh else None)


def log_text(raw: str) -> str:
    """A run's log as text: Kaggle keeps it as a JSON list of {"stream_name", "time", "data"} entries (their data,
    joined); anything else is already text."""
    if raw.lstrip().startswith("["):
        try:
            entries = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(entries, list) and all(isinstance(e, dict) and isinstance(e.get("data"), str) for e in entries):
            return "".join(e["data"] for e in entries)
    return raw


def output(kernel: str, dest: str | os.PathLike, api=None, file_pattern: str | None = None) -> list[Path]:
    """Download the output files of a kernel's latest run (all pages) and its log into `dest`: every file, or those
    whose name matches the regex `file_pattern` (the client lists them all, downloads only those)."""
    api = api or client()
    Path(dest).mkdir(parents=True, exist_ok=True)
    try:
        files, _token = api.kernels_output(kernel, str(dest), file_pattern=file_pattern, force=True, quiet=True)
    except Exception as exc:
        raise KaggleApiError(f"output of {kernel} failed: {exc}", kernel) from None
    log_file = os.path.join(str(dest), kernel.split("/")[-1] + ".log")  # where the client writes the run's log
    outputs = [f for f in files if f != log_file]
    if len(outputs) > MAX_OUTPUT_FILES:
        log.warning("%s listed %d output files: Kaggle keeps at most %d per version, so a run on Kaggle may lose "
                    "some of them (write fewer, larger files: stream_predict's sinks do)", kernel, len(outputs),
                    MAX_OUTPUT_FILES)  # fmt: skip
    return [Path(f) for f in files]
