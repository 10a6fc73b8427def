"""The ``kaggle-kit`` command: parses arguments and calls the modules; the only place that prints and exits."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from kaggle_kit import __version__
from kaggle_kit.cli.kernels import add_push_commands
from kaggle_kit.errors import KaggleKitError, KernelLayoutError, LimitsError, UsageError
from kaggle_kit.limits import KernelLimits

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    The one error boundary: a `KaggleKitError` or an `OSError` becomes ``kaggle-kit: <one line>`` on stderr with exit
    code 2 for a usage error (a bad argument, setting, metadata or missing credentials: fix the call) and 1 for a
    failure while working; a traceback only with ``--debug`` or KAGGLE_KIT_DEBUG=1.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "run-local" in argv and "--" in argv[argv.index("run-local") :]:  # only run-local passes arguments on
        split = argv.index("--", argv.index("run-local"))
        argv, script_args = argv[:split], argv[split + 1 :]
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the command's own usage, not the top level's: `bundle --outt` shows bundle's options
        command = next((word for word in argv if word in parser.commands), None)
        parser.commands.get(command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    args.script_args = script_args
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    previous = signal.signal(signal.SIGTERM, _raise_terminated)  # SIGTERM ends a command as Ctrl-C does
    try:
        return int(args.handler(args) or 0)
    except _Terminated:
        print(f"kaggle-kit: stopped by SIGTERM; {_stopped_what(argv)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"kaggle-kit: interrupted; {_stopped_what(argv)}", file=sys.stderr)
        return 130
    except (KaggleKitError, OSError) as exc:
        if args.debug or os.environ.get("KAGGLE_KIT_DEBUG") == "1":
            raise
        print(f"kaggle-kit: {_one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, _USAGE_ERRORS) else 1
    finally:
        signal.signal(signal.SIGTERM, previous)


_STOPPED_WHAT = "every kernel it started was stopped; run the same command again to continue"


def _stopped_what(argv: list[str]) -> str:
    """What an interrupted command left and how to go on: a chain or rehearsal continues when run again; a run-local
    kernel's checkpoints stay in the working dir it had, which a new run uses only when told to."""
    if "run-local" not in argv:
        return _STOPPED_WHAT
    return ("every process of the kernel was stopped; what it wrote stays in its working/ (under --root, else the "
            "newest kaggle-kit-runs/ folder): to continue there, run it again with --working that folder")  # fmt: skip


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: every `with` and `finally` on the way out runs, as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


