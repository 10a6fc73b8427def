"""What the kernel asked for and what it was given: the GPUs a kernel got, checked when it starts.

Kaggle substitutes hardware without a word: a push without `machine_shape` got a P100 whose sm_60 the image's torch
cannot run (kaggle-cli #1156), a TPU request gets the CPU image (#1197). A bundle records what its metadata asked for
(KAGGLE_KIT_ASKED: "gpu NvidiaTeslaT4", "gpu", "tpu TpuV5E8" or "none"). ``check_accelerator`` compares it with the
GPUs the machine has (``nvidia-smi``: name and compute capability; CUDA is never initialised, so the kernel can still
fork DataLoader workers or re-launch itself on several processes) and with the architectures this torch has kernels
for. It prints one line, stamps it on every status the kernel writes after it (``KernelStatus.accelerator``) and,
when a GPU was asked for and none that torch can run was given, stops the kernel at once: no 9-hour run on the CPU
by mistake. KAGGLE_KIT_FAKE_GPUS fakes the granted GPUs ("Tesla T4:7.5,Tesla T4:7.5"; empty: none) and
KAGGLE_KIT_FAKE_ARCHS this torch's architectures ("sm_75 sm_80"), so all of it runs on a CPU machine; the local
Kaggle grants a GPU push two T4s this way.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kaggle_kit.errors import KaggleKitError

__all__ = [
    "Gpu", "AcceleratorCheck", "AcceleratorError", "check_accelerator", "granted_gpus", "torch_archs", "asked_for",
    "ASKED_ENV", "ACCELERATOR_ENV", "FAKE_GPUS_ENV", "FAKE_ARCHS_ENV", "T4_X2",
]  # fmt: skip

ASKED_ENV = "KAGGLE_KIT_ASKED"  # what the pushed metadata asked for; set by the bundle
ACCELERATOR_ENV = "KAGGLE_KIT_ACCELERATOR"  # the check's line, stamped on every status written after it
FAKE_GPUS_ENV = "KAGGLE_KIT_FAKE_GPUS"
FAKE_ARCHS_ENV = "KAGGLE_KIT_FAKE_ARCHS"
T4_X2 = "Tesla T4:7.5,Tesla T4:7.5"  # what Kaggle's "GPU T4 x2" machine has
_SHAPES = {"NvidiaTeslaT4": "GPU T4 x2", "NvidiaTeslaP100": "GPU P100", "NvidiaL4": "GPU L4", "NvidiaL4X1": "GPU L4",
           "TpuV5E8": "TPU v5e-8"}  # fmt: skip


class AcceleratorError(KaggleKitError):
    """A GPU was asked for and the kernel got none that this torch can run."""


@dataclass(frozen=True)
class Gpu:
    """One GPU as the machine reports it: its `name` and compute `capability` (major, minor)."""

    name: str
    capability: tuple[int, int]

    @property
    def arch(self) -> str:
        """The CUDA architecture torch compiles kernels for, e.g. "sm_75" for a T4."""
        return f"sm_{self.capability[0]}{self.capability[1]}"


@dataclass(frozen=True)
class AcceleratorCheck:
    """The outcome of ``check_accelerator``: what was `asked` ("gpu NvidiaTeslaT4", "none"; None: unknown, not a
    bundle), the `gpus` the machine has, those this torch can run (`usable`), the one `line` the log and the status
    get, and the `problem` that stops the kernel (None: none)."""

    asked: str | None
    gpus: list[Gpu]
    usable: list[Gpu]
    line: str
    problem: str | None


def asked_for(meta: Mapping[str, object]) -> str:
    """What kernel-metadata.json `meta` asks for, as KAGGLE_KIT_ASKED says it: "gpu <shape>", "gpu", "tpu <shape>" or
    "none"."""
    shape = str(meta.get("machine_shape") or "")
    if shape.startswith("Tpu"):
        return f"tpu {shape}"
    if shape.startswith("Nvidia"):
        return f"gpu {shape}"
    return "gpu" if meta.get("enable_gpu") is True else "none"


def granted_gpus(environ: Mapping[str, str] | None = None) -> list[Gpu]:
    """The machine's GPUs from ``nvidia-smi`` (no CUDA initialised; none when it is missing or fails), or the fake
    list in KAGGLE_KIT_FAKE_GPUS ("name:major.minor,..."; empty: none)."""
    env = os.environ if environ is None else environ
    fake = env.get(FAKE_GPUS_ENV)
    if fake is not None:
        rows = [tuple(item.rsplit(":", 1)) for item in fake.split(",") if item.strip()]
        if any(len(row) != 2 for row in rows):
            raise KaggleKitError(f"{FAKE_GPUS_ENV}={fake!r}: give each GPU as name:capability, e.g. "
                                 f"{T4_X2!r}; empty for none", fake)  # fmt: skip
    else:
        try:
            done = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return []
        if done.returncode != 0:
            return []
        rows = [tuple(line.rsplit(",", 1)) for line in done.stdout.splitlines() if "," in line]
    gpus = []
    for name, capability in rows:
        major, _, minor = capability.strip().partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise KaggleKitError(f"GPU {name.strip()!r}: compute capability {capability.strip()!r} is not like 7.5",
                                 capability)  # fmt: skip
        gpus.append(Gpu(name.strip(), (int(major), int(minor))))
    return gpus


def torch_archs(environ: Mapping[str, str] | None = None) -> set[str]:
    """The CUDA architectures this torch has kernels for ("sm_75", ...; none for a CPU build), read from the build
    without touching a device, or KAGGLE_KIT_FAKE_ARCHS."""
    env = os.environ if environ is None else environ
    if env.get(FAKE_ARCHS_ENV) is not None:
        return set(env[FAKE_ARCHS_ENV].split())
    import torch

    flags = torch._C._cuda_getArchFlags() if hasattr(torch._C, "_cuda_getArchFlags") else None
    return set(flags.split()) if flags else set()


def check_accelerator(*, stop: bool = True, environ: Mapping[str, str] | None = None,
                      say: Callable[[str], None] = print) -> AcceleratorCheck:  # fmt: skip
    """Compare what the kernel asked for with what it got (see the module docstring): say one line, stamp it on the
    kernel's statuses from now on, and raise ``AcceleratorError`` (one line) when a GPU was asked for and none this
    torch can run was given, unless `stop` is False (run on what is there)."""
    env = os.environ if environ is None else environ
    kind, _, shape = (env.get(ASKED_ENV) or "").strip().partition(" ")
    asked = f"{kind.lower()} {shape}".strip() or None  # "GPU" as well as "gpu"
    gpus = granted_gpus(env)
    archs = torch_archs(env) if gpus else set()
    usable = [g for g in gpus if g.arch in archs]
    got = _describe(gpus)
    unusable = [g for g in gpus if g not in usable]
    if unusable:
        known = " ".join(sorted(archs, key=lambda a: int(a[3:]))) or "no GPU"
        got += f", which this torch cannot run (it has kernels for {known})"
    line = f"asked {_asked_text(asked)}, got {got}" if asked else f"got {got}"
    problem = None
    if asked and asked.startswith("gpu") and not usable:
        problem = (
            f"accelerator: {line}: stopped before any work (a session on what torch cannot use is spent for "
            "nothing); push again (Kaggle may give what was asked next time; ask for machine_shape NvidiaTeslaT4 "
            "if the metadata did not), or let the kernel go on with what is there"
        )
    if env is os.environ:
        os.environ[ACCELERATOR_ENV] = line
    if env.get("RANK", "0") == "0":  # once per kernel: rank 0 of a launch speaks for every rank
        say(f"kaggle-kit: accelerator: {line}")
    check = AcceleratorCheck(asked, gpus, usable, line, problem)
    if problem and stop:
        raise AcceleratorError(problem, line)
    return check


def _asked_text(asked: str) -> str:
    kind, _, shape = asked.partition(" ")
    if kind == "none":
        return "no accelerator"
    return _SHAPES.get(shape, shape) if shape else kind.upper()


def _describe(gpus: list[Gpu]) -> str:
    if not gpus:
        return "no GPU"
    kinds: dict[tuple[str, str], int] = {}
    for gpu in gpus:
        kinds[(gpu.name, gpu.arch)] = kinds.get((gpu.name, gpu.arch), 0) + 1
    return " and ".join(f"{n} x {name} ({arch})" for (name, arch), n in kinds.items())
