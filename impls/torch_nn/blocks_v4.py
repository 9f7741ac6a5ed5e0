"""PyTorch translations of the Inception-v4 / Inception-ResNet-v2 spec blocks (timm's names)."""
from __future__ import annotations

import torch
from torch import nn

from ..spec import blocks_v4 as V4
from .layers import BranchBlock, build


class Residual(BranchBlock):
    """timm's Block35 / Block17 / Block8: ``act(conv2d(concat(branches)) * scale + x)``."""

    def __init__(self, spec: V4.Residual):
        super().__init__(spec)
        self.scale, self.relu = spec.scale, spec.relu

    def forward(self, x):
        out = self.conv2d(torch.cat([self._path(p, x) for p in self.paths], 1))
        out = out * self.scale + x  # timm's order of operations: bit-identical outputs
        return torch.relu(out) if self.relu else out


def build_v4(spec):
    """The torch module for a v4 spec entry, or None if ``spec`` is none of them."""
    if isinstance(spec, tuple):
        return nn.Sequential(*map(build, spec))
    if isinstance(spec, V4.Conv2d):
        return nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding, bias=True)
    if isinstance(spec, V4.Residual):
        return Residual(spec)
    if isinstance(spec, V4.Branches):
        return BranchBlock(spec)
    return None
