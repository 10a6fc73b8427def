"""Benchmark: kk.stream_predict vs fastai's get_preds on the same unet learner and the same synthetic images.

Each measurement runs in its own emulated kernel (a subprocess whose process tree the emulator samples every 20 ms):
  * peak RSS of the process tree at N and 16N test images, get_preds vs stream_predict (ArraySink, float16);
  * throughput (images/s) of get_preds, stream_predict, and the pure-forward limit (the model alone on the same
    batches, decoded beforehand); the ratio to the pure forward also from `--repeats` interleaved pairs at 4N, best of
    each (a shared machine slows some runs, never speeds one up);
  * output files: stream_predict's vs fastai's own way out, get_preds(save_preds=...), one file per batch.

    .venv/bin/python benchmarks/predict.py [--n 100] [--size 96] [--channels 47] [--bs 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import psutil
import torch

from kaggle_kit.limits import KernelLimits, format_size
from kaggle_kit.local.emulate import run_local
from kaggle_kit.local.supervise import Enforcement
from kaggle_kit.vision.synthetic import make_colour_squares

KERNEL = r"""
import json, sys, time
from pathlib import Path
import torch
from fastai.vision.all import SegmentationDataLoaders, unet_learner
from torchvision.models import resnet18
import kaggle_kit as kk

cfg = json.loads(sys.argv[1])
images = sorted(kk.Kernel.current().find_input("images").glob("*.png"))[: cfg["n"]]
codes = [str(i) for i in range(cfg["channels"])]
dls = SegmentationDataLoaders.from_label_func(images[0].parent, images[:32], lambda p: p.parent / "masks" / p.name,
                                              codes=codes, bs=cfg["bs"], num_workers=0)
torch.manual_seed(0)
learn = unet_learner(dls, resnet18, pretrained=False, n_out=cfg["channels"])
mode, out = cfg["mode"], {}
if mode == "forward":
    dl = learn.dls.test_dl(images)
    batches = [b[0] for b in dl]  # decoded beforehand: the model alone is timed
    learn.model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for xb in batches:
            learn.model(xb)
    out["seconds"] = time.perf_counter() - start
elif mode == "get_preds":
    start = time.perf_counter()
    with learn.no_bar():
        preds = learn.get_preds(dl=learn.dls.test_dl(images))[0]
    out["seconds"] = time.perf_counter() - start
    out["files"] = 0
elif mode == "save_preds":
    Path("preds").mkdir()
    with learn.no_bar():
        learn.get_preds(dl=learn.dls.test_dl(images), save_preds=Path("preds"), with_preds=False)
    out["files"] = len(list(Path("preds").iterdir()))
else:
    start = time.perf_counter()
    summary = kk.stream_predict(learn, images, kk.ArraySink("preds.npy", dtype="float16"), progress=False)
    out["seconds"] = time.perf_counter() - start
    out["files"] = len(summary.files)
    out["chunks"] = summary.chunks
