"""The torch-backend kernels of ``impls.keras3.fast``: convolutions and pools straight on torch.

Keras's torch backend keeps NHWC tensors and, around every ``conv``/``max_pool``/``average_pool``,
copies the input to NCHW (``permute().contiguous()``), for ``conv`` once more to the channels-last
memory format, and ``Conv2D`` adds its bias and applies its ReLU as two further passes; our
Inception models have many small convolutions, so on InceptionV3 these copies took about a quarter
of the time. Here a logical NHWC tensor is used as what it is in memory, an NCHW tensor in torch's
channels-last format (``permute`` is a view, no copy), so oneDNN runs every convolution and pool
channels-last with nothing copied; the bias and the ReLU are fused into the convolution
(oneDNN's post-op, as inductor does) where torch has that op, and the padding is the convolution's
and the pool's own. The pools take the torch-convention spec as it is (padding, ceil_mode,
count_include_pad), which is what ``layers.MaxPool``/``AvgPool`` emulate with explicit pads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from keras import layers

from ..spec import layers as L

# oneDNN convolution with a fused post-op (bias and ReLU in the same pass); absent without mkldnn.
_FUSED = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None) \
    if torch.backends.mkldnn.is_available() else None


def _nchw(x):
    return x.permute(0, 3, 1, 2)  # a view: NHWC-contiguous is NCHW channels-last


def _nhwc(y):
    return y.permute(0, 2, 3, 1)


def _kernel(conv):
    """The HWIO kernel as OIHW channels-last, cached: relaid out on every call it cost about a
    tenth of InceptionV3's forward. Keyed on the storage and its version counter, which every
    in-place assign (``load_weights``, ``assign``) bumps, so a changed kernel is never stale."""
    k = conv.kernel.value
    key = (k.device, k.data_ptr(), k._version)
    cached = getattr(conv, "_torch_kernel", None)
    if cached is None or cached[0] != key:
        cached = (key, k.detach().permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last))
        if k.device.type != "meta":  # the symbolic build's placeholder is not worth keeping
            conv._torch_kernel = cached
    return cached[1]


def conv_act(conv, pad, relu, x):
    """``act(conv(pad(x)) + bias)`` of a built ``Conv2D`` (HWIO kernel) on a NHWC torch tensor."""
    w, b = _kernel(conv), conv.bias.value
    x = _nchw(x)
    if _FUSED is not None and x.device.type == "cpu":
        try:
            y = _FUSED(x.contiguous(memory_format=torch.channels_last), w, b, list(pad), list(conv.strides),
                       [1, 1], 1, "relu" if relu else "none", [], "")
            return _nhwc(y)
        except RuntimeError:  # an input oneDNN's fused op does not take: the unfused path below
            pass
    y = F.conv2d(x, w, b, conv.strides, pad)
    return _nhwc(torch.relu_(y) if relu else y)


class TorchPool(layers.Layer):
    """``layers.MaxPool`` / ``AvgPool`` (torch-convention spec) as torch's own ``max_pool2d`` /
    ``avg_pool2d``, channels-last."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, x):
        s = self.spec
        if isinstance(s, L.AvgPool):
            y = F.avg_pool2d(_nchw(x), s.kernel_size, s.stride, s.padding, ceil_mode=s.ceil_mode,
                             count_include_pad=s.count_include_pad)
        else:
            y = F.max_pool2d(_nchw(x), s.kernel_size, s.stride, s.padding, ceil_mode=s.ceil_mode)
        return _nhwc(y)
