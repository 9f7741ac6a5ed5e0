"""Framework-free blocks of Inception-v4 / Inception-ResNet-v2 (Szegedy et al. 2016), as timm
(and Cadene's ``pretrainedmodels`` before it) registers them.

timm nests branches in ``nn.Sequential``s (``branch1.0.conv.weight``) and keeps the trunk in a
``features`` Sequential (v4) or in ``repeat`` Sequentials (IRv2). A nested Sequential is written
as a plain tuple of specs (``impls.spec.tensors.children`` names its items '0', '1', ...), and a
block is a ``Branches`` (a ``BranchBlock`` whose paths are given as data) or a ``Residual``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from .blocks import BranchBlock, Split
from .layers import AvgPool, ConvBlock, MaxPool, pair


@dataclass(frozen=True)
class Conv2d:
    """A bare convolution with bias, no BN, no activation: the residual blocks' up-projection
    (timm ``conv2d``, tensors ``<name>.weight`` and ``<name>.bias``)."""

    in_channels: int
    out_channels: int
    kernel_size: Tuple[int, int] = (1, 1)
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)

    def __post_init__(self):
        for f in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, f, pair(getattr(self, f)))


def out_channels_of(layer, in_channels: int) -> int:
    """Channels out of one step: a conv's, a Sequential's last conv's, a pool keeps its input's."""
    if isinstance(layer, (ConvBlock, Conv2d)):
        return layer.out_channels
    if isinstance(layer, tuple):
        c = in_channels
        for item in layer:
            c = out_channels_of(item, c)
        return c
    if isinstance(layer, Split):
        return sum(out_channels_of(conv, in_channels) for _, conv in layer.parts)
    if isinstance(layer, BranchBlock):
        return layer.out_channels
    if isinstance(layer, (MaxPool, AvgPool)):
        return in_channels
    raise TypeError(f"no channel rule for {type(layer).__name__}")


@dataclass(frozen=True)
class Branches(BranchBlock):
    """Parallel paths concatenated on channels, the paths given as data: each path a chain of
    (torch attribute name, layer) steps or ``Split``s; a layer may be a tuple (an ``nn.Sequential``)."""

    in_channels: int
    steps: Tuple[Any, ...]
    bn_eps: float = 1e-3

    @property
    def paths(self):
        return self.steps

    @property
    def out_channels(self) -> int:
        total = 0
        for path in self.paths:
            c = self.in_channels
            for step in path:
                c = out_channels_of(step if isinstance(step, Split) else step[1], c)
            total += c
        return total


@dataclass(frozen=True)
class Residual(Branches):
    """timm's Block35 / Block17 / Block8: ``act(x + scale * conv2d(concat(branches)))``; the
    up-projection ``conv2d`` is a bare 1x1 conv with bias. ``relu=False`` is IRv2's final
    ``block8`` (``no_relu=True``)."""

    project: Conv2d = None
    scale: float = 1.0
    relu: bool = True

    @property
    def layers(self):
        return super().layers + [("conv2d", self.project)]

    @property
    def out_channels(self) -> int:
        return self.in_channels
