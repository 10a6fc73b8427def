"""The `kaggle-kit` commands that talk to Kaggle: init, bundle, push (and --shards), status, output, chain, rehearse,
dataset push and merge.

Part of the command line (it prints, like cli.py); the work is done by kaggle_kit.push and kaggle_kit.predict.sinks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kaggle_kit.errors import UsageError
from kaggle_kit.push.scaffold import KINDS

__all__ = ["add_push_commands"]


def add_push_commands(sub) -> None:
    """Add the push family of subcommands to the `kaggle-kit` parser's subparsers `sub`."""
    init = sub.add_parser(
        "init",
        help="start a kernel folder: script and kernel-metadata.json",
        description="Write DIR/kernel.py and DIR/kernel-metadata.json, from the iMaterialist or the "
        "classification kernel or a blank script. The id is <your Kaggle user name>/<DIR as a slug> when "
        "your Kaggle credentials name you (KAGGLE_USERNAME or kaggle.json).",
    )
    init.add_argument("dir", help="the new kernel folder (its name becomes the kernel's slug and title)")
    init.add_argument("--kind", choices=list(KINDS), default="blank",
                      help="what the script starts from (default blank); *-predict: an inference-only kernel with the "
                      "trained model attached as a dataset")  # fmt: skip
    init.set_defaults(handler=_init)

    bundle = sub.add_parser(
        "bundle",
        help="build one self-contained kernel script with kaggle_kit embedded",
        description="Validate KERNEL_DIR/kernel-metadata.json and write build/<slug>/ holding the "
        "script with kaggle_kit embedded (no internet needed) and its metadata.",
    )
    bundle.add_argument("kernel_dir", help="kernel folder: kernel-metadata.json and its code_file")
    bundle.add_argument("--out", default="build", help="where bundles go (default ./build)")
    bundle.set_defaults(handler=_bundle)

    push = sub.add_parser(
        "push",
        help="bundle, validate and push a kernel with the official Kaggle client",
        description="Bundle KERNEL_DIR and push it; --shards N pushes N kernels, kernel i "
        "predicting shard i of N (stream_predict reads KAGGLE_KIT_SHARD).",
    )
    push.add_argument("kernel_dir", help="kernel folder: kernel-metadata.json and its code_file")
    push.add_argument("--shards", type=int, default=None, help="push N kernels, one per shard of the test set")
    push.add_argument("--out", default="build", help="where bundles go (default ./build)")
    push.set_defaults(handler=_push)

    status = sub.add_parser(
        "status",
        help="the status of a kernel's latest run, or its log",
        description="Print the status (QUEUED, RUNNING, COMPLETE, ERROR...) of owner/slug's latest run; --log "
        "prints its whole log instead (--version N: that run's).",
    )
    status.add_argument("kernel", help="owner/kernel-slug")
    status.add_argument("--log", action="store_true", help="print the run's log (stdout and stderr) as Kaggle keeps it")
    status.add_argument("--version", type=int, default=None, help="with --log: the run of this version number")
    status.set_defaults(handler=_status)

    output = sub.add_parser(
        "output",
        help="download all output files of a kernel's latest run",
        description="Download every output file (all pages) and the log of owner/slug.",
    )
    output.add_argument("kernel", help="owner/kernel-slug")
    output.add_argument("-p", "--path", "-o", "--dest", dest="dest", default=None,
                        help="folder to download into (default ./<slug>-output), as the kaggle CLI's -p")  # fmt: skip
    output.set_defaults(handler=_output)

    chain = sub.add_parser(
        "chain",
        help="push, follow and re-push a kernel until its job is done",
        description="Push KERNEL_DIR; when a run completes with needs-resume, push the next one "
        "with the previous output attached; stop when done, on error or after "
        "--max-runs. Re-run it to continue an interrupted chain.",
    )
    chain.add_argument("kernel_dir", help="kernel folder: kernel-metadata.json and its code_file")
    chain.add_argument("--max-runs", type=int, default=5, help="stop after this many runs (default 5)")
    chain.add_argument("--poll", default="30s", help="first status poll interval (doubles up to 10 minutes)")
    chain.add_argument("--out", default="build", help="where bundles and downloaded outputs go (default ./build)")
    chain.add_argument("--ignore-quota", action="store_true",
                       help="push GPU runs even with less weekly GPU quota left than one run's time limit")  # fmt: skip
    chain.set_defaults(handler=_chain)

    rehearse = sub.add_parser(
        "rehearse",
        help="rehearse a kernel's whole Kaggle chain on this machine, against a local Kaggle",
        description="Start a local Kaggle on loopback that runs what is pushed to it (the bundle, inputs "
        "where Kaggle mounts them, the machine's limits with a scaled time limit), run the real chain "
        "against it with the official client, print one line per run, download the final output into "
        "-p DIR and draw the chain. Exit 0 only when the chain ends done. Run it again with the same "
        "--root to continue the chain (after a failed run: from the last good output).",
    )
    rehearse.add_argument("kernel_dir", help="kernel folder: kernel-metadata.json and its code_file")
    rehearse.add_argument("--data", action="append", default=[], metavar="SLUG=PATH",
                          help="a local folder for a source the metadata names (competition, owner/dataset, "
                          "owner/kernel); repeat for each")  # fmt: skip
    rehearse.add_argument("--config", help="a JSON settings file every run reads (KAGGLE_KIT_CONFIG)")
    rehearse.add_argument("--time", default="3min", help="time limit of each run (default 3min)")
    rehearse.add_argument("--memory", default=None,
                          help="memory limit of each run (default: the profile the metadata asks for)")  # fmt: skip
    rehearse.add_argument("--max-runs", type=int, default=5, help="stop after this many runs (default 5)")
    rehearse.add_argument(
        "--quota",
        default=None,
        help="the local Kaggle's weekly GPU quota at the real scale, e.g. 30h (Kaggle's): a GPU run that uses all of "
        "--time uses a whole 12-hour session of it (default: no quota)",
    )
    rehearse.add_argument("--ignore-quota", action="store_true", help="as chain's: push GPU runs whatever the quota")
    rehearse.add_argument("--max-running", type=int, default=2,
                          help="versions running at once, Kaggle's session cap (default 2)")  # fmt: skip
    rehearse.add_argument("--shards", type=int, default=None, help="rehearse N sharded kernels and merge them")
    rehearse.add_argument("--key-column", help="with --shards: the CSV column naming the item (e.g. ImageId)")
    rehearse.add_argument("--keys-csv", help="with --shards: a CSV listing every item's key in order")
    rehearse.add_argument("--publish", action="append", default=[], metavar="FOLDER=OWNER/SLUG",
                          help="first push FOLDER as the dataset OWNER/SLUG (dataset push), e.g. a trained model "
                          "the kernel attaches; repeat for each")  # fmt: skip
    rehearse.add_argument("-p", "--path", dest="dest", default=None,
                          help="folder for the final output (default <root>/output), as output -p")  # fmt: skip
    rehearse.add_argument("--root", default=None,
                          help="the rehearsal's folder (default ./kaggle-kit-rehearsals/<slug>)")  # fmt: skip
    rehearse.set_defaults(handler=_rehearse)

    dataset = sub.add_parser(
        "dataset",
        help="publish a folder (a trained model) as a Kaggle dataset: dataset push FOLDER --id owner/slug",
        description="Kaggle datasets: `dataset push FOLDER --id owner/slug` publishes a folder.",
    )
    dataset_sub = dataset.add_subparsers(title="actions", metavar="ACTION", help="push: publish a folder")
    dataset_push = dataset_sub.add_parser(
        "push",
        help="create the dataset from FOLDER, or add a version when it exists",
        description="Create the Kaggle dataset owner/slug from FOLDER, or add a version when it exists, with the "
        "official client. Subfolders are kept (uploaded zipped, unpacked by Kaggle). dataset-metadata.json is "
        "validated, and written from --id when missing. A folder without a valid model manifest is refused unless "
        "--any. Refused before any request: symbolic links, credential names, files holding your key or token, "
        "more than 1000 files or 100 GB, sparse files (docs/push.md).",
    )
    dataset_push.add_argument("folder", help="the folder to publish, e.g. the imaterialist-model/ a kernel wrote")
    dataset_push.add_argument("--id", dest="dataset_id", help="owner/dataset-slug (written to dataset-metadata.json)")
    dataset_push.add_argument("-m", "--message", default="", help="the new version's notes")
    dataset_push.add_argument("--any", action="store_true", help="publish a folder that is not a trained model")
    dataset_push.set_defaults(handler=_dataset)

    merge = sub.add_parser(
        "merge",
        help="merge shard outputs back into one submission in the original order",
        description="Merge CSVs (or .npy files) written by stream_predict(shard=(i, n)), given "
        "in shard order, into DEST.",
    )
    merge.add_argument("dest", help="the merged file to write (.csv or .npy)")
    merge.add_argument("shards", nargs="+", help="the shards' files, shard 0 first")
    merge.add_argument("--key-column", help="CSV column naming the item (e.g. ImageId)")
    merge.add_argument(
        "--keys-csv",
        help="a CSV listing every item's key in the original order (e.g. the sample "
        "submission); its --key-column gives the order",
    )
    merge.add_argument("--allow-partial", action="store_true",
                       help="merge even if a shard's progress manifest says it is missing or unfinished")  # fmt: skip
    merge.set_defaults(handler=_merge)