Path("../result.json").write_text(json.dumps(out))
"""


def measure(script: Path, images: Path, root: Path, memory: str, **cfg) -> dict:
    report = run_local(
        script,
        inputs={"images": images},
        limits=KernelLimits().with_overrides(memory=memory),
        root=root,
        args=[json.dumps(cfg)],
        enforcement=Enforcement(memory_kind="rss", sample_every_s=0.02),
    )
    if not report.ok:
        return {"verdict": report.verdict, "peak": report.peak_memory_bytes}
    result = json.loads((root / "result.json").read_text())
    return {**result, "verdict": report.verdict, "peak": report.peak_memory_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="N: the small test set (the large one is 16N)")
    parser.add_argument("--size", type=int, default=96, help="image side, pixels")
    parser.add_argument("--channels", type=int, default=47, help="output channels (iMaterialist: 46 + background)")
    parser.add_argument("--bs", type=int, default=16)
    parser.add_argument("--memory", default="18GiB", help="the emulated kernels' RAM limit (protects this machine)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved stream/forward pairs at 4N (0: none)")
    args = parser.parse_args()
    if args.n < 32:
        parser.error("--n must be at least 32: the learner's DataLoaders are made from the first 32 images")

    work = Path(tempfile.mkdtemp(prefix="kk-bench-predict-"))
    images = work / "images"
    make_colour_squares(images, 16 * args.n, size=args.size)
    script = work / "kernel.py"
    script.write_text(KERNEL)
    common = {"channels": args.channels, "bs": args.bs}
    rows = {}
    for n in (args.n, 16 * args.n):
        for mode in ("get_preds", "stream", "forward"):
            rows[(mode, n)] = measure(script, images, work / f"{mode}-{n}", args.memory, mode=mode, n=n, **common)
            print(f"  {mode:10s} N={n:5d}: {rows[(mode, n)]}", file=sys.stderr, flush=True)
    saved = measure(script, images, work / "save_preds", args.memory, mode="save_preds", n=args.n, **common)
    best: dict[str, float] = {}
    for i in range(args.repeats):
        for mode in ("forward", "stream"):
            seconds = measure(script, images, work / f"{mode}-4n-{i}", args.memory, mode=mode, n=4 * args.n,
                              **common).get("seconds", float("inf"))  # fmt: skip
            best[mode] = min(best.get(mode, float("inf")), seconds)
            print(f"  {mode:10s} 4N={4 * args.n:5d} #{i}: {seconds:.1f} s", file=sys.stderr, flush=True)

    big, small = 16 * args.n, args.n

    def peak(mode: str, n: int) -> str:
        r = rows[(mode, n)]
        return format_size(r["peak"]) + ("" if r["verdict"] == "ok" else f" ({r['verdict']})")

    def rate(mode: str, n: int) -> float:
        return n / rows[(mode, n)]["seconds"] if "seconds" in rows[(mode, n)] else float("nan")

    def growth(mode: str) -> float:
        return rows[(mode, big)]["peak"] / rows[(mode, small)]["peak"]

    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, "
        f"{format_size(psutil.virtual_memory().total)} RAM, torch {torch.__version__}, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    print(
        f"Learner: fastai unet_learner(resnet18, pretrained=False, n_out={args.channels}); "
        f"{args.size}x{args.size} images, bs={args.bs}; N={small}, 16N={big}\n"
    )
    print("| measure | fastai get_preds | kk.stream_predict | ratio (stream / fastai) | target |")
    print("|---|---|---|---|---|")
    print(
        f"| peak RSS, N={small} | {peak('get_preds', small)} | {peak('stream', small)} | "
        f"{rows[('stream', small)]['peak'] / rows[('get_preds', small)]['peak']:.2f} | |"
    )
    print(
        f"| peak RSS, 16N={big} | {peak('get_preds', big)} | {peak('stream', big)} | "
        f"{rows[('stream', big)]['peak'] / rows[('get_preds', big)]['peak']:.2f} | |"
    )
    print(f"| peak growth 16N / N | {growth('get_preds'):.2f}x | {growth('stream'):.2f}x | | stream <= 1.15x |")
    print(
        f"| throughput, 16N (img/s) | {rate('get_preds', big):.1f} | {rate('stream', big):.1f} | "
        f"{rate('stream', big) / rate('get_preds', big):.2f} | >= 1.0 |"
    )
    print(
        f"| vs pure forward ({rate('forward', big):.1f} img/s), 16N | "
        f"{rate('get_preds', big) / rate('forward', big):.2f} | "
        f"{rate('stream', big) / rate('forward', big):.2f} | | stream >= 0.95 |"
    )
    if best:
        print(
            f"| vs pure forward, 4N={4 * small}, best of {args.repeats} interleaved "
            f"({4 * small / best['forward']:.1f} img/s) | | {best['forward'] / best['stream']:.2f} | | stream >= 0.95 |"
        )
    print(
        f"| output files, N={small} | {saved.get('files', '?')} (save_preds) | {rows[('stream', small)]['files']} "
        f"| | stream <= 3 |"
    )


if __name__ == "__main__":
    main()
