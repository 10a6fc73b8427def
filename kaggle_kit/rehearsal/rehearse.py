"""`kaggle-kit rehearse`: the whole Kaggle life of a kernel on this machine, before any GPU quota is spent.

It starts a `LocalKaggle` on loopback, points the official client at it with throwaway credentials, and runs the real
`chain` against it: push the bundle, poll, read the run's status file, push the resume run with the kernel's own
output attached, until the job is done. Each run is the bundle run as Kaggle runs it (inputs at Kaggle's paths, the
installed kaggle_kit hidden), under the limits the rehearsal sets: the time limit is scaled down (a 9 h kernel in
3 minutes), so a rehearsal shows in minutes whether the chain resumes where it should.

Everything lives under the rehearsal root (default ``kaggle-kit-rehearsals/<slug>/``): the local Kaggle's versions,
the bundles and chain records, ``rehearsal.json`` (one entry per run) and ``rehearsal.png`` (one lane per run). Run it
again with the same root and the chain continues: after a fix to the config, from the last good output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaggle_kit.atomic import atomic_write_json
from kaggle_kit.errors import UsageError
from kaggle_kit.limits import KernelLimits, format_size
from kaggle_kit.local.report import RunReport
from kaggle_kit.push import api as kaggle_api
from kaggle_kit.push.bundle import build_bundle, check_shardable
from kaggle_kit.push.chain import ChainOutcome, run_chain
from kaggle_kit.push.dataset import DATASET_MAX_BYTES, push_dataset
from kaggle_kit.push.metadata import load_metadata, uses_gpu, validate_metadata
from kaggle_kit.push.secrets import user_secrets
from kaggle_kit.rehearsal.platform import Platform
from kaggle_kit.rehearsal.service import KernelVersion, LocalKaggle

__all__ = ["rehearse", "Rehearsal", "REHEARSAL_NAME", "DEFAULT_TIME"]

log = logging.getLogger(__name__)

REHEARSAL_NAME = "rehearsal.json"
DEFAULT_TIME = 180.0  # seconds a rehearsed run may take: a 9-hour kernel in 3 minutes
_CLIENT_SECRETS = ("KAGGLE_API_TOKEN", "KAGGLE_KEY", "KAGGLE_USERNAME", "KAGGLE_API_V1_TOKEN_PATH")


@dataclass
class Rehearsal:
    """How a rehearsal ended: `result` ("done" only when every chain ended done), a one-line `reason`, each
    kernel's chain outcome, the `lines` printed per run, and where the output, report and picture are."""

    result: str
    reason: str
    chains: dict[str, ChainOutcome]
    output: Path
    report_path: Path
    picture: Path | None
    lines: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """True when the rehearsed job ran to done (every shard's, with --shards)."""
        return self.result == "done"


