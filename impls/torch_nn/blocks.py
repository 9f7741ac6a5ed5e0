"""PyTorch translation of the spec's nodes: one registry from node type to module, ``build``.

Adding a node type to the spec is one entry in ``BUILDERS`` (docs/architecture.md)."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..spec import blocks as B
from ..spec import layers as L
from .layers import BasicConv2d, GlobalAvgPool, ReLU


class BranchBlock(nn.Module):
    """Parallel paths concatenated on channels: every step a flat attribute named as the peer
    library names it (torchvision's ``branch7x7_2``, timm's ``branch1``)."""

    def __init__(self, spec: B.Branches):
        super().__init__()
        self.paths = spec.paths
        for name, node in spec.children():
            setattr(self, name, build(node))

    def run_path(self, path, x):
        for step in path:
            if isinstance(step, B.Split):
                x = torch.cat([getattr(self, name)(x) for name, _ in step.parts], 1)
            else:
                x = getattr(self, step[0])(x)
        return x

    def forward(self, x):
        return torch.cat([self.run_path(p, x) for p in self.paths], 1)


class Residual(BranchBlock):
    """timm's Block35 / Block17 / Block8: ``act(conv2d(concat(branches)) * scale + x)``."""

    def __init__(self, spec: B.Residual):
        super().__init__(spec)
        self.scale, self.relu = spec.scale, spec.relu

    def forward(self, x):
        out = self.conv2d(torch.cat([self.run_path(p, x) for p in self.paths], 1))
        out = out * self.scale + x  # timm's order of operations: bit-identical outputs
        return torch.relu(out) if self.relu else out


BUILDERS = {
    L.ConvBlock: lambda s: BasicConv2d(s.in_channels, s.out_channels, s.kernel_size, s.stride, s.padding,
                                       s.batch_norm, s.bn_eps, s.has_bias),
    L.Conv2d: lambda s: nn.Conv2d(s.in_channels, s.out_channels, s.kernel_size, s.stride, s.padding, bias=True),
    L.MaxPool: lambda s: nn.MaxPool2d(s.kernel_size, s.stride, s.padding, ceil_mode=s.ceil_mode),
    L.AvgPool: lambda s: nn.AvgPool2d(s.kernel_size, s.stride, s.padding, s.ceil_mode, s.count_include_pad),
    L.AdaptiveAvgPool: lambda s: nn.AdaptiveAvgPool2d(s.output_size),
    L.GlobalAvgPool: lambda s: GlobalAvgPool(),
    L.Flatten: lambda s: nn.Flatten(1),
    L.ReLU: lambda s: ReLU(),
    L.LRN: lambda s: nn.LocalResponseNorm(s.size, s.alpha, s.beta, s.k),
    L.Dropout: lambda s: nn.Dropout(s.rate),
    L.Linear: lambda s: nn.Linear(s.in_features, s.out_features),
    B.Sequential: lambda s: nn.Sequential(OrderedDict((name, build(node)) for name, node in s.steps)),
    B.Branches: BranchBlock,
    B.Residual: Residual,
}


def build(node) -> nn.Module:
    """The torch module for one spec node."""
    try:
        builder = BUILDERS[type(node)]
    except KeyError:
        raise TypeError(f"no torch translation for {type(node).__name__}") from None
    return builder(node)
