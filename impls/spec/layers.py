"""Framework-free layer descriptions and the padding arithmetic every framework shares.

Each framework translates these dataclasses into its own layers. All padding is explicit
(``pads`` are (before, after) per spatial axis) so that no framework's notion of 'same'
padding or ``ceil_mode`` is ever relied upon: TF 'same' pads the extra pixel at the end at
stride 2, torch pads symmetrically, and Keras has no ``ceil_mode``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

Pair = Tuple[int, int]


def pair(v) -> Pair:
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass(frozen=True)
class ConvBlock:
    """Convolution, optional BatchNorm, ReLU: torchvision's ``BasicConv2d``.

    With ``batch_norm`` the convolution has no bias (BN's beta replaces it); without it
    (the 2014 paper's GoogLeNet) the convolution carries a bias. ``conv_bias`` keeps the bias in
    front of BN too, as Caffe ports do (pretrainedmodels' bninception): redundant, but a tensor.
    """

    in_channels: int
    out_channels: int
    kernel_size: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)  # symmetric, as torch's Conv2d(padding=...)
    batch_norm: bool = True
    bn_eps: float = 1e-3
    conv_bias: bool = False

    @property
    def has_bias(self) -> bool:
        return self.conv_bias or not self.batch_norm

    def __post_init__(self):
        for f in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, f, pair(getattr(self, f)))


@dataclass(frozen=True)
class MaxPool:
    kernel_size: Pair
    stride: Pair
    padding: Pair = (0, 0)
    ceil_mode: bool = False

    def __post_init__(self):
        for f in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, f, pair(getattr(self, f)))


@dataclass(frozen=True)
class AvgPool:
    kernel_size: Pair
    stride: Pair
    padding: Pair = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True  # torch's default; Keras/TF exclude padding

    def __post_init__(self):
        for f in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, f, pair(getattr(self, f)))


@dataclass(frozen=True)
class AdaptiveAvgPool:
    """torch's ``adaptive_avg_pool2d``: bin i spans [floor(i*H/n), ceil((i+1)*H/n))."""

    output_size: Pair

    def __post_init__(self):
        object.__setattr__(self, "output_size", pair(self.output_size))


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over the spatial axes, returning (N, C)."""


@dataclass(frozen=True)
class LRN:
    """Local response normalisation across channels, written as torch and Caffe define it:

    ``b_c = a_c / (k + alpha / size * sum_{window} a^2) ** beta`` with the window covering
    channels [c - size//2, c + (size-1)//2]. TF's ``local_response_normalization`` does not
    divide alpha by size: a TF ``alpha`` equals ours divided by ``size``.
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class Linear:
    in_features: int
    out_features: int


def pool_pads(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> Tuple[int, int, int]:
    """Explicit (before, after, output) for one spatial axis of a torch-convention pool.

    Torch's ceil_mode may add windows that start inside the input but run past the padded
    end; the extra length is returned as additional ``after`` padding (filled with -inf for
    max pooling). A window that would start entirely in the right padding is dropped,
    exactly as torch does.
    """
    span = size + 2 * padding - kernel
    if span < 0:
        raise ValueError(f"pool window {kernel} larger than padded input {size + 2 * padding}")
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    # A negative remainder is an unused tail that VALID pooling ignores by itself.
    after = (out - 1) * stride + kernel - size - padding
    return padding, max(after, 0), out


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def adaptive_bins(size: int, out: int):
    """Start/end indices of torch's adaptive pooling bins along one axis."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]
