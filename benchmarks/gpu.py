"""Benchmark for Kaggle's GPU kernel (two T4s): one command, one table, each ratio against a baseline of the same run.

    .venv/bin/python benchmarks/gpu.py              # on a GPU machine: under 8 minutes on one GPU
    .venv/bin/python benchmarks/gpu.py --smoke      # anywhere: the whole script on the CPU at tiny sizes, < 1 minute

1. Stage-1 training (the iMaterialist unet, ``imaterialist.training.segmenter``) images/s at 256 px: fp32 vs fp16
   (``train.precision.mixed_precision``). Target on a T4: fp16 >= 2x fp32.
2. Prediction on 512 px, 46-channel masks: ``get_preds`` vs ``kk.stream_predict`` images/s, and the GPU's busy share
   while stream_predict runs (``nvidia-smi`` utilisation, sampled every 0.2 s). Target: busy >= 85%.
3. ``kk.stream_predict`` on 1 vs 2 processes (torchrun): on two GPUs when there are two (target >= 1.8x), else
   both processes on one device, a correctness run whose ratio is no speed-up (marked so).
   Stage-1 training on 1 vs 2 ranks through the kit's own ``kk.launch_on_every_gpu`` and ``kk.distributed`` (fp16 on
   CUDA; target >= 1.7x on two GPUs; with --smoke, two CPU ranks on fake T4s: a correctness run).
4. JPEG decoding images/s for the 4-vCPU case: PIL with draft on the CPU vs ``torchvision.io.decode_jpeg`` on the GPU.
5. The peak RSS of this process and its children (sampled every 0.1 s).

`--smoke` runs all of it on the CPU at tiny sizes: the GPU rows say "n/a (no GPU)". The Markdown table goes to stdout
(for BENCHMARKS.md), the numbers to `--out` as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

SIZES = {  # (images, pixels) per measurement
    "full": {
        "train": (96, 256),
        "predict": (256, 512),
        "ranks": (256, 512),
        "jpeg": (256, 512),
        "bs": 16,
        "encoder": "resnet34",
    },
    "smoke": {"train": (20, 32), "predict": (8, 48), "ranks": (8, 48), "jpeg": (8, 64), "bs": 4, "encoder": "resnet18"},
}
RANK_SCRIPT = r"""
import json, os, sys, time
from pathlib import Path
import torch, torch.distributed as dist
if "RANK" in os.environ:
    backend = "nccl" if torch.cuda.device_count() >= int(os.environ["WORLD_SIZE"]) else "gloo"
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
sys.path.insert(0, {bench!r})
from gpu import predictor
import kaggle_kit as kk

cfg = json.loads({cfg!r})
images = sorted(Path(cfg["images"]).glob("*.png"))
learn = predictor(images, cfg["size"], cfg["bs"], cfg["device"])
start = time.perf_counter()
kk.stream_predict(learn, images, kk.ArraySink("preds.npy", dtype="float16"), progress=False, restart=True)
if not dist.is_initialized() or dist.get_rank() == 0:
    Path(cfg["out"]).write_text(json.dumps({{"seconds": time.perf_counter() - start}}))
if dist.is_initialized():
    dist.destroy_process_group()
"""


TRAIN_RANK_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
import kaggle_kit as kk
cfg = json.loads({cfg!r})
kk.launch_on_every_gpu(cfg["ranks"])
import fastai.vision.all  # the Learner as kernels have it (no_bar, no_logging, to_fp16)
import torch
from gpu import train_learner
learn = train_learner(cfg)
with kk.distributed(learn), learn.no_bar(), learn.no_logging():
    learn.fit(1, 1e-3)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    learn.fit(1, 1e-3)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
kk.rank_0_goes_on()
open(cfg["out"], "w").write(json.dumps({{"seconds": seconds, "images": len(learn.dls.train.items)}}))
"""


