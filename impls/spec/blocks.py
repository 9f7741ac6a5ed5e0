"""Framework-free descriptions of the composite blocks shared by the Inception family."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union

from .layers import AdaptiveAvgPool, AvgPool, ConvBlock, Linear, MaxPool


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


# --- Inception v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture") -------------
#
# torchvision registers every layer of a v3 block flat on the block (``branch7x7_2``), not in
# per-branch Sequentials, and applies the pools functionally. A v3 block is therefore written
# as ``paths``: the branches in concatenation order, each a chain of steps, a step being
# (attribute name, layer) or a ``Split``. Pools get names too (``avgpool``/``maxpool``, absent
# from torchvision) so every framework can hold them as layers; they own no tensors.


@dataclass(frozen=True)
class Split:
    """Parallel (name, layer) steps on the same input, concatenated along channels: InceptionE's
    1x3 / 3x1 pair. It ends its path (nothing in v3 follows a split)."""

    parts: Tuple[Tuple[str, ConvBlock], ...]


class BranchBlock:
    """Shared queries on the ``paths`` of the v3 blocks below."""

    @property
    def paths(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @property
    def layers(self):
        """(name, layer) of every step, split parts included, in torchvision's registration order."""
        out = []
        for path in self.paths:
            for step in path:
                out += list(step.parts) if isinstance(step, Split) else [step]
        return out

    @property
    def out_channels(self) -> int:
        total = 0
        for path in self.paths:
            last = path[-1]
            if isinstance(last, Split):
                total += sum(conv.out_channels for _, conv in last.parts)
            elif isinstance(last[1], ConvBlock):
                total += last[1].out_channels
            else:  # a pool path keeps its input's channels
                total += self.in_channels
        return total

    def conv(self, cin, cout, k=1, s=1, p=0) -> ConvBlock:
        return ConvBlock(cin, cout, k, s, p, True, self.bn_eps)


# The avg pool in front of ``branch_pool``: torch's default count_include_pad=True, i.e. border
# windows divide by 9 although they hold 4 or 6 pixels. TF/Keras (keras.applications'
# AveragePooling2D(padding='same')) exclude the padding: ``pool_count_include_pad=False``.
def _v3_avgpool(count_include_pad: bool = True) -> AvgPool:
    return AvgPool(3, 1, 1, ceil_mode=False, count_include_pad=count_include_pad)

_V3_MAXPOOL = MaxPool(3, 2, 0, ceil_mode=False)


@dataclass(frozen=True)
class InceptionA(BranchBlock):
    """35x35 block (Fig. 5 of the paper, its 5x5 kept as in the TF release): 64 + 64 + 96 + pool."""

    in_channels: int
    pool_features: int
    bn_eps: float = 1e-3
    pool_count_include_pad: bool = True

    @property
    def paths(self):
        c, conv = self.in_channels, self.conv
        return (
            (("branch1x1", conv(c, 64)),),
            (("branch5x5_1", conv(c, 48)), ("branch5x5_2", conv(48, 64, 5, 1, 2))),
            (("branch3x3dbl_1", conv(c, 64)), ("branch3x3dbl_2", conv(64, 96, 3, 1, 1)),
             ("branch3x3dbl_3", conv(96, 96, 3, 1, 1))),
            (("avgpool", _v3_avgpool(self.pool_count_include_pad)), ("branch_pool", conv(c, self.pool_features))),
        )


@dataclass(frozen=True)
class InceptionB(BranchBlock):
    """Grid reduction 35 -> 17: stride-2 3x3 | 1x1 -> 3x3 -> stride-2 3x3 | stride-2 max pool."""

    in_channels: int
    bn_eps: float = 1e-3

    @property
    def paths(self):
        c, conv = self.in_channels, self.conv
        return (
            (("branch3x3", conv(c, 384, 3, 2)),),
            (("branch3x3dbl_1", conv(c, 64)), ("branch3x3dbl_2", conv(64, 96, 3, 1, 1)),
             ("branch3x3dbl_3", conv(96, 96, 3, 2))),
            (("maxpool", _V3_MAXPOOL),),
        )


