"""Shared fixtures: environment hygiene, an injectable clock, odd paths, and kernels run under the emulator."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from kaggle_kit.limits import KernelLimits
from kaggle_kit.local.emulate import run_local
from kaggle_kit.local.report import RunReport


@pytest.fixture(autouse=True)
def _restore_environ():
    """Tests may set KAGGLE_KIT_* / KAGGLE_* variables; each test starts and ends with the same environment."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith(("KAGGLE_KIT_", "KAGGLE_KERNEL_"))]:
        del os.environ[key]
    yield
    os.environ.clear()
    os.environ.update(saved)


class FakeClock:
    """A Unix-time clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def weird_path(tmp_path: Path) -> Path:
    """A directory whose name has spaces, quotes, a semicolon and non-ASCII letters."""
    path = tmp_path / "my kernels; 'quoted' \"twice\" äöü 日本"
    path.mkdir()
    return path


@dataclass
class KernelRun:
    report: RunReport
    stdout: str
    stderr: str

    def explain(self) -> str:
        """What to show when an assertion about this run fails."""
        return f"{self.report.summary()}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


@pytest.fixture
def run_kernel(tmp_path: Path):
    """Run a kernel script (source text or a path) under the emulator with the given limits.

    ``run_kernel(source, memory="1GiB", time="5s", max_files=10, inputs={...}, working=..., env={...})``
    """
    counter = iter(range(1000))

    def run(
        script: str | Path,
        *,
        memory: str | int | None = None,
        time: str | float | None = None,
        max_files: int | None = None,
        name: str = "kernel",
        **kwargs,
    ) -> KernelRun:
        n = next(counter)
        if isinstance(script, str):
            path = tmp_path / f"{name}-{n}.py"
            path.write_text(textwrap.dedent(script))
        else:
            path = script
        limits = KernelLimits().with_overrides(memory=memory, time=time, max_files=max_files)
        out, err = tmp_path / f"{name}-{n}.out", tmp_path / f"{name}-{n}.err"
        kwargs.setdefault("root", tmp_path / f"sandbox-{name}-{n}")
        with out.open("w") as stdout, err.open("w") as stderr:
            report = run_local(path, limits=limits, stdout=stdout, stderr=stderr, **kwargs)
        return KernelRun(report, out.read_text(), err.read_text())

    return run


# --- tiny real fastai learners on synthetic images -------------------------------------------------------------


def make_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> list[Path]:
    """`n` synthetic PNGs with masks (see kaggle_kit.vision.synthetic)."""
    from kaggle_kit.vision.synthetic import make_colour_squares

    return make_colour_squares(folder, n, size=size, seed=seed)


def make_class_folders(data: Path, n_train: int, n_test: int) -> list[Path]:
    """A classification dataset as Kagglers get it: data/train/<label>/*.png (`n_train`) and data/test/*.png; returns
    the test images."""
    from kaggle_kit.vision.synthetic import make_class_folders as make

    return make(data, n_train, n_test)


def make_learner(
    kind: str,
    paths: list[Path],
    bs: int = 4,
    seed: int = 0,
    augment: bool = False,
    num_workers: int = 0,
    size: int = 32,
):
    """A real fastai learner with random weights: "single" / "multi" label classifier or "seg" (segmentation).

    `augment` adds random item (crop) and batch (flip) transforms, so training consumes every random generator.
    """
    from fastai.vision.all import (
        BCEWithLogitsLossFlat,
        CategoryBlock,
        DataBlock,
        Flip,
        ImageBlock,
        MaskBlock,
        MultiCategoryBlock,
        RandomResizedCrop,
        Resize,
        set_seed,
        vision_learner,
    )
    from fastai.vision.learner import unet_learner
    from torchvision.models import resnet18

    set_seed(seed)  # python, numpy and torch: the DataLoader's own generator is seeded from python's
    if kind == "single":
        tfms = (
            {"item_tfms": RandomResizedCrop(32, min_scale=0.5), "batch_tfms": Flip()}
            if augment
            else {"item_tfms": Resize(32)}
        )
        block = DataBlock((ImageBlock, CategoryBlock), get_y=lambda p: p.name.split("_")[1], **tfms)
        return vision_learner(block.dataloaders(paths, bs=bs, num_workers=num_workers), resnet18, pretrained=False)
    if kind == "tiny":  # a small CNN with batch norm and dropout: checkpoints of a few KB, every RNG exercised
        from fastai.vision.all import CrossEntropyLossFlat, Learner, accuracy, nn

        tfms = (
            {"item_tfms": RandomResizedCrop(size, min_scale=0.5), "batch_tfms": Flip()}
            if augment
            else {"item_tfms": Resize(size)}
        )
        block = DataBlock((ImageBlock, CategoryBlock), get_y=lambda p: p.name.split("_")[1], **tfms)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(8, 2),
        )
        return Learner(
            block.dataloaders(paths, bs=bs, num_workers=num_workers),
            model,
            loss_func=CrossEntropyLossFlat(),
            metrics=accuracy,
        )
    if kind == "multi":
        block = DataBlock((ImageBlock, MultiCategoryBlock), get_y=lambda p: p.stem.split("_")[1:], item_tfms=Resize(32))
        return vision_learner(
            block.dataloaders(paths, bs=bs, num_workers=0),
            resnet18,
            pretrained=False,
            loss_func=BCEWithLogitsLossFlat(),
        )
    if kind == "seg":
        block = DataBlock(
            (ImageBlock, MaskBlock(codes=["bg", "red", "blue"])),
            get_y=lambda p: p.parent / "masks" / p.name,
            item_tfms=Resize(32),
        )
        return unet_learner(block.dataloaders(paths, bs=bs, num_workers=0), resnet18, pretrained=False, n_out=3)
    raise ValueError(kind)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[Path]:
    return make_images(tmp_path_factory.mktemp("images"), 24)


@pytest.fixture(scope="session")
def learners(images):
    cache = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = make_learner(kind, images[:16])
        return cache[kind]

    return get


@pytest.fixture
def kernel_here(tmp_path, monkeypatch):
    """A local Kernel whose working dir is tmp_path/working (the current directory)."""
    from kaggle_kit.kernel import Kernel

    (tmp_path / "working").mkdir()
    monkeypatch.chdir(tmp_path / "working")
    return Kernel(tmp_path)


@pytest.fixture
def local_kaggle(tmp_path, monkeypatch):
    """The official kaggle client pointed at a LocalKaggle on loopback that really runs what is pushed (3 GB, 60 s
    per run; the iMaterialist competition attached as an empty folder). Scripted answers: ``script_answer``."""
    from kaggle_kit.rehearsal.platform import Platform
    from kaggle_kit.rehearsal.service import LocalKaggle

    competition = tmp_path / "empty-competition"
    competition.mkdir()
    service = LocalKaggle(tmp_path / "local-kaggle", {"imaterialist-fashion-2019-FGVC6": competition},
                          platform=Platform(memory_bytes=3 * 10**9, time_s=60.0, grace_s=2.0)).start()  # fmt: skip
    for key, value in service.client_env("tester", tmp_path / "client-home").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KAGGLE_KEY", "s3cr3t-key-0123456789")  # what tests look for in every request body
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    yield service
    service.stop()


def start_kernel_process(script: Path, root: Path, env: dict | None = None):
    """Start `script` as a kernel in the sandbox `root` (cwd root/working) in its own process group, for tests that
    kill it with SIGKILL at a moment of their choosing; stdout and stderr go to one pipe."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, str(script)], cwd=root / "working",
                            env={**os.environ, "KAGGLE_KIT_ROOT": str(root), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