# the command line, or a file it names, is wrong (exit 2): fixed by changing the call, not by running it again
_USAGE_ERRORS = (UsageError, LimitsError, KernelLayoutError)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, KaggleKitError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}:{where}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaggle-kit",
        description="Run long fastai image jobs in Kaggle kernels without losing them to the platform's limits: "
        "rehearse kernels locally under those limits, bundle and push them, follow and chain their runs.",
    )
    parser.add_argument("--version", action="version", version=f"kaggle-kit {__version__}")
    _add_common(parser, False)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    parser.commands = sub.choices  # {name: its parser}, for errors in the command's own words

    run = sub.add_parser(
        "run-local",
        help="run a kernel script locally under Kaggle's limits",
        usage="kaggle-kit run-local SCRIPT [options] [-- SCRIPT_ARGS...]",
        description="Run SCRIPT in a Kaggle-shaped sandbox (input/, working/) with RAM, time and "
        "output-file limits enforced; exits with the script's exit code "
        "(137 when killed for memory).",
    )
    run.add_argument("script", help="the kernel script (.py), or a kernel folder holding kernel-metadata.json")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="[SLUG=]PATH",
        help="attach PATH as input/SLUG (repeatable; SLUG may be 'competitions/NAME')",
    )
    run.add_argument("--profile", default=None, help="limits profile: card (default), cpu, gpu")
    run.add_argument("--memory", help="RAM limit, e.g. 2GiB or 17GB")
    run.add_argument("--time", help="time limit, e.g. 90s or 9h")
    run.add_argument("--max-files", help="output-file limit, e.g. 500")
    run.add_argument("--cpus", type=int, default=None,
                     help="pin the kernel to N of this machine's cores, e.g. 4 as Kaggle's GPU machine (default: the "
                     "profile's: 4 for cpu and gpu, all for card)")  # fmt: skip
    run.add_argument("--working", help="use (and keep) this directory as working/, e.g. to resume a run")
    run.add_argument("--root", help="sandbox directory (default ./kaggle-kit-runs/<script>-<time>)")
    run.add_argument("--report", help="where to write the JSON run report (default <root>/run-report.json)")
    run.add_argument("--grace", default="10s", help="time between SIGTERM and SIGKILL at the time limit")
    run.add_argument("--config", help="JSON file of kernel settings, passed as KAGGLE_KIT_CONFIG")
    run.add_argument("--no-plot", dest="plot", action="store_false",
                     help="do not draw the run against its limits (default: a PNG beside the JSON report)")  # fmt: skip
    run.set_defaults(handler=_run_local)

    demo = sub.add_parser(
        "demo",
        help="run the iMaterialist kernel on synthetic data: interrupted, then resumed",
        description="Make a synthetic iMaterialist-2019 dataset and run "
        "kernels/imaterialist-fashion-2019 on it in an emulated kernel twice: the first "
        "run's time limit is too short (it checkpoints and stops), the second resumes "
        "and writes the submission. --streaming runs the smaller classification demo.",
    )
    demo.add_argument("--out", default="kaggle-kit-demo", help="folder for the data, logs and the kernel's sandbox")
    demo.add_argument("--memory", default=None, help="the emulated kernel's RAM limit (default 6GiB; 3GiB streaming)")
    demo.add_argument("--first-time", default="75s", help="time limit of the first, interrupted run")
    demo.add_argument("--streaming", action="store_true", help="the classification + streaming demo instead")
    demo.add_argument("--test-images", type=int, default=800, help="test images of the streaming demo")
    demo.set_defaults(handler=_demo)

    synth = sub.add_parser(
        "synth",
        help="write a synthetic iMaterialist-2019 dataset in the competition's format (or --classes)",
        description="Write label_descriptions.json, train.csv, train/, test/ and "
        "sample_submission.csv (plus synthetic_test_solution.csv) into DEST. With --classes: a classification "
        "folder tree instead, train/<label>/*.png and test/*.png.",
    )
    synth.add_argument("dest", help="folder to write")
    synth.add_argument("--train", type=int, default=120, help="training images")
    synth.add_argument("--test", type=int, default=30, help="test images")
    synth.add_argument(
        "--profile",
        choices=["realistic", "easy"],
        default="realistic",
        help="realistic: dressed people, ~9 objects per photo, mostly small parts, touching and hidden instances "
        "(like the real data); easy: 4.5 large shapes per image (default: realistic)",
    )
    synth.add_argument("--min-size", type=int, help="smallest image side, pixels (default 100 realistic, 96 easy)")
    synth.add_argument("--max-size", type=int, help="largest image side, pixels (default 3000 realistic, 160 easy)")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    synth.add_argument("--classes", action="store_true",
                       help="a dataset for the classification kernels: 32 px coloured squares labelled red or blue by "
                       "their folder (train/<label>/*.png, test/*.png)")  # fmt: skip
    synth.set_defaults(handler=_synth)

    add_push_commands(sub)

    clean = sub.add_parser(
        "clean",
        help="find and fix images that would break training",
        description="Check every image under DIR: convert PNG/GIF/BMP/TIFF content named .jpg, "
        "CMYK, palette, 16-bit and alpha images to RGB in place; move zero-byte, "
        "undecodable and oversized ones to a quarantine folder (never deletes unless "
        "--delete). Writes a JSON report.",
    )
    clean.add_argument("dir", help="folder of images to check (searched recursively)")
    clean.add_argument("--quarantine", help="where unusable files go (default DIR-quarantine beside DIR)")
    clean.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    clean.add_argument("--delete", action="store_true", help="delete unusable files instead of quarantining them")
    clean.add_argument("--max-pixels", type=int, default=None, help="larger images count as unsafe to decode")
    clean.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count, max 4)")
    clean.add_argument("--report", help="report path (default DIR-clean-report.json beside DIR)")
    clean.set_defaults(handler=_clean)

    convert = sub.add_parser(
        "convert-imat2018",
        help="iMaterialist-2018 JSON to a fastai-ready CSV",
        description="Write image,url,labels rows (labels space-separated) from the 2018 "
        "competition's train/validation/test JSON.",
    )
    convert.add_argument("json", help="the 2018 competition's train.json, validation.json or test.json")
    convert.add_argument("csv", help="the CSV to write")
    convert.add_argument("--all-urls", action="store_true",
                         help="keep every URL of an image, joined by ';' (default: the first)")  # fmt: skip
    convert.add_argument("--columns", default="image,url,labels", metavar="IMAGE,URL,LABELS",
                         help="the output's three column names (default image,url,labels)")  # fmt: skip
    convert.set_defaults(handler=_convert)
    for command in sub.choices.values():  # -v and --debug after the command too, as users type them
        _add_common(command, argparse.SUPPRESS)
    return parser