def _init(args: argparse.Namespace) -> int:
    from kaggle_kit.push.scaffold import PLACEHOLDER_OWNER, init_kernel
    from kaggle_kit.templates import kernels_dir

    meta = init_kernel(args.dir, args.kind, kernels_dir() if KINDS[args.kind] else Path(), None)
    print(f"kaggle-kit init: {args.dir} ({args.kind}), id {meta['id']}")
    if meta["id"].startswith(f"{PLACEHOLDER_OWNER}/"):
        print(f"  no Kaggle user name found (KAGGLE_USERNAME or kaggle.json): put yours in {args.dir}/"
              "kernel-metadata.json's id before pushing")  # fmt: skip
    return 0


def _refuse_placeholder(kernel_dir: str) -> None:
    from kaggle_kit.push.metadata import load_metadata
    from kaggle_kit.push.scaffold import PLACEHOLDER_OWNER

    kernel_id = str(load_metadata(kernel_dir).get("id", ""))
    if kernel_id.startswith(f"{PLACEHOLDER_OWNER}/"):
        hint = "put your Kaggle user name there (or start the folder with kaggle-kit init)"
        raise UsageError(f"{kernel_dir}/kernel-metadata.json: id {kernel_id!r} has the placeholder owner; {hint}",
                         kernel_id)  # fmt: skip


