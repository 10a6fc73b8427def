"""A picture of one emulated run against the kernel's limits: what a user of this package most wants to see.

Top: the process tree's memory over time (RSS as the watchdog sampled it; the exact peak, PSS where the watchdog
measured it, as a dot: PSS counts shared pages once, so it sits at or below the RSS curve) under the RAM limit, a
cross where the kernel was killed, with the moments the kit recorded while the kernel ran (``kaggle_kit.events``): every
checkpoint written (pruned ones too), every prediction commit, and a Deadline's stop. Bottom: time used against the
time limit, and output files against the file limit. A chain of runs (``kaggle-kit rehearse``) is drawn as one
lane per run on the chain's own time axis.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from kaggle_kit.atomic import atomic_write_bytes
from kaggle_kit.events import read_events
from kaggle_kit.local.report import EVENTS_NAME, OUT_OF_MEMORY, OUT_OF_TIME, RunReport

__all__ = ["plot_run", "plot_chain", "run_figure", "chain_figure", "run_events"]

GIB = 1024**3


def run_events(report: RunReport, started_at: float | None = None) -> dict[str, list[float]]:
    """Seconds from the run's start (`started_at`, default the report's) at which the kernel wrote a checkpoint,
    committed predictions or stopped training, as recorded in the events file beside the report."""
    start = report.started_at if started_at is None else started_at
    events: dict[str, list[float]] = {"checkpoint": [], "commit": [], "stop": []}
    for event in read_events(Path(report.root) / EVENTS_NAME):
        if event["kind"] in events:
            events[event["kind"]].append(round(event["at"] - start, 2))
    return {k: sorted(v) for k, v in events.items()}


def plot_run(report: RunReport, path: str | os.PathLike, started_at: float | None = None) -> Path:
    """Write the run's picture (PNG, ~50 KB) atomically to `path` and return it. `started_at`: the run's start (Unix
    time; default the report's) to place checkpoints, commits and stops."""
    return _save(run_figure(report, started_at), path)


def run_figure(report: RunReport, started_at: float | None = None):
    """The run's picture as a matplotlib figure (``plot_run`` saves it)."""
    plt = _pyplot()
    fig, (memory, time_ax, files_ax) = plt.subplots(3, 1, figsize=(9, 5.2), dpi=90,
                                                    gridspec_kw={"height_ratios": [4, 1, 1]})  # fmt: skip
    said = f"; kernel status {report.kernel_status}" if report.kernel_status else ""
    _memory_lane(memory, report, started_at, f"{Path(report.script).name}: {report.verdict}{said}")
    time_limit = report.limits.time_s or 1
    _bar(time_ax, report.elapsed_s, time_limit, f"time {report.elapsed_s:.0f} s of {time_limit:.0f} s")
    max_files = report.limits.max_files or 1
    _bar(files_ax, report.output_files, max_files, f"output files {report.output_files} of {max_files}")
    fig.tight_layout()
    return fig


def plot_chain(lanes: Sequence[tuple[str, RunReport]], path: str | os.PathLike) -> Path:
    """Write a chain of runs as one picture (PNG) atomically to `path`: one lane per run, titled by its label (e.g.
    "run 2: ok, needs-resume at stage/epoch/batch 0/3/1"), each its memory over time against the limit with its
    checkpoints, commits and stop, placed where it ran on the chain's time axis, so a user sees where each kernel
    ended and the next began."""
    return _save(chain_figure(lanes), path)


def chain_figure(lanes: Sequence[tuple[str, RunReport]]):
    """The chain's picture as a matplotlib figure (``plot_chain`` saves it). Lanes get lower as runs add up, so a
    long chain stays a picture one can scroll (about 1,300 pixels for 14 runs)."""
    plt = _pyplot()
    if not lanes:
        raise ValueError("plot_chain needs at least one run")
    lane_in = 1.9 if len(lanes) <= 6 else max(1.0, 11.4 / len(lanes))
    fig, axes = plt.subplots(len(lanes), 1, figsize=(9, lane_in * len(lanes) + 0.5), dpi=90, squeeze=False,
                             sharex=True)  # fmt: skip
    first = min(report.started_at for _label, report in lanes)
    end = max(report.started_at - first + max(report.elapsed_s, report.limits.time_s or 0) for _l, report in lanes)
    for ax, (label, report) in zip(axes[:, 0], lanes, strict=True):
        offset = report.started_at - first
        _memory_lane(ax, report, None, label, offset=offset, small=len(lanes) > 6)
        ax.axvline(offset + report.limits.time_s, color="black", lw=1, ls="--", alpha=0.6)
        ax.set_xlim(0, max(end, 1.0) * 1.02)
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel("seconds since the chain's first run started (dashed black: each run's time limit)")
    fig.tight_layout()
    return fig


def _memory_lane(memory, report: RunReport, started_at: float | None, title: str, offset: float = 0.0,
                 small: bool = False) -> None:  # fmt: skip
    """Draw one run's memory over time, its limit, exact peak, kill and recorded moments on the axes `memory`,
    `offset` seconds to the right (its place in a chain)."""
    limit = report.limits.memory_bytes
    timeline = list(report.memory_timeline)
    while len(timeline) > 1 and timeline[-1][1] == 0:  # the tree already gone: not a drop to 0 bytes
        timeline.pop()
    if timeline:
        seconds, used = zip(*timeline, strict=True)
        memory.plot([offset + s for s in seconds], [u / GIB for u in used], color="tab:blue", lw=1.2,
                    label="RSS of the process tree, sampled (pages the\nworkers share counted in each)")  # fmt: skip
    memory.axhline(limit / GIB, color="tab:red", ls="--", lw=1, label=f"limit {limit / GIB:.1f} GiB")
    peak_at = report.elapsed_s if report.peak_at_s is None else report.peak_at_s
    kind = "PSS" if report.exact_samples else "RSS"
    memory.scatter([offset + peak_at], [report.peak_memory_bytes / GIB], color="black", s=12, zorder=3,
                   label=f"peak {kind} {report.peak_memory_bytes / GIB:.2f} GiB, {peak_at:.0f} s into the run"
                   + ("\n(shared pages once: what the limit checks)" if kind == "PSS" else ""))  # fmt: skip
    if report.verdict in (OUT_OF_MEMORY, OUT_OF_TIME):
        killed = "killed at the RAM limit" if report.verdict == OUT_OF_MEMORY else "stopped at the time limit"
        memory.scatter([offset + report.elapsed_s], [limit / GIB], marker="X", color="tab:red", s=60, zorder=4,
                       label=f"{killed} at {report.elapsed_s:.0f} s")  # fmt: skip
    events = run_events(report, started_at)
    for kind, colour, style in (("checkpoint", "tab:green", "-"), ("commit", "tab:orange", "-"),
                                ("stop", "tab:red", ":")):  # fmt: skip
        for i, at in enumerate(events[kind]):
            label = f"{kind} ({len(events[kind])})" if i == 0 else None
            memory.axvline(offset + at, color=colour, lw=0.8 if style == "-" else 1.4, ls=style, alpha=0.7,
                           label=label)  # fmt: skip
    memory.set_xlim(0, offset + max(report.elapsed_s, 1.0) * 1.03)
    highest = max([limit, report.peak_memory_bytes, *(u for _s, u in timeline)])
    memory.set_ylim(0, highest / GIB * 1.12)
    memory.set_ylabel("GiB")
    memory.set_xlabel("seconds since start")
    memory.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6 if small else 7, borderaxespad=0)
    wrapped = "\n".join(textwrap.wrap(title, 100, break_on_hyphens=False))  # never cut: a lane's title is its story
    memory.set_title(wrapped, fontsize=8 if small else 9, loc="left")


def _bar(ax, used: float, limit: float, text: str) -> None:
    share = used / limit
    ax.barh([0], [min(share, 1.0)], color="tab:red" if share >= 0.9 else "tab:blue", height=0.6)
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.set_xticks([0, 0.5, 0.9, 1.0], ["0", "50%", "90%", "limit"], fontsize=7)
    ax.text(0.01, 0, f"{text} ({share:.0%})", va="center", fontsize=8, color="black")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