class PeakRss:
    """The peak RSS (bytes) of this process and its children, sampled in a thread."""

    def __init__(self, every_s: float = 0.1):
        self.peak, self.every_s, self._stop = 0, every_s, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(self.every_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


class GpuBusy:
    """The GPU's mean utilisation (%) while it runs, from nvidia-smi every 0.2 s; None without a GPU."""

    def __enter__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5)  # fmt: skip
                self.samples.append(float(out.stdout.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def share(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def predictor(images: list[Path], size: int, bs: int, device: str):
    """A seeded 46-channel unet over `images` at `size` px on `device`: what a submission is predicted with."""
    from fastai.vision.all import DataBlock, ImageBlock, MaskBlock, Resize
    from fastai.vision.learner import unet_learner
    from torchvision.models import resnet18

    torch.manual_seed(0)
    block = DataBlock((ImageBlock, MaskBlock(codes=["bg", "red", "blue"])), item_tfms=Resize(size),
                      get_y=lambda p: p.parent / "masks" / p.name)  # fmt: skip
    dls = block.dataloaders(images[: max(2 * bs, 8)], bs=bs, num_workers=0, device=torch.device(device))
    return unet_learner(dls, resnet18, pretrained=False, n_out=46)


def images_at(folder: Path, n: int, size: int) -> list[Path]:
    from kaggle_kit.vision.synthetic import make_colour_squares

    return make_colour_squares(folder, n, size=size, seed=0)


def train_learner(cfg: dict):
    """The stage-1 learner of `cfg` ({"folder", "n", "size", "bs", "device", "fp16", "encoder"}), data made once."""
    from kaggle_kit.imaterialist.synth import make_dataset
    from kaggle_kit.imaterialist.training import FashionData, segmenter
    from kaggle_kit.local.demo import DEMO_SETTINGS
    from kaggle_kit.train.precision import mixed_precision

    folder, size, device = Path(cfg["folder"]), cfg["size"], cfg["device"]
    if not folder.exists():
        make_dataset(folder, n_train=cfg["n"], n_test=1, seed=0, profile="easy", min_size=size, max_size=size)
    settings = {**DEMO_SETTINGS, "sizes": [size], "bs": cfg["bs"], "seed": 0, "draft_decode": True,
                "train_crop": None, "dice": "image", "focal_gamma": 0.0, "positive_weights": False,
                "decoder": "fastai", "fp16": False, "encoder_cut": None, "last_cross": True,
                "encoder": cfg["encoder"], "valid_pct": 0.1}  # fmt: skip
    learn, _ = segmenter(FashionData.read(folder), settings, None)
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"  # a rank's own GPU
    learn.dls.to(torch.device(device))
    learn.model.to(device)
    mixed_precision(learn, cfg["fp16"], cuda=device.startswith("cuda"))
    return learn


def train_rate(work: Path, n: int, size: int, bs: int, device: str, fp16: bool, encoder: str) -> float:
    """Stage-1 training images/s over one epoch (after one warm-up batch's epoch)."""
    learn = train_learner({"folder": str(work / "fashion"), "n": n, "size": size, "bs": bs, "device": device,
                           "fp16": fp16, "encoder": encoder})  # fmt: skip
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)  # warm-up: cuDNN's algorithm search, allocator
        _sync(device)
        start = time.perf_counter()
        learn.fit(1, 1e-3)
        _sync(device)
    return len(learn.dls.train.items) / (time.perf_counter() - start)


def predict_rates(work: Path, n: int, size: int, bs: int, device: str) -> dict:
    import kaggle_kit as kk

    images = images_at(work / "predict", n, size)
    learn = predictor(images, size, bs, device)
    with learn.no_bar():
        learn.get_preds(dl=learn.dls.test_dl(images[:bs]))  # warm-up
        _sync(device)
        start = time.perf_counter()
        learn.get_preds(dl=learn.dls.test_dl(images))
        _sync(device)
    get_preds = n / (time.perf_counter() - start)
    os.environ["KAGGLE_KIT_ROOT"] = str(work / "kernel")
    (work / "kernel/working").mkdir(parents=True, exist_ok=True)
    with GpuBusy() as busy:
        start = time.perf_counter()
        kk.stream_predict(learn, images, kk.ArraySink(work / "kernel/working/preds.npy", dtype="float16"),
                          progress=False, restart=True)  # fmt: skip
        _sync(device)
        stream = n / (time.perf_counter() - start)
    return {"get_preds": get_preds, "stream_predict": stream, "gpu_busy": busy.share}


def ranks_ratio(work: Path, n: int, size: int, bs: int, device: str) -> dict:
    images = images_at(work / "ranks-images", n, size)
    seconds = {}
    for ranks in (1, 2):
        root = work / f"ranks-{ranks}"
        (root / "working").mkdir(parents=True, exist_ok=True)
        cfg = {"images": str(images[0].parent), "size": size, "bs": bs, "device": device,
               "out": str(root / "result.json")}  # fmt: skip
        script = root / "predict.py"
        script.write_text(RANK_SCRIPT.format(bench=str(Path(__file__).parent), cfg=json.dumps(cfg)))
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
        env = {**os.environ, "KAGGLE_KIT_ROOT": str(root), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, *launcher, str(script)], cwd=root / "working", env=env, check=True,
                       capture_output=True, timeout=600)  # fmt: skip
        seconds[ranks] = json.loads((root / "result.json").read_text())["seconds"]
    two_gpus = device == "cuda" and torch.cuda.device_count() >= 2
    return {"one": n / seconds[1], "two": n / seconds[2], "two_gpus": two_gpus}


def train_ranks_ratio(work: Path, n: int, size: int, bs: int, device: str, encoder: str) -> dict:
    """Stage-1 training images/s on 1 and on 2 ranks, each launched as a kernel script launches itself."""
    train_learner({"folder": str(work / "fashion-ranks"), "n": n, "size": size, "bs": bs, "device": "cpu",
                   "fp16": False, "encoder": encoder})  # the data, made once before the ranks read it  # fmt: skip
    rates = {}
    for ranks in (1, 2):
        root = work / f"train-ranks-{ranks}"
        (root / "working").mkdir(parents=True, exist_ok=True)
        cfg = {
            "folder": str(work / "fashion-ranks"),
            "n": n,
            "size": size,
            "bs": bs,
            "device": device,
            "fp16": device == "cuda",
            "encoder": encoder,
            "ranks": ranks,
            "out": str(root / "result.json"),
        }
        script = root / "train.py"
        script.write_text(TRAIN_RANK_SCRIPT.format(bench=str(Path(__file__).parent), cfg=json.dumps(cfg)))
        env = {**os.environ, "KAGGLE_KIT_ROOT": str(root)}
        if device != "cuda":
            env.update(KAGGLE_KIT_FAKE_GPUS="Tesla T4:7.5,Tesla T4:7.5", KAGGLE_KIT_FAKE_ARCHS="sm_75")
        proc = subprocess.run([sys.executable, str(script)], cwd=root / "working", env=env, capture_output=True,
                              text=True, timeout=900)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"training on {ranks} rank(s) failed:\n{proc.stderr[-3000:]}")
        done = json.loads((root / "result.json").read_text())
        rates[ranks] = done["images"] / done["seconds"]
    return {"one": rates[1], "two": rates[2], "two_gpus": device == "cuda" and torch.cuda.device_count() >= 2}


