"""Pretrained weights with the internet off: make fastai's `pretrained=True` find a checkpoint attached as a dataset.

Competition kernels run offline, so torchvision cannot download ImageNet weights. What it does first is look in the
torch hub cache (``$TORCH_HOME/hub/checkpoints/<file name of the weights' URL>``, e.g. ``resnet34-b627a593.pth``);
a file there is used as if downloaded. `use_offline_weights` puts the attached file there, under that name, after
checking it: a file named the torchvision way (``<arch>-<8 hex>.pth``) must have a SHA-256 starting with those hex
digits (torchvision's own convention; torch does not check a cached file), and any file must load into `arch` with
every key and shape matching. Then ``vision_learner(dls, resnet34)`` / ``unet_learner`` with the default
``pretrained=True`` load it, freeze the body and normalise with ImageNet statistics, as the seeds' kernels do.

timm checkpoints (Hugging Face hub layout) are not handled here: the kernels use torchvision encoders.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from kaggle_kit.atomic import file_sha256
from kaggle_kit.errors import UsageError

__all__ = ["architecture", "use_offline_weights", "WeightsError", "expected_file_name"]

_HASHED = re.compile(r"^(?P<arch>.+)-(?P<prefix>[0-9a-f]{8,})\.(pth|pt)$")


class WeightsError(UsageError):
    """The attached weights are missing, corrupt or for another architecture; the message names the file."""


def architecture(arch: str, weights: str | os.PathLike | None) -> tuple[Callable, bool]:
    """(torchvision constructor, pretrained) for fastai's learners: with `weights` (a checkpoint file or the attached
    dataset folder holding it) the file is put where torchvision looks (``use_offline_weights``) and fastai loads it
    with ``pretrained=True``: body frozen, ImageNet normalisation; without, random init (nothing is downloaded)."""
    import torchvision.models as tvm

    try:
        build = getattr(tvm, arch)
    except AttributeError:
        raise WeightsError(f"unknown encoder {arch!r}; use a torchvision model name such as 'resnet34'", arch) from None
    if weights is None:
        return build, False
    use_offline_weights(weights, arch)
    return build, True


def expected_file_name(arch: str) -> str:
    """The file name torchvision looks for in the hub cache for `arch`'s default weights (e.g. resnet34 ->
    'resnet34-b627a593.pth')."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise WeightsError(f"unknown torchvision architecture {arch!r}", arch) from None
    return weights.url.rsplit("/", 1)[-1]


def use_offline_weights(source: str | os.PathLike, arch: str) -> Path:
    """Make `arch`'s pretrained weights available offline from `source`: a weights file, or a folder (an attached
    dataset) holding one named like torchvision's (``resnet34-b627a593.pth``) or ``<arch>.pth``. Returns the file
    now in the hub cache. Sets TORCH_HOME to a temp folder (not working/: it is not an output) unless already set.
    """
    import torch

    expected = expected_file_name(arch)
    source = Path(source)
    if source.is_dir():
        candidates = [source / expected, source / f"{arch}.pth", source / f"{arch}.pt"]
        found = [p for p in candidates if p.is_file()] or sorted(source.rglob(expected))
        if not found:
            raise WeightsError(f"{source}: no {expected} (or {arch}.pth) for pretrained {arch}; attach the "
                               f"torchvision checkpoint as a dataset", str(source))  # fmt: skip
        source = found[0]
    elif not source.is_file():
        raise WeightsError(f"{source}: not found (expected the torchvision checkpoint {expected})", str(source))
    _check(source, arch)
    os.environ.setdefault("TORCH_HOME", str(Path(tempfile.gettempdir()) / "kaggle-kit-torch-home"))
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    target = checkpoints / expected
    if not target.exists() or file_sha256(target) != file_sha256(source):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    return target


def _check(path: Path, arch: str) -> None:
    import torch
    import torchvision

    named = _HASHED.match(path.name)
    if named and named["arch"] == arch and not file_sha256(path).startswith(named["prefix"]):
        raise WeightsError(f"{path}: its SHA-256 does not start with {named['prefix']} as its name says: the file "
                           "is damaged or not the published checkpoint", str(path))  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise WeightsError(f"{path}: not a PyTorch state dict ({type(exc).__name__})", str(path)) from None
    model = torchvision.models.get_model(arch, weights=None)
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        inner = [where for where, found in _state_dicts(state) if found.keys() == wanted.keys()]
        if inner:
            raise WeightsError(f"{path}: not a plain state dict: its {arch} weights are under {inner[0]}; save "
                               "that part alone with torch.save and attach it", str(path))  # fmt: skip
        raise WeightsError(f"{path}: not a plain state dict, and no {arch} state dict is inside it; attach the "
                           f"torchvision checkpoint ({expected_file_name(arch)})", str(path))  # fmt: skip
    given = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else {}
    if given != wanted:
        wrong = sorted(set(wanted) ^ set(given)) or sorted(k for k in wanted if wanted[k] != given[k])
        raise WeightsError(f"{path}: not {arch} weights ({len(wrong)} keys differ, e.g. {wrong[0]!r})", str(path))


def _state_dicts(value, where: str = "", depth: int = 0):
    """(where, dict) for each dict of tensors nested in a loaded file (a training checkpoint, a dict of dicts)."""
    import torch

    if not isinstance(value, dict) or depth > 4:
        return
    if value and all(isinstance(v, torch.Tensor) for v in value.values()):
        yield where or "the top level", value
        return
    for key, inner in value.items():
        yield from _state_dicts(inner, f"{where}[{key!r}]", depth + 1)
