"""A unet with a light decoder, for training stage 1 where compute is the limit (a CPU run, a short GPU session).

fastai's ``DynamicUnet`` widens its decoder as it climbs back to full resolution: with a resnet18 encoder cut after
its third stage, 82% of a 128-px forward pass is decoder (34 of 41 GFLOPs for 8 images), most of it in 192- and
160-channel 3x3 convolutions at a quarter and half the input's resolution. Here the decoder narrows as the resolution
grows (128, 64, 32 channels at strides 8, 4 and 2), each level a nearest-neighbour upsampling of the coarser level,
its encoder skip concatenated, and convolutions with batch norm (what lets a randomly initialised decoder train
quickly). The logits come out at half the input's resolution and are resized bilinearly: 15 GFLOPs for the same 8
images, about 3x faster per training step on 2 CPU cores (``benchmarks/quality.py`` measures what that buys).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from fastai.layers import ConvLayer
from torch import nn

__all__ = ["LightUnet", "DEFAULT_WIDTHS"]

DEFAULT_WIDTHS = (128, 64, 32)  # decoder channels, from the coarsest skip (stride 8 of a resnet) to the finest


class LightUnet(nn.Module):
    """`encoder` (a sequential CNN body, e.g. fastai's ``create_body`` of a torchvision resnet) followed by a light
    decoder that predicts `n_out` channels at the input's size.

    The encoder's skips are the last activation at each resolution it passes through (the input image itself
    excluded), found by running a small dummy image once. `widths`: the decoder's channels per level from the
    coarsest skip up, one 3x3 convolution per level plus a second one on the coarser levels; fewer widths than
    skips leave the finest skips unused (coarser output).
    """

    def __init__(self, encoder: nn.Sequential, n_out: int, widths: Sequence[int] = DEFAULT_WIDTHS):
        super().__init__()
        self.encoder = encoder
        with torch.no_grad():
            was_training = encoder.training
            skips, top = self._encode(torch.zeros(1, 3, 64, 64), encoder.eval())
            encoder.train(was_training)
        channels = top.shape[1]
        blocks = []
        for level, (skip, width) in enumerate(zip(reversed(skips), widths, strict=False)):
            layers = [ConvLayer(channels + skip.shape[1], width)]
            if level < len(widths) - 1:  # the finest level, at the largest resolution, gets one convolution
                layers.append(ConvLayer(width, width))
            blocks.append(nn.Sequential(*layers))
            channels = width
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(channels, n_out, kernel_size=1)

    @staticmethod
    def _encode(x: torch.Tensor, encoder: nn.Sequential) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for index, layer in enumerate(encoder):
            y = layer(x)
            if index and y.shape[-2:] != x.shape[-2:]:  # x is the last activation at its resolution
                skips.append(x)
            x = y
        return skips, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        skips, h = self._encode(x, self.encoder)
        for block, skip in zip(self.decoder, reversed(skips), strict=False):  # fewer levels than skips: unused
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1))
        return F.interpolate(self.head(h), size=size, mode="bilinear", align_corners=False)
