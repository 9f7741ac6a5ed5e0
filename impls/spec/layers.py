"""Framework-free layers (the leaves of a spec) and the padding arithmetic every framework shares.

Every node answers four questions itself, so no traversal needs a chain of type tests: its
``children()`` (composites, ``impls.spec.blocks``), its own ``tensors()`` (canonical leaf name ->
PyTorch-layout shape), the ``channels()`` it outputs for an input channel count, and its
``cost()`` (output shape, parameters, multiply-accumulates) for ``impls.spec.summary``.

All padding is explicit (``pads`` are (before, after) per spatial axis) so that no framework's
notion of 'same' padding or ``ceil_mode`` is ever relied upon: TF 'same' pads the extra pixel at
the end at stride 2, torch pads symmetrically, and Keras has no ``ceil_mode``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

Pair = Tuple[int, int]
Shape = Tuple[int, ...]  # (C, H, W) for feature maps, (features,) after flattening


def pair(v) -> Pair:
    return (v, v) if isinstance(v, int) else tuple(v)


class Node:
    """The defaults of a weightless, shape-keeping leaf (ReLU, LRN, Dropout)."""

    label = ""  # the kind ``summary`` prints; the class name unless a node says otherwise

    def children(self):
        return ()

    def tensors(self) -> dict:
        return {}

    def channels(self, cin: int) -> int:
        return cin

    def cost(self, shape: Shape, biases: bool = True):
        return tuple(shape), 0, 0

    @property
    def kind(self) -> str:
        return self.label or type(self).__name__


def feature_map(node, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ValueError(f"{type(node).__name__} needs a (C, H, W) input, got {shape}")
    return shape


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _conv_cost(node, shape: Shape, bias: bool, affine: int):
    """(out shape, kernel + ``bias`` + ``affine`` per-channel parameters, MACs) of a convolution."""
    c, h, w = feature_map(node, shape)
    if c != node.in_channels:
        raise ValueError(f"{node} got {c} input channels")
    (kh, kw), (sh, sw), (ph, pw) = node.kernel_size, node.stride, node.padding
    oh, ow = conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {node.kernel_size} does not fit input {(h, w)} with padding {node.padding}")
    weights = kh * kw * node.in_channels * node.out_channels
    return (node.out_channels, oh, ow), weights + node.out_channels * (int(bias) + affine), weights * oh * ow


class _Windowed(Node):
    def __post_init__(self):
        for f in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, f, pair(getattr(self, f)))


@dataclass(frozen=True)
class ConvBlock(_Windowed):
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

    def tensors(self):
        out = {"conv.weight": (self.out_channels, self.in_channels, *self.kernel_size)}
        if self.has_bias:
            out["conv.bias"] = (self.out_channels,)
        if self.batch_norm:
            out.update({f"bn.{leaf}": (self.out_channels,) for leaf in ("weight", "bias", "running_mean", "running_var")})
        return out

    def channels(self, cin):
        return self.out_channels

    def cost(self, shape, biases=True):
        return _conv_cost(self, shape, self.has_bias and biases, 2 if self.batch_norm else 0)


@dataclass(frozen=True)
class Conv2d(_Windowed):
    """A bare convolution with bias, no BN, no activation: the residual blocks' up-projection
    (timm ``conv2d``, tensors ``<name>.weight`` and ``<name>.bias``)."""

    in_channels: int
    out_channels: int
    kernel_size: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    def tensors(self):
        return {"weight": (self.out_channels, self.in_channels, *self.kernel_size), "bias": (self.out_channels,)}

    def channels(self, cin):
        return self.out_channels

    def cost(self, shape, biases=True):
        return _conv_cost(self, shape, biases, 0)


@dataclass(frozen=True)
class _Pool(_Windowed):
    """A pooling window in torch's convention (symmetric ``padding``, ``ceil_mode``)."""

    kernel_size: Pair
    stride: Pair
    padding: Pair = (0, 0)
    ceil_mode: bool = False

    def cost(self, shape, biases=True):
        c, h, w = feature_map(self, shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (c, pool_pads(h, kh, sh, ph, self.ceil_mode)[2], pool_pads(w, kw, sw, pw, self.ceil_mode)[2]), 0, 0


@dataclass(frozen=True)
class MaxPool(_Pool):
    pass


@dataclass(frozen=True)
class AvgPool(_Pool):
    count_include_pad: bool = True  # torch's default; Keras/TF exclude padding


@dataclass(frozen=True)
class AdaptiveAvgPool(Node):
    """torch's ``adaptive_avg_pool2d``: bin i spans [floor(i*H/n), ceil((i+1)*H/n))."""

    output_size: Pair

    def __post_init__(self):
        object.__setattr__(self, "output_size", pair(self.output_size))

    def cost(self, shape, biases=True):
        return (feature_map(self, shape)[0], *self.output_size), 0, 0


@dataclass(frozen=True)
class GlobalAvgPool(Node):
    """Mean over the spatial axes, returning (N, C)."""

    def cost(self, shape, biases=True):
        return (feature_map(self, shape)[0],), 0, 0


@dataclass(frozen=True)
class Flatten(Node):
    """(N, C, H, W) -> (N, C*H*W) in (C, H, W) order in every framework, so the dense weights
    after it are shared without permutation (NHWC frameworks transpose first)."""

    def cost(self, shape, biases=True):
        return (math.prod(shape),), 0, 0


@dataclass(frozen=True)
class ReLU(Node):
    pass


@dataclass(frozen=True)
class LRN(Node):
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
class Dropout(Node):
    rate: float


@dataclass(frozen=True)
class Linear(Node):
    in_features: int
    out_features: int

    def tensors(self):
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def channels(self, cin):
        return self.out_features

    def cost(self, shape, biases=True):
        n = math.prod(shape)  # a (C, H, W) input is taken in (C, H, W) order, as Flatten gives it
        if n != self.in_features:
            raise ValueError(f"{self} got {n} input features (shape {tuple(shape)})")
        weights = self.in_features * self.out_features
        return (self.out_features,), weights + (self.out_features if biases else 0), weights


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


def adaptive_bins(size: int, out: int):
    """Start/end indices of torch's adaptive pooling bins along one axis."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]