def jpeg_rates(work: Path, n: int, size: int, device: str) -> dict:
    from PIL import Image

    folder = work / "jpeg"
    folder.mkdir(exist_ok=True)
    for i, png in enumerate(images_at(work / "jpeg-src", n, size)):
        Image.open(png).convert("RGB").save(folder / f"{i:04d}.jpg", quality=90)
    files = sorted(folder.glob("*.jpg"))
    start = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            image.draft("RGB", (size // 2, size // 2))
            image.convert("RGB").load()
    cpu = n / (time.perf_counter() - start)
    gpu = None
    if device == "cuda":
        from torchvision.io import decode_jpeg, read_file

        data = [read_file(str(p)) for p in files]
        decode_jpeg(data[:2], device="cuda")  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        decode_jpeg(data, device="cuda")
        torch.cuda.synchronize()
        gpu = n / (time.perf_counter() - start)
    return {"pil_draft_cpu": cpu, "decode_jpeg_gpu": gpu}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def table(r: dict, smoke: bool) -> str:
    def rate(v):
        return "n/a (no GPU)" if v is None else f"{v:.1f}"

    t, p, k, j, tk = r["train"], r["predict"], r["ranks"], r["jpeg"], r["train_ranks"]
    fp16 = None if t["fp16"] is None else t["fp16"] / t["fp32"]
    busy = "n/a (no GPU)" if p["gpu_busy"] is None else f"{100 * p['gpu_busy']:.0f}%"
    two = "" if k["two_gpus"] else " (one device: a correctness run, not a speed-up)"
    two_train = "" if tk["two_gpus"] else " (CPU ranks: a correctness run, not a speed-up)"
    rows = [
        ("stage-1 training img/s, fp32 / fp16", f"{t['fp32']:.1f} / {rate(t['fp16'])}",
         "n/a (no GPU)" if fp16 is None else f"{fp16:.2f}", ">= 2.0"),
        ("prediction img/s, get_preds / stream_predict", f"{p['get_preds']:.1f} / {p['stream_predict']:.1f}",
         f"{p['stream_predict'] / p['get_preds']:.2f}", ">= 1.0"),
        ("GPU busy while stream_predict runs", busy, "", ">= 85%"),
        ("stream_predict img/s, 1 / 2 processes" + two, f"{k['one']:.1f} / {k['two']:.1f}",
         f"{k['two'] / k['one']:.2f}", ">= 1.8 on 2 GPUs"),
        ("stage-1 training img/s, 1 / 2 ranks" + two_train, f"{tk['one']:.1f} / {tk['two']:.1f}",
         f"{tk['two'] / tk['one']:.2f}", ">= 1.7 on 2 GPUs"),
        ("JPEG decode img/s, PIL draft (CPU) / decode_jpeg (GPU)",
         f"{j['pil_draft_cpu']:.1f} / {rate(j['decode_jpeg_gpu'])}",
         "n/a (no GPU)" if j["decode_jpeg_gpu"] is None else f"{j['decode_jpeg_gpu'] / j['pil_draft_cpu']:.2f}", ""),
        ("peak RSS of the process tree", f"{r['peak_rss_bytes'] / 2**30:.2f} GiB", "", ""),
    ]  # fmt: skip
    head = f"`benchmarks/gpu.py{' --smoke' if smoke else ''}` on {r['machine']} ({r['seconds']:.0f} s)\n\n"
    lines = ["| measurement | value | ratio | target |", "|---|---|---|---|"]
    return head + "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the whole script on the CPU at tiny sizes")
    parser.add_argument("--out", default="gpu-benchmark.json", help="where the numbers go (JSON)")
    args = parser.parse_args(argv)
    import fastai.vision.all  # noqa: F401 - the Learner as kernels have it (no_bar, no_logging, to_fp16)

    sizes = SIZES["smoke" if args.smoke else "full"]
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if not args.smoke and device == "cpu":
        print("gpu.py: no CUDA GPU here; run it with --smoke on a CPU machine", file=sys.stderr)
        return 2
    started, rss = time.perf_counter(), PeakRss()
    bs = sizes["bs"]
    with tempfile.TemporaryDirectory(prefix="kk-gpu-bench-") as tmp:
        work = Path(tmp)
        encoder = sizes["encoder"]
        train = {"fp32": train_rate(work, *sizes["train"], bs, device, fp16=False, encoder=encoder)}
        train["fp16"] = train_rate(work, *sizes["train"], bs, device, True, encoder) if device == "cuda" else None
        result = {
            "train": train,
            "predict": predict_rates(work, *sizes["predict"], bs, device),
            "ranks": ranks_ratio(work, *sizes["ranks"], bs, device),
            "train_ranks": train_ranks_ratio(work, *sizes["train"], bs, device, encoder),
            "jpeg": jpeg_rates(work, *sizes["jpeg"], device),
        }
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    result.update(
        peak_rss_bytes=rss.stop(),
        seconds=time.perf_counter() - started,
        smoke=args.smoke,
        machine=f"{torch.cuda.device_count() if device == 'cuda' else 0} x {name}, {os.cpu_count()} CPUs",
    )
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(table(result, args.smoke))
    return 0


if __name__ == "__main__":
    sys.exit(main())