def rehearse(
    kernel_dir: str | os.PathLike,
    data: Mapping[str, str | os.PathLike] | None = None,
    *,
    root: str | os.PathLike | None = None,
    dest: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    platform: Platform | None = None,
    max_runs: int = 5,
    ignore_quota: bool = False,
    shards: int = 0,
    keys_csv: str | os.PathLike | None = None,
    key_column: str | None = None,
    publish: Mapping[str, str | os.PathLike] | None = None,
    poll_s: float = 0.5,
    say: Callable[[str], None] = log.info,
) -> Rehearsal:
    """Rehearse the Kaggle chain of `kernel_dir` against a local Kaggle; see the module docstring.

    `data`: {source as kernel-metadata.json names it: local folder} for its competition, dataset and other kernel
    sources. `config`: a JSON settings file every run reads (KAGGLE_KIT_CONFIG), e.g. the kernel at a tiny size.
    `platform`: what the local Kaggle gives each run (``Platform``: memory and time limits, default 3 minutes a
    run; the session cap; the weekly GPU quota). `max_runs` per chain; `ignore_quota`: push GPU runs whatever the
    quota. `shards` >= 2 rehearses a sharded push and merges the shards' prediction files (.npy always; .csv given
    `keys_csv` and `key_column`) into `dest` (default ``<root>/output``), where the final output is downloaded as
    ``kaggle-kit output -p`` would.
    `publish`: {"owner/slug": folder} pushed first as datasets to the local Kaggle with ``kaggle-kit dataset push``'s
    code (a trained model, for an inference kernel that attaches it).
    """
    kernel_dir = Path(kernel_dir)
    meta = load_metadata(kernel_dir)
    validate_metadata(meta, kernel_dir)
    ref: str = meta["id"]
    owner, slug = ref.split("/")
    data = {name: Path(path) for name, path in (data or {}).items()}
    publish = {ref: Path(path) for ref, path in (publish or {}).items()}
    root = Path(root or Path("kaggle-kit-rehearsals") / slug).resolve()
    _check_sources(meta, data, kernel_dir, {*publish, *_pushed_datasets(root / "kaggle")})
    if shards < 0 or shards == 1:
        raise UsageError(f"--shards {shards}: use 2 or more, or leave it out", shards)
    if shards:
        check_shardable(kernel_dir, config)
    if max_runs < 1:
        raise UsageError(f"--max-runs {max_runs}: at least 1", max_runs)
    if shards and bool(keys_csv) != bool(key_column):
        raise UsageError("--keys-csv and --key-column go together (they order a CSV merge)", None)
    env = {"KAGGLE_KIT_CONFIG": str(_checked_config(config))} if config else {}
    dest = Path(dest or root / "output").resolve()
    lines: list[str] = []

    def finished(version: KernelVersion) -> None:
        line = run_line(version, service.versions(version.ref))
        lines.append(line)
        say(line)

    platform = platform or Platform(time_s=DEFAULT_TIME)
    service = LocalKaggle(root / "kaggle", data, platform=platform, env=env, on_finished=finished)
    refs = [ref] if not shards else [f"{ref}-shard-{i}-of-{shards}" for i in range(shards)]
    # read here, before the throwaway credentials: the kit compares every upload against them (nothing of the user's
    # goes even to the local Kaggle); the official client never sees them
    secrets = user_secrets()
    with service, _client_env(service.client_env(owner, root / "client-home")):
        client = kaggle_api.client()
        for dataset_ref, folder in publish.items():
            room = shutil.disk_usage(service.root).free // 2  # the local copy is real bytes: blob, then unpacked
            pushed = push_dataset(folder, dataset_ref, "rehearsal", api=client, quiet=True,
                                  max_bytes=min(DATASET_MAX_BYTES, room), secrets=secrets)  # fmt: skip
            say(f"kaggle-kit rehearse: published {folder} as the dataset {pushed.ref} "
                f"({'created' if pushed.created else 'new version'})")  # fmt: skip
        if shards:
            bundles = [build_bundle(kernel_dir, root / "build", {"KAGGLE_KIT_SHARD": f"{i}/{shards}"},
                                    f"-shard-{i}-of-{shards}", secrets) for i in range(shards)]  # fmt: skip
        else:
            bundles = [build_bundle(kernel_dir, root / "build", secrets=secrets)]
        say(f"kaggle-kit rehearse: {', '.join(refs)} on a local Kaggle ({_limits_text(service, meta)})")
        real_s = KernelLimits.profile_named("gpu" if uses_gpu(meta) else "cpu").time_s  # what a run stands for
        scale = real_s / platform.time_s if platform.time_s else 1.0
        chains = _run_chains(refs, bundles, client, max_runs, poll_s, say, ignore_quota, scale)
        result, reason = _verdict(chains)
        if result == "done":
            if shards:
                _collect_shards(refs, dest, client, keys_csv, key_column, say)
            else:
                files = kaggle_api.output(ref, dest, client)
                say(f"kaggle-kit rehearse: {len(files)} output file(s) of {ref} in {dest}")
        report_path, picture = _write_report(root, service, refs, chains, result, reason, dest)
    return Rehearsal(result, reason, chains, dest, report_path, picture, lines)


def run_line(version: KernelVersion, versions: list[KernelVersion]) -> str:
    """One line for a finished run: verdict, time, peak memory, where it resumed and where it stopped."""
    report = version.report()
    head = f"  {version.ref} run {version.number}: "
    if report is None:
        return head + f"{version.state} ({version.failure})"
    resumed = _resumed_from(version, versions)
    stop = f"{report.kernel_status} at {report.kernel_position}" if report.kernel_position else report.kernel_status
    said = f"; Kaggle says: {version.failure}" if version.failure else ""
    return (head + f"{report.verdict} in {report.elapsed_s:.0f} s of {report.limits.time_s:.0f} s, peak "
            f"{format_size(report.peak_memory_bytes)} of {format_size(report.limits.memory_bytes)}; {resumed}; "
            f"kernel status {stop or 'not written'}{said}")  # fmt: skip