def _add_common(parser: argparse.ArgumentParser, default) -> None:
    """-v/--verbose and --debug; a subcommand's default is SUPPRESS so that it does not undo a flag given before."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log progress (INFO)")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks (also KAGGLE_KIT_DEBUG=1)")  # fmt: skip


def _limits_from(args: argparse.Namespace) -> KernelLimits:
    if getattr(args, "cpus", None) is not None and args.cpus < 1:
        raise UsageError(f"--cpus {args.cpus}: give a whole number of cores >= 1, e.g. 4", args.cpus)
    base = KernelLimits.profile_named(args.profile) if args.profile else KernelLimits.from_env()
    return base.with_overrides(memory=args.memory, time=args.time, max_files=args.max_files,
                               names=("--memory", "--time", "--max-files"), cpus=args.cpus)  # fmt: skip


def _run_local(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kaggle_kit.limits import parse_duration
    from kaggle_kit.local.emulate import run_local
    from kaggle_kit.local.report import REPORT_NAME, STOPPED, TOO_MANY_FILES, TOO_MUCH_OUTPUT
    from kaggle_kit.local.supervise import Enforcement

    script = Path(args.script)
    if script.is_dir():
        script = _kernel_script(script)
    env = {}
    if args.config:
        config = Path(args.config).resolve()
        if not config.is_file():
            raise UsageError(f"--config {args.config}: no such file", args.config)
        env["KAGGLE_KIT_CONFIG"] = str(config)
    report = run_local(
        script,
        inputs=args.input,
        limits=_limits_from(args),
        root=args.root,
        working=args.working,
        args=args.script_args,
        env=env,
        enforcement=Enforcement(grace_s=parse_duration(args.grace, "--grace")),
        report_path=args.report,
        plot=args.plot,
    )
    print(f"kaggle-kit: {report.summary()}", file=sys.stderr)
    print(
        f"kaggle-kit: working dir {report.working_dir}; report in {args.report or Path(report.root) / REPORT_NAME}",
        file=sys.stderr,
    )
    if report.verdict == STOPPED or report.kernel_status == "needs-resume":  # a new run gets a new working dir
        print(f"kaggle-kit: to continue there, run it again with --working {report.working_dir}", file=sys.stderr)
    if report.exit_code == 0 and report.verdict in (TOO_MANY_FILES, TOO_MUCH_OUTPUT):
        return 1
    return report.exit_code


def _demo(args: argparse.Namespace) -> int:
    if not args.streaming:
        return _imaterialist_demo(args)
    from kaggle_kit.limits import format_size, parse_size
    from kaggle_kit.local.demo import run_streaming_demo

    if args.test_images < 1:
        raise UsageError(f"--test-images {args.test_images}: need at least 1", args.test_images)
    args.memory = args.memory or "3GiB"
    parse_size(args.memory, "--memory")
    print(f"kaggle-kit demo: running kernels/streaming-demo under a {args.memory} emulated kernel ...", flush=True)
    outcome = run_streaming_demo(args.out, n_test=args.test_images, memory=args.memory)
    report, result = outcome.report, outcome.result
    if not report.ok:
        print(f"kaggle-kit demo: the kernel failed: {report.summary()}", file=sys.stderr)
        return report.exit_code or 1
    print(f"submission:    {outcome.submission} ({result['done']} test images, {len(result['skipped'])} skipped)")
    print(f"test accuracy: {result['test_accuracy']:.3f}")
    print(f"peak memory:   {format_size(report.peak_memory_bytes)} of {args.memory} (whole process tree)")
    print(f"time used:     {report.elapsed_s:.1f}s (prediction {result['seconds']:.1f}s in {result['chunks']} chunks)")
    print(f"output files:  {report.output_files} of {report.limits.max_files}")
    return 0


def _imaterialist_demo(args: argparse.Namespace) -> int:
    from kaggle_kit.limits import format_size
    from kaggle_kit.local.demo import run_imaterialist_demo

    memory = args.memory or "6GiB"
    KernelLimits().with_overrides(memory=memory, time=args.first_time, names=("--memory", "--first-time", ""))
    print(
        f"kaggle-kit demo: iMaterialist-2019 kernel on synthetic data, {memory} RAM; first run limited to "
        f"{args.first_time} ...",
        flush=True,
    )

    def show(i: int, log_path: Path, report, status) -> None:  # each run as it starts and ends: minutes each
        if report is None:
            print(f"run {i}:         running; its log: {log_path}", flush=True)
            return
        said = "status none" if status is None else f"status {status.status} ({status.where()})"
        print(
            f"run {i}:         {report.verdict}, {report.elapsed_s:.1f}s, peak memory "
            f"{format_size(report.peak_memory_bytes)}, {said}; picture: {Path(report.root) / 'run-report.png'}",
            flush=True,
        )

    out = run_imaterialist_demo(args.out, memory=memory, first_time=args.first_time, on_run=show)
    if not out.scores:
        print(f"kaggle-kit demo: the kernel did not finish; see {', '.join(map(str, out.logs))}", file=sys.stderr)
        return 1
    last = out.runs[-1]
    print(f"submission:    {out.submission} ({out.submitted_images} of {out.test_images} test images)")
    print(f"model:         {out.model} (predict from it anywhere: docs/imaterialist.md)")
    for reading, (model, baseline) in out.scores.items():  # "category/class": the per-class average (docs)
        print(f"score ({reading}):{' ' * (15 - len(reading))}{model:.4f} (trivial baseline {baseline:.4f})")
    print(f"peak memory:   {format_size(max(r.peak_memory_bytes for r in out.runs))} of {memory}")
    print(f"time used:     {sum(r.elapsed_s for r in out.runs):.1f}s in {len(out.runs)} runs")
    print(f"output files:  {last.output_files} of {last.limits.max_files}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from kaggle_kit.imaterialist.synth import PROFILES, make_dataset

    if args.train < 1 or args.test < 1:
        raise UsageError(f"--train {args.train} / --test {args.test}: need at least 1 image each", None)
    if args.classes:
        if Path(args.dest).exists() and any(Path(args.dest).iterdir()):
            raise UsageError(f"{args.dest} is not empty; give a new folder", args.dest)
        from kaggle_kit.vision.synthetic import make_class_folders

        make_class_folders(args.dest, args.train, args.test, seed=args.seed)
        print(f"kaggle-kit synth: {args.train} training images in {args.dest}/train/<red|blue>/ and {args.test} "
              f"test images in {args.dest}/test/")  # fmt: skip
        return 0
    low, high = PROFILES[args.profile]
    min_size, max_size = args.min_size or min(low, args.max_size or low), args.max_size or max(high, args.min_size or 0)
    if min_size < 16 or max_size < min_size:
        raise UsageError(f"--min-size {min_size} / --max-size {max_size}: need 16 <= min <= max", None)
    dest = make_dataset(args.dest, args.train, args.test, min_size, max_size, seed=args.seed, profile=args.profile)
    print(f"kaggle-kit synth: {args.train} training and {args.test} test images ({args.profile}) in {dest}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from kaggle_kit.vision.clean import DEFAULT_MAX_PIXELS, clean_images

    if not Path(args.dir).is_dir():
        raise UsageError(f"{args.dir} is not a folder of images", args.dir)
    if args.max_pixels is not None and args.max_pixels < 1:
        raise UsageError(f"--max-pixels {args.max_pixels}: give a positive number of pixels, e.g. 89478485", None)
    report = clean_images(
        args.dir,
        quarantine=args.quarantine,
        dry_run=args.dry_run,
        delete=args.delete,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        workers=args.workers,
        report_path=args.report,
    )
    print(f"kaggle-kit clean: {report.summary()}" + (" (dry run: nothing changed)" if args.dry_run else ""))
    for entry in report.files[:20]:
        print(f"  {entry['path']}: {entry['problem']} ({entry['detail']}) -> {entry['action']}")
    if len(report.files) > 20:
        print(f"  ... {len(report.files) - 20} more in the report")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from kaggle_kit.atomic import atomic_open
    from kaggle_kit.imaterialist.convert import imat2018_to_frame

    columns = tuple(c.strip() for c in args.columns.split(","))
    if len(columns) != 3 or len(set(columns)) != 3 or not all(columns):
        raise UsageError(f"--columns {args.columns}: give three different names, e.g. image,url,labels", args.columns)
    frame = imat2018_to_frame(args.json, all_urls=args.all_urls, columns=columns)
    with atomic_open(Path(args.csv), "w") as f:
        frame.to_csv(f, index=False)
    labelled = (frame[columns[2]] != "").sum()
    no_url = frame[frame[columns[1]] == ""][columns[0]].tolist()
    print(f"kaggle-kit convert-imat2018: {len(frame)} images ({labelled} labelled) in {args.csv}")
    if no_url:  # kept (the image id is still useful), but never silently
        print(f"kaggle-kit convert-imat2018: {len(no_url)} image(s) have no URL (written with an empty one): "
              f"{', '.join(no_url[:5])}{' ...' if len(no_url) > 5 else ''}", file=sys.stderr)  # fmt: skip
    return 0


def _kernel_script(folder) -> object:
    from kaggle_kit.push.metadata import METADATA_NAME, load_metadata  # the one reader of kernel-metadata.json

    meta = folder / METADATA_NAME
    if not meta.is_file():
        raise UsageError(f"{folder} is a folder without kernel-metadata.json; pass the script itself", str(folder))
    code_file = load_metadata(folder).get("code_file")
    if not isinstance(code_file, str):
        code_file = None
    if not code_file or not (folder / code_file).is_file():
        raise UsageError(f"{meta}: code_file {code_file!r} does not exist in {folder}", str(meta))
    return folder / code_file
