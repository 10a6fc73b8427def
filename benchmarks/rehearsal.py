"""Rehearsal of the iMaterialist test set at full resolution: predict + submission under `run-local --memory 17GB`.

N synthetic test photos (JPEG) with long sides from 500 to 5,000 px (median about 2,000) go through the kernel's
prediction and submission path (stage-1 unet, small encoder, `stream_predict` into a `CsvSink` of
`SubmissionRows`) in an emulated kernel, twice in one run: the previous path (full JPEG decode, every instance
upscaled to the photo's size before encoding) and today's (draft decode, runs encoded from the model-size mask).
Today's path also runs on the first 200 photos, for the memory ratio. Each kernel reports its peak memory (whole
process tree), its time, the writer thread's busy time (rows/RLE + commits) and how long the prediction loop waited
for it, and the time of decode alone and forward alone on the same photos.

    .venv/bin/python benchmarks/rehearsal.py            # 3,200 photos (the seed's test set); about an hour on 2 cores
    .venv/bin/python benchmarks/rehearsal.py --n 200    # a quick version
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from kaggle_kit.imaterialist.synth import make_dataset
from kaggle_kit.limits import KernelLimits, format_size
from kaggle_kit.local.emulate import run_local

KERNEL = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    import numpy as np
    import torch
    from fastai.vision.all import set_seed
    from scipy import ndimage
    import kaggle_kit as kk
    from kaggle_kit.imaterialist import read_labels, read_train_csv
    from kaggle_kit.imaterialist.masks import resize_nearest
    from kaggle_kit.imaterialist.stage1 import stage1_dataloaders, stage1_learner
    from kaggle_kit.imaterialist.stage2 import mask_box
    from kaggle_kit.imaterialist.submission import COLUMNS, SubmissionRows
    from kaggle_kit.vision.rle import rle_encode

    path_name, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    today = path_name == "today"
    data = kk.Kernel.current().find_input("fashion")
    labels = read_labels(data / "label_descriptions.json")
    train = read_train_csv(data / "train.csv", labels)
    set_seed(0)
    dls = stage1_dataloaders(data / "train", train, labels.category_ids, size, 4, Path("../cache"), draft=today)
    learn = stage1_learner(dls, len(labels.category_ids), "resnet18")
    with torch.no_grad():  # random weights, but sparse like a trained model: a few confident blobs per image
        learn.model[-2][0].bias.fill_(-4.0)
    tests = sorted((data / "test").glob("*.jpg"))[:n]


    class PreviousRows(SubmissionRows):
        """The previous path: each instance upscaled to a full-size mask, boxed and encoded pixel by pixel."""

        def image_rows(self, path, prob):
            from PIL import Image
            with Image.open(path) as opened:
                width, height = opened.size
            rows = []
            for channel, category in enumerate(self.category_ids):
                found, k = ndimage.label(prob[channel] > self.post.default.threshold)
                sizes = np.bincount(found.ravel(), minlength=k + 1)
                for label in range(1, k + 1):
                    if sizes[label] >= self.post.default.min_area * prob.shape[1] * prob.shape[2]:
                        mask = resize_nearest(found == label, height, width)
                        mask_box(mask)
                        rows.append((path.name, rle_encode(mask), str(category)))
            return rows or [(path.name, "1 1", "23")]


    class Timed:
        def __init__(self, rows):
            self.rows, self.seconds = rows, 0.0
        def signature(self):
            return {"rows": type(self.rows).__name__}
        def __call__(self, items, probs):
            started = time.perf_counter()
            try:
                return self.rows(items, probs)
            finally:
                self.seconds += time.perf_counter() - started


    rows = Timed((SubmissionRows if today else PreviousRows)(labels.category_ids, None, threshold=0.5,
                                                            min_area=0.0005))
    started = time.perf_counter()
    summary = kk.stream_predict(learn, tests, kk.CsvSink("submission.csv", rows, COLUMNS), progress=False)
    total = time.perf_counter() - started

    dl = learn.dls.test_dl(tests)  # the same photos: decode (+ resize, to tensor) alone, then forward alone
    started = time.perf_counter()
    for _batch in dl:
        pass
    decode = time.perf_counter() - started
    learn.model.eval()
    x = torch.randn(8, 3, size, size)
    batches = min(50, -(-len(tests) // 8))  # the model's time per batch is constant: time 50 batches, scale up
    started = time.perf_counter()
    with torch.no_grad():
        for _ in range(batches):
            learn.model(x)
    forward = (time.perf_counter() - started) * (-(-len(tests) // 8)) / batches
    Path("../result.json").write_text(json.dumps({
        "n": len(tests), "total_s": total, "decode_s": decode, "forward_s": forward, "rows_s": rows.seconds,
        "writer_s": summary.writer_seconds, "writer_waited_s": summary.writer_waited_seconds,
        "done": summary.done, "chunks": summary.chunks}))
''')


def make_photos(folder: Path, n: int, seed: int = 0) -> None:
    """`n` JPEGs, portrait 2:3, long side log-normal around 2,000 px clipped to 500-5,000 (kept between runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    longs = np.clip(np.exp(rng.normal(np.log(2000), 0.5, n)), 500, 5000).astype(int)
    for i, long_side in enumerate(longs):
        path = folder / f"{i:05d}.jpg"
        if path.exists():
            continue
        width, height = int(long_side * 2 / 3), int(long_side)
        coarse = (rng.random((max(2, height // 64), max(2, width // 64), 3)) * 255).astype(np.uint8)
        Image.fromarray(coarse).resize((width, height), Image.BILINEAR).save(path, quality=88)


def rehearse(data: Path, path_name: str, n: int, size: int, memory: str, out: Path) -> dict:
    script = out / "rehearsal_kernel.py"
    script.write_text(KERNEL)
    root = out / f"run-{path_name}-{n}"
    with open(out / f"{path_name}-{n}.log", "w") as log:
        report = run_local(script, inputs={"fashion": data}, limits=KernelLimits().with_overrides(memory=memory),
                           args=[path_name, str(n), str(size)], root=root, stdout=log, stderr=log)  # fmt: skip
    if not report.ok:
        raise SystemExit(f"the {path_name} kernel failed: {report.summary()}; see {out / f'{path_name}-{n}.log'}")
    return {**json.loads((root / "result.json").read_text()), "peak": report.peak_memory_bytes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3200, help="test photos")
    parser.add_argument("--size", type=int, default=128, help="the model's input size, px")
    parser.add_argument("--memory", default="17GB", help="the emulated kernel's RAM limit")
    parser.add_argument("--data", default=None, help="where the photos are made and kept (default: a temp dir)")
    args = parser.parse_args()
    out = Path(args.data or tempfile.mkdtemp(prefix="kaggle-kit-rehearsal-"))
    data = out / "fashion"
    if not (data / "train.csv").exists():
        make_dataset(data, n_train=20, n_test=1, seed=0)
        for old in (data / "test").glob("*.jpg"):
            old.unlink()
    make_photos(data / "test", args.n)
    small = min(200, args.n)
    results = {
        "previous": rehearse(data, "previous", args.n, args.size, args.memory, out),
        "today": rehearse(data, "today", args.n, args.size, args.memory, out),
    }
    base = rehearse(data, "today", small, args.size, args.memory, out)
    print(f"Machine: {platform.machine()}; {args.n} photos (long side 500-5,000 px, median ~2,000), unet resnet18 "
          f"at {args.size} px, under run-local --memory {args.memory}\n")  # fmt: skip
    print("| path | peak memory | total | per photo | decode alone | forward alone | writer busy (rows) | "
          "loop waited for writer | total / (decode + forward) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {format_size(r['peak'])} | {r['total_s']:.0f} s | {r['total_s'] / r['n'] * 1e3:.0f} ms | "
              f"{r['decode_s']:.0f} s | {r['forward_s']:.0f} s | {r['writer_s']:.0f} s ({r['rows_s']:.0f} s) | "
              f"{r['writer_waited_s']:.1f} s | {r['total_s'] / (r['decode_s'] + r['forward_s']):.2f}x |")  # fmt: skip
    print(
        f"\npeak memory, today's path: {format_size(results['today']['peak'])} for {args.n} photos, "
        f"{format_size(base['peak'])} for {small}: {results['today']['peak'] / base['peak']:.2f}x"
    )


if __name__ == "__main__":
    main()