def _resumed_from(version: KernelVersion, versions: list[KernelVersion]) -> str:
    """Which earlier run's output this run had attached, and where that run's training stood."""
    for earlier in reversed(versions):
        if earlier.number < version.number and str(earlier.output_dir) in version.mounts.values():
            report = earlier.report()
            where = f" at {report.kernel_position}" if report and report.kernel_position else ""
            return f"resumed from run {earlier.number}'s output{where}"
    return "started fresh"


def _check_sources(meta: dict, data: Mapping[str, Path], kernel_dir: Path, datasets: set[str]) -> None:
    """Every competition and dataset source (and kernel source other than itself) needs a local folder, or (a
    dataset) to be published by this rehearsal or an earlier one with the same root."""
    named = [*meta.get("competition_sources", []), *meta.get("dataset_sources", []),
             *(s for s in meta.get("kernel_sources", []) if s != meta["id"])]  # fmt: skip
    unattached = [name for name in data if name not in named]
    if unattached:  # it would be mounted nowhere: the kernel would not find it, and a run would be spent on that
        raise UsageError(f"--data {unattached[0]}=...: {kernel_dir}/kernel-metadata.json attaches no source "
                         f"{unattached[0]!r} (it attaches: {', '.join(named) or 'none'}); attach it in the metadata "
                         "(dataset_sources, competition_sources or kernel_sources), or name one it attaches",
                         unattached)  # fmt: skip
    missing = [s for s in named if s not in data and s not in datasets]
    if missing:
        spec = " ".join(f"--data {s}=PATH" for s in missing)
        raise UsageError(f"{kernel_dir}/kernel-metadata.json names {', '.join(missing)}: give a local folder for each "
                         f"({spec})", missing)  # fmt: skip
    for name, path in data.items():
        if not path.is_dir():
            raise UsageError(f"--data {name}={path}: not a folder", str(path))


def _pushed_datasets(service_root: Path) -> set[str]:
    """The datasets an earlier rehearsal with this root pushed to its local Kaggle ("owner/slug")."""
    base = service_root / "datasets"
    if not base.is_dir():
        return set()
    return {f"{owner.name}/{slug.name}" for owner in base.iterdir() if owner.is_dir() and not owner.name.startswith(".")
            for slug in owner.iterdir() if slug.is_dir()}  # fmt: skip


def _checked_config(config: str | os.PathLike) -> Path:
    path = Path(config).resolve()
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--config {config}: not a readable JSON file ({exc})", str(config)) from None
    if not isinstance(settings, dict):
        raise UsageError(f"--config {config}: must hold a JSON object of settings", str(config))
    return path