def _bundle(args: argparse.Namespace) -> int:
    from kaggle_kit.push.bundle import build_bundle

    out = build_bundle(args.kernel_dir, args.out)
    print(f"kaggle-kit bundle: {out}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from kaggle_kit.push import api
    from kaggle_kit.push.bundle import build_bundle, check_shardable

    if args.shards is not None and args.shards < 2:
        raise UsageError(f"--shards {args.shards}: use 2 or more, or leave it out", args.shards)
    if args.shards:
        check_shardable(args.kernel_dir)
    _refuse_placeholder(args.kernel_dir)
    if not args.shards:
        bundles = [build_bundle(args.kernel_dir, args.out)]
    else:
        bundles = [
            build_bundle(
                args.kernel_dir, args.out, {"KAGGLE_KIT_SHARD": f"{i}/{args.shards}"}, f"-shard-{i}-of-{args.shards}"
            )
            for i in range(args.shards)
        ]
    client = api.client()
    for bundle in bundles:
        result = api.push(bundle, client)
        print(f"kaggle-kit push: {result.ref} version {result.version} {result.url}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kaggle_kit.push import api
    from kaggle_kit.push.metadata import check_kernel_ref

    check_kernel_ref(args.kernel)
    if args.version is not None and not args.log:
        raise UsageError("--version goes with --log (the status is always the latest run's)", args.version)
    if args.log:
        sys.stdout.write(api.logs(args.kernel, version=args.version))
        return 0
    client = api.client()
    name, failure = api.status(args.kernel, client)
    print(f"{args.kernel}: {name}" + (f" ({failure})" if failure else ""))
    try:
        quota = api.quota(client)
    except api.KaggleApiError as exc:
        print(f"kaggle-kit status: {exc}", file=sys.stderr)
    else:
        if quota is not None:
            print(quota.describe())
    return 0


def _output(args: argparse.Namespace) -> int:
    from kaggle_kit.push import api
    from kaggle_kit.push.metadata import check_kernel_ref

    check_kernel_ref(args.kernel)
    dest = args.dest or f"{args.kernel.split('/')[-1]}-output"
    files = api.output(args.kernel, dest)
    print(f"kaggle-kit output: {len(files)} file(s) in {dest}")
    return 0


def _chain(args: argparse.Namespace) -> int:
    from kaggle_kit.limits import parse_duration
    from kaggle_kit.push.bundle import build_bundle
    from kaggle_kit.push.chain import run_chain

    if args.max_runs < 1:
        raise UsageError(f"--max-runs {args.max_runs}: at least 1", args.max_runs)
    _refuse_placeholder(args.kernel_dir)
    bundle = build_bundle(args.kernel_dir, args.out)  # the script as it is now; a chain's record there stays
    outcome = run_chain(
        bundle,
        args.max_runs,
        poll_s=parse_duration(args.poll, "--poll"),
        say=lambda line: print(f"kaggle-kit chain: {line}", flush=True),
        ignore_quota=args.ignore_quota,
    )
    for run in outcome.runs:
        print(
            f"  run {run['run']}: version {run.get('version')}, {run.get('kernel_status', '?')}, {run['state']}"
            + (f" at stage {run.get('stage')} epoch {run.get('epoch')}" if run.get("epoch") is not None else "")
        )
    print(f"kaggle-kit chain: {outcome.result}: {outcome.reason}")
    return 0 if outcome.result == "done" else 1


def _rehearse(args: argparse.Namespace) -> int:
    from kaggle_kit.limits import parse_duration, parse_size
    from kaggle_kit.rehearsal.platform import Platform
    from kaggle_kit.rehearsal.rehearse import rehearse

    data = {}
    for spec in args.data:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--data {spec!r}: give SLUG=PATH, e.g. imaterialist-fashion-2019-FGVC6=./data", spec)
        data[name] = Path(path).expanduser()
    publish = {}
    for spec in args.publish:
        folder, sep, ref = spec.rpartition("=")
        if not sep or not folder or ref.count("/") != 1:
            raise UsageError(f"--publish {spec!r}: give FOLDER=OWNER/SLUG, e.g. out/imaterialist-model=me/my-model",
                             spec)  # fmt: skip
        publish[ref] = Path(folder).expanduser()
    outcome = rehearse(
        args.kernel_dir,
        data,
        root=args.root,
        dest=args.dest,
        config=args.config,
        platform=Platform(
            memory_bytes=parse_size(args.memory, "--memory") if args.memory else None,
            time_s=parse_duration(args.time, "--time"),
            max_running=args.max_running,
            gpu_quota_s=parse_duration(args.quota, "--quota") if args.quota else None,
        ),  # fmt: skip
        max_runs=args.max_runs,
        ignore_quota=args.ignore_quota,
        shards=_shards(args.shards),
        keys_csv=args.keys_csv,
        key_column=args.key_column,
        publish=publish,
        say=lambda line: print(line, flush=True),
    )
    print(f"kaggle-kit rehearse: {outcome.result}: {outcome.reason}")
    print(f"  report {outcome.report_path}" + (f", picture {outcome.picture}" if outcome.picture else ""))
    return 0 if outcome.done else 1


def _shards(value: int | None) -> int:
    """--shards as given: 2 or more, or 0 when left out (an explicit 0 or 1 is a one-line error)."""
    if value is not None and value < 2:
        raise UsageError(f"--shards {value}: use 2 or more, or leave it out", value)
    return value or 0


def _dataset(args: argparse.Namespace) -> int:
    from kaggle_kit.push.dataset import push_dataset

    result = push_dataset(args.folder, args.dataset_id, args.message, args.any)
    print(f"kaggle-kit dataset push: {result.ref} {'created' if result.created else 'new version'} {result.url}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    import pandas as pd

    from kaggle_kit.predict.progress import shard_problems
    from kaggle_kit.predict.sinks import merge_shards

    keys = None
    if args.keys_csv:
        if not args.key_column:
            raise UsageError("--keys-csv needs --key-column", None)
        try:
            frame = pd.read_csv(args.keys_csv, dtype=str)
        except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise UsageError(f"--keys-csv {args.keys_csv}: not a readable CSV with a header ({exc})", None) from None
        if args.key_column not in frame.columns:
            raise UsageError(f"--key-column {args.key_column!r} is not a column of {args.keys_csv}", args.key_column)
        keys = list(dict.fromkeys(frame[args.key_column]))
    problems = shard_problems([Path(p) for p in args.shards])
    if problems and not args.allow_partial:
        raise UsageError(f"{'; '.join(problems)}; pass every shard in order, or --allow-partial", problems)
    dest = merge_shards(args.shards, args.dest, keys=keys, key_column=args.key_column)
    print(f"kaggle-kit merge: {dest}")
    return 0
