"""Framework-free descriptions of the composite blocks shared by the Inception family."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .layers import AdaptiveAvgPool, AvgPool, ConvBlock, MaxPool


@dataclass(frozen=True)
class InceptionV1:
    """GoogLeNet's four-branch module, with free channel arguments.

    branch1: 1x1 | branch2: 1x1 -> 3x3 | branch3: 1x1 -> kxk | branch4: 3x3 max pool -> 1x1.
    ``branch3_kernel`` is 5 in the paper; torchvision uses 3 (a known slip of its port of
    the Caffe model that its pretrained weights depend on).
    """

    in_channels: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    branch3_kernel: int = 5
    batch_norm: bool = True
    bn_eps: float = 1e-3
    pool_ceil_mode: bool = True

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

    def conv(self, cin, cout, k=1) -> ConvBlock:
        return ConvBlock(cin, cout, k, 1, k // 2, self.batch_norm, self.bn_eps)

    @property
    def branches(self):
        """Branch contents in torchvision's order and nesting (branch1 is a bare block)."""
        c, k = self.in_channels, self.branch3_kernel
        return {
            "branch1": self.conv(c, self.ch1x1),
            "branch2": (self.conv(c, self.ch3x3red), self.conv(self.ch3x3red, self.ch3x3, 3)),
            "branch3": (self.conv(c, self.ch5x5red), self.conv(self.ch5x5red, self.ch5x5, k)),
            "branch4": (MaxPool(3, 1, 1, self.pool_ceil_mode), self.conv(c, self.pool_proj)),
        }


@dataclass(frozen=True)
class AuxHeadV1:
    """GoogLeNet's auxiliary classifier: pool to 4x4, 1x1 conv to 128, FC 2048 -> 1024, ReLU,
    dropout, FC -> classes. The flatten is in (C, H, W) order in every framework, so the FC
    weights are shared without permutation."""

    in_channels: int
    num_classes: int
    pool: Union[AdaptiveAvgPool, AvgPool]
    dropout: float = 0.7
    batch_norm: bool = True
    bn_eps: float = 1e-3

    @property
    def conv(self) -> ConvBlock:
        return ConvBlock(self.in_channels, 128, 1, 1, 0, self.batch_norm, self.bn_eps)
