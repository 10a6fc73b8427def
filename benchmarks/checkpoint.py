"""Benchmark: what kk.Deadline's checkpoints cost on the iMaterialist-sized model (fastai unet, resnet34 encoder).

Prints the checkpoint size, write and resume (load + restore) times, the share of training time they take at the
default interval (every 30 minutes; target <= 2%), and the per-batch cost of the callback's bookkeeping, measured as
training time with Deadline (no save due) over training time without it, in the same run.

    .venv/bin/python benchmarks/checkpoint.py [--size 64] [--batches 12]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.vision.all import SegmentationDataLoaders, set_seed, unet_learner
from torchvision.models import resnet34

from kaggle_kit.kernel import Kernel
from kaggle_kit.limits import format_size
from kaggle_kit.train.checkpoint import CheckpointSaver
from kaggle_kit.train.deadline import Deadline
from kaggle_kit.train.state import capture_learner, capture_rng, restore_learner
from kaggle_kit.vision.synthetic import make_colour_squares

DEFAULT_EVERY_S = 30 * 60.0


class StopAfter(Callback):
    order = 70

    def __init__(self, n: int):
        self.n, self.seen, self.started = n, 0, 0.0

    def before_fit(self):
        self.seen = 0

    def before_batch(self):
        if self.training and self.seen == 1:
            self.started = time.perf_counter()  # the first batch warms up: time from the second

    def after_batch(self):
        if self.training:
            self.seen += 1
            if self.seen > self.n:
                self.elapsed = time.perf_counter() - self.started
                raise CancelFitException()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="training image side, pixels")
    parser.add_argument("--batches", type=int, default=12, help="timed training batches per variant")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kk-bench-ckpt-"))
    images = make_colour_squares(work / "images", 64, size=args.size)
    set_seed(0)
    dls = SegmentationDataLoaders.from_label_func(
        work / "images",
        images,
        lambda p: p.parent / "masks" / p.name,
        codes=[str(i) for i in range(47)],
        bs=4,
        num_workers=0,
    )
    learn = unet_learner(dls, resnet34, pretrained=False, n_out=47)
    kernel = Kernel(work, started_at=time.time())
    (work / "working").mkdir()

    train_s = {"without": [], "with": []}
    for _ in range(args.repeats):
        for variant in ("without", "with"):
            stop = StopAfter(args.batches)
            cbs = [stop] + ([Deadline(every=10**6, reserve=0, kernel=kernel)] if variant == "with" else [])
            with learn.no_bar(), learn.no_logging():
                learn.fit(100, 1e-3, cbs=cbs)
            train_s[variant].append(stop.elapsed / args.batches)
    batch_s = statistics.median(train_s["without"])
    bookkeeping = statistics.median(train_s["with"]) / batch_s

    saver = CheckpointSaver(work / "ckpts")
    save_s, load_s = [], []
    for step in range(args.repeats):
        start = time.perf_counter()
        state = {"stage": 0, "epoch": 0, "iteration": step, "learner": capture_learner(learn), "rng": capture_rng()}
        path = saver.save(state)
        save_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        loaded, _ = saver.load_latest()
        restore_learner(learn, loaded["learner"])
        load_s.append(time.perf_counter() - start)
    save, load = statistics.median(save_s), statistics.median(load_s)

    print(
        f"Machine: {platform.machine()}, {psutil.cpu_count()} CPUs, {format_size(psutil.virtual_memory().total)} "
        f"RAM, torch {torch.__version__}, device {'cuda' if torch.cuda.is_available() else 'cpu'}",
        file=sys.stdout,
    )
    print(f"Model: fastai unet_learner(resnet34, n_out=47), Adam; {args.size}px, bs=4; median of {args.repeats}\n")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| checkpoint size | {format_size(path.stat().st_size)} | |")
    print(f"| write (capture + torch.save + fsync + checksum) | {save:.2f} s | |")
    print(f"| resume (verify + load + restore) | {load:.2f} s | |")
    print(f"| overhead at the default interval (write / 30 min) | {100 * save / DEFAULT_EVERY_S:.3f}% | <= 2% |")
    print(
        f"| training batch without / with Deadline (no save due) | {batch_s:.3f} s / {batch_s * bookkeeping:.3f} s | |"
    )
    print(f"| per-batch bookkeeping, ratio with / without | {bookkeeping:.3f} | ~1.00 |")


if __name__ == "__main__":
    main()