@dataclass(frozen=True)
class InceptionC(BranchBlock):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1), 4 x 192 channels out."""

    in_channels: int
    channels_7x7: int
    bn_eps: float = 1e-3
    pool_count_include_pad: bool = True

    @property
    def paths(self):
        c, c7, conv = self.in_channels, self.channels_7x7, self.conv
        return (
            (("branch1x1", conv(c, 192)),),
            (("branch7x7_1", conv(c, c7)), ("branch7x7_2", conv(c7, c7, (1, 7), 1, (0, 3))),
             ("branch7x7_3", conv(c7, 192, (7, 1), 1, (3, 0)))),
            (("branch7x7dbl_1", conv(c, c7)), ("branch7x7dbl_2", conv(c7, c7, (7, 1), 1, (3, 0))),
             ("branch7x7dbl_3", conv(c7, c7, (1, 7), 1, (0, 3))), ("branch7x7dbl_4", conv(c7, c7, (7, 1), 1, (3, 0))),
             ("branch7x7dbl_5", conv(c7, 192, (1, 7), 1, (0, 3)))),
            (("avgpool", _v3_avgpool(self.pool_count_include_pad)), ("branch_pool", conv(c, 192))),
        )


@dataclass(frozen=True)
class InceptionD(BranchBlock):
    """Grid reduction 17 -> 8: 1x1 -> stride-2 3x3 | 1x1 -> 1x7 -> 7x1 -> stride-2 3x3 | max pool."""

    in_channels: int
    bn_eps: float = 1e-3

    @property
    def paths(self):
        c, conv = self.in_channels, self.conv
        return (
            (("branch3x3_1", conv(c, 192)), ("branch3x3_2", conv(192, 320, 3, 2))),
            (("branch7x7x3_1", conv(c, 192)), ("branch7x7x3_2", conv(192, 192, (1, 7), 1, (0, 3))),
             ("branch7x7x3_3", conv(192, 192, (7, 1), 1, (3, 0))), ("branch7x7x3_4", conv(192, 192, 3, 2))),
            (("maxpool", _V3_MAXPOOL),),
        )


@dataclass(frozen=True)
class InceptionE(BranchBlock):
    """8x8 block with expanded filter banks: the 3x3 branches end in a 1x3 / 3x1 split whose
    two outputs are concatenated (Fig. 7 of the paper). 320 + 768 + 768 + 192 channels out."""

    in_channels: int
    bn_eps: float = 1e-3
    pool_count_include_pad: bool = True

    @property
    def paths(self):
        c, conv = self.in_channels, self.conv
        split = lambda a, b: Split(((a, conv(384, 384, (1, 3), 1, (0, 1))), (b, conv(384, 384, (3, 1), 1, (1, 0)))))
        return (
            (("branch1x1", conv(c, 320)),),
            (("branch3x3_1", conv(c, 384)), split("branch3x3_2a", "branch3x3_2b")),
            (("branch3x3dbl_1", conv(c, 448)), ("branch3x3dbl_2", conv(448, 384, 3, 1, 1)),
             split("branch3x3dbl_3a", "branch3x3dbl_3b")),
            (("avgpool", _v3_avgpool(self.pool_count_include_pad)), ("branch_pool", conv(c, 192))),
        )


@dataclass(frozen=True)
class AuxHeadV3:
    """Inception v3's auxiliary classifier (torchvision ``InceptionAux``): 5x5/3 avg pool
    (17 -> 5), 1x1 conv to 128, 5x5 conv to 768 (5 -> 1), adaptive avg pool to 1x1, flatten,
    FC 768 -> classes. ``layers`` is the chain in order; only conv0/conv1/fc own tensors."""

    in_channels: int
    num_classes: int
    bn_eps: float = 1e-3

    @property
    def layers(self):
        conv = lambda cin, cout, k: ConvBlock(cin, cout, k, 1, 0, True, self.bn_eps)
        return (
            ("pool", AvgPool(5, 3)),
            ("conv0", conv(self.in_channels, 128, 1)),
            ("conv1", conv(128, 768, 5)),
            ("avgpool", AdaptiveAvgPool(1)),
            ("fc", Linear(768, self.num_classes)),
        )