@contextlib.contextmanager
def _client_env(env: Mapping[str, str]) -> Iterator[None]:
    """The process environment with the official client sent to the local Kaggle, under a throwaway HOME; the
    user's real credentials are set aside for the rehearsal (never read, never sent) and put back after it."""
    keys = {*env, *_CLIENT_SECRETS}
    saved = {key: os.environ.get(key) for key in keys}
    for key in _CLIENT_SECRETS:
        os.environ.pop(key, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _limits_text(service: LocalKaggle, meta: dict) -> str:
    profile = "gpu" if meta.get("enable_gpu") or meta.get("machine_shape") else "cpu"
    platform = service.platform
    memory = format_size(platform.memory_bytes) if platform.memory_bytes else f"the {profile} profile's memory"
    time_limit = f"{platform.time_s:.0f} s" if platform.time_s else f"the {profile} profile's time"
    return f"{profile} machine, {memory}, {time_limit} per run"


def _run_chains(refs, bundles, client, max_runs, poll_s, say, ignore_quota, scale) -> dict[str, ChainOutcome]:
    """Each kernel's chain, in a thread of its own (the local Kaggle queues what its session cap does not run)."""
    chains: dict[str, ChainOutcome] = {}
    errors: list[BaseException] = []

    def follow(ref: str, bundle: Path) -> None:
        try:
            chains[ref] = run_chain(bundle, max_runs, client, poll_s=poll_s, max_poll_s=max(poll_s, 5.0),
                                    ignore_quota=ignore_quota, time_scale=scale,
                                    say=lambda line: say(f"kaggle-kit rehearse: {ref}: {line}"))  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            errors.append(exc)

    if len(refs) == 1:
        follow(refs[0], bundles[0])
    else:
        threads = [threading.Thread(target=follow, args=pair, daemon=True) for pair in zip(refs, bundles, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return chains


def _verdict(chains: dict[str, ChainOutcome]) -> tuple[str, str]:
    failed = [(ref, c) for ref, c in chains.items() if c.result != "done"]
    if not failed:
        runs = sum(len(c.runs) for c in chains.values())
        return "done", f"done after {runs} run(s)"
    ref, outcome = failed[0]
    return outcome.result, f"{ref}: {outcome.reason}"


def _collect_shards(refs, dest: Path, client, keys_csv, key_column, say) -> None:
    """Download every shard's output into dest/shard-i/ and merge their prediction files into dest."""
    import pandas as pd

    from kaggle_kit.predict.progress import manifest_path_for, shard_problems
    from kaggle_kit.predict.sinks import merge_shards

    folders = []
    for i, ref in enumerate(refs):
        folder = dest / f"shard-{i}"
        kaggle_api.output(ref, folder, client)
        folders.append(folder)
    predictions = sorted(p.name for p in folders[0].iterdir() if manifest_path_for(p).is_file())
    for name in predictions:
        paths = [folder / name for folder in folders]
        problems = shard_problems(paths)
        if problems:
            say(f"kaggle-kit rehearse: not merging {name}: {'; '.join(problems)}")
            continue
        if name.endswith(".csv") and not key_column:
            say(f"kaggle-kit rehearse: {name} not merged (give --keys-csv and --key-column): kaggle-kit merge "
                f"{dest / name} {' '.join(str(p) for p in paths)} --key-column COLUMN --keys-csv FILE")  # fmt: skip
            continue
        keys = list(dict.fromkeys(pd.read_csv(keys_csv, dtype=str)[key_column])) if key_column else None
        merged = merge_shards(paths, dest / name, keys=keys, key_column=key_column)
        say(f"kaggle-kit rehearse: merged {len(paths)} shards into {merged}")


def _write_report(root: Path, service: LocalKaggle, refs: list[str], chains: dict[str, ChainOutcome], result: str,
                  reason: str, dest: Path) -> tuple[Path, Path | None]:  # fmt: skip
    """rehearsal.json (every run: the chain's record and run-local's numbers) and rehearsal.png beside it."""
    from kaggle_kit.local.runplot import plot_chain

    kernels: dict[str, Any] = {}
    lanes: list[tuple[str, RunReport]] = []
    for ref in refs:
        recorded = {r.get("version"): r for r in (chains[ref].runs if ref in chains else [])}
        runs = []
        for version in service.versions(ref):
            report = version.report()
            runs.append({
                "version": version.number, "state": version.state, "failure": version.failure,
                "chain": recorded.get(version.number), "folder": version.folder,
                "verdict": report.verdict if report else None,
                "elapsed_s": report.elapsed_s if report else None,
                "peak_memory_bytes": report.peak_memory_bytes if report else None,
                "kernel_status": report.kernel_status if report else None,
                "kernel_position": report.kernel_position if report else None,
            })  # fmt: skip
            if report is not None:
                where = f" at {report.kernel_position}" if report.kernel_position else ""
                status = f"; kernel status {report.kernel_status}{where}" if report.kernel_status else ""
                label = f"{ref.split('/')[-1]} run {version.number}: {report.verdict}{status}"
                lanes.append((label, report))
        kernels[ref] = {"result": chains[ref].result if ref in chains else None, "runs": runs}
    summary = {"result": result, "reason": reason, "output": str(dest), "kernels": kernels}
    report_path = atomic_write_json(root / REHEARSAL_NAME, summary)
    picture = None
    if lanes:
        try:
            picture = plot_chain(lanes, root / "rehearsal.png")
        except Exception as exc:  # noqa: BLE001 - a picture must never cost the rehearsal's report
            log.warning("could not draw %s: %s", root / "rehearsal.png", exc)
    return report_path, picture
