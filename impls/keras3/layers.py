"""Keras 3 leaf layers of the spec (NHWC), for every Keras backend.

Every layer is named by its canonical (torch) module path with '-' for '.', e.g.
``inception3a-branch2-1-conv`` (the torch backend forbids '.' in variable paths; no torch
module name contains '-'), so a variable's canonical tensor name follows from its layer name. Padding is always explicit
(``ops.pad`` + 'valid'): Keras 'same' would pad the extra pixel on the bottom/right at stride 2.
Every layer is registered with Keras (package "inception_bridge") and has a config of plain data
(a spec node through ``impls.spec.serial``), so a model holding them saves and loads by name.
"""
from __future__ import annotations

import numpy as np
from keras import layers, ops, saving

from ..spec import layers as L
from ..spec.registry import SERIALIZATION_PACKAGE
from ..spec.serial import from_data, to_data

serializable = saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)


class FromSpec:
    """``get_config``/``from_config`` of a layer made from one spec node, ``cls(spec, **kwargs)``."""

    def get_config(self):
        return {**super().get_config(), "spec": to_data(self.spec)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(from_data(config.pop("spec")), **config)


def _mean(x, axis, keepdims=False):
    """``ops.mean`` in x's own precision: Keras 3.15's JAX backend reduces float64 in float32
    (compute dtype result_type(x, "float32")), 1e-7 off in a float64 training step."""
    n = int(np.prod([x.shape[a] for a in (axis if isinstance(axis, tuple) else (axis,))]))
    return ops.divide(ops.sum(x, axis=axis, keepdims=keepdims), n)


@serializable
class BatchNorm(layers.BatchNormalization):
    """Keras BatchNormalization (same variables, names, momentum rule and ``trainable=False``
    behaviour) with PyTorch's accuracy in train mode. On the TF backend, batch moments are one
    N*H*W-long float32 reduction and the output is folded into ``x * s + (beta - mean * s)``,
    which cancels digits when |mean| >> std; Inception v3's train-mode aux logits came out 1.5e-4
    from the fp64 result (PyTorch and JAX: 5e-5). Reducing one axis at a time and normalising as
    ``(x - mean) * s + beta`` brings it to 7e-5 (measured, seeded weights, batch 4 at 299).
    No masking or renormalisation: these models use neither."""

    def _moments(self, inputs, mask):
        # One axis at a time: short sums instead of one N*H*W-long float32 accumulation
        # (TF's CPU reduce_mean loses ~1e-4 relative over Inception v3's 4x35x35 batches).
        def mean(t):
            for axis in (2, 1, 0):
                t = _mean(t, axis, keepdims=True)
            return t

        m = mean(inputs)
        return ops.reshape(m, (-1,)), ops.reshape(mean(ops.square(inputs - m)), (-1,))

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable:
            mean, variance = self._moments(inputs, mask)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            scale = scale * self.gamma
        out = (inputs - mean) * scale
        return out + self.beta if self.center else out


@serializable
class ConvBlock(layers.Layer):
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, batch_norm=True, eps=1e-3,
                 bias=None, **kwargs):
        super().__init__(**kwargs)
        self.arguments = dict(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                              stride=stride, padding=padding, batch_norm=batch_norm, eps=eps, bias=bias)
        self.padding = L.pair(padding)
        self.conv = layers.Conv2D(out_channels, L.pair(kernel_size), L.pair(stride), padding="valid",
                                  use_bias=not batch_norm if bias is None else bias, name=f"{self.name}-conv")
        # Keras momentum 0.9 == torch momentum 0.1 (Keras weights the old statistic).
        self.bn = BatchNorm(momentum=0.9, epsilon=eps, name=f"{self.name}-bn") if batch_norm else None

    def get_config(self):
        return {**super().get_config(), **self.arguments}

    def call(self, x, training=False):
        ph, pw = self.padding
        if ph or pw:
            x = ops.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return ops.relu(x)


def _pads(shape, spec):
    """Per-axis torch-convention (before, after, out) for NHWC ``shape``."""
    if shape[1] is None or shape[2] is None:
        raise ValueError("Keras Inception models need static spatial sizes (torch-convention pooling pads "
                         "depend on them); give the Input a concrete height and width")
    return [L.pool_pads(shape[1 + i], spec.kernel_size[i], spec.stride[i], spec.padding[i], spec.ceil_mode)
            for i in range(2)]


@serializable
class MaxPool(FromSpec, layers.Layer):
    def __init__(self, spec: L.MaxPool, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, x):
        (t, b, _), (l, r, _) = _pads(x.shape, self.spec)
        if t or b or l or r:  # -inf, not zero: a padded pixel must never win the max
            x = ops.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=-np.inf)
        return ops.max_pool(x, self.spec.kernel_size, self.spec.stride, padding="valid")


@serializable
class AvgPool(FromSpec, layers.Layer):
    def __init__(self, spec: L.AvgPool, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, x):
        s = self.spec
        (t, b, _), (l, r, _) = _pads(x.shape, s)
        # The divisor (torch's count_include_pad rule) depends on shapes only: numpy constant.
        mask = np.zeros((1, x.shape[1] + t + b, x.shape[2] + l + r, 1), "float32")
        ph, pw = s.padding if s.count_include_pad else (0, 0)
        mask[:, t - ph:t + x.shape[1] + ph, l - pw:l + x.shape[2] + pw] = 1.0
        count = _window_sum(mask, s.kernel_size, s.stride)
        x = ops.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
        window = s.kernel_size[0] * s.kernel_size[1]
        # As a backend tensor: torch-backend ``Tensor * ndarray`` would call numpy on a grad tensor.
        scale = ops.convert_to_tensor(window / count, dtype=x.dtype)
        return ops.average_pool(x, s.kernel_size, s.stride, padding="valid") * scale


def _window_sum(a, kernel, stride):
    kh, kw = kernel
    sh, sw = stride
    oh, ow = (a.shape[1] - kh) // sh + 1, (a.shape[2] - kw) // sw + 1
    return np.array([[a[:, i * sh:i * sh + kh, j * sw:j * sw + kw].sum() for j in range(ow)]
                     for i in range(oh)], "float32")[None, :, :, None]


@serializable
class AdaptiveAvgPool(FromSpec, layers.Layer):
    def __init__(self, spec: L.AdaptiveAvgPool, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, x):
        rows = L.adaptive_bins(x.shape[1], self.spec.output_size[0])
        cols = L.adaptive_bins(x.shape[2], self.spec.output_size[1])
        return ops.stack([ops.stack([_mean(x[:, r0:r1, c0:c1], (1, 2)) for c0, c1 in cols], axis=1)
                          for r0, r1 in rows], axis=1)


@serializable
class GlobalAvgPool(layers.Layer):
    def call(self, x):
        return _mean(x, (1, 2))


@serializable
class LRN(FromSpec, layers.Layer):
    def __init__(self, spec: L.LRN, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, x):
        s, c = self.spec, x.shape[-1]
        sq = ops.pad(ops.square(x), ((0, 0), (0, 0), (0, 0), (s.size // 2, (s.size - 1) // 2)))
        window = sum(sq[..., i:i + c] for i in range(s.size))
        return x / ops.power(s.k + (s.alpha / s.size) * window, s.beta)


@serializable
class Flatten(layers.Layer):
    """(N, H, W, C) -> (N, C*H*W) in (C, H, W) order, as torch flattens: the dense weights after
    it are shared without permutation."""

    def call(self, x):
        return ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, x.shape[1] * x.shape[2] * x.shape[3]))


@serializable
class ReLU(layers.Layer):
    def call(self, x):
        return ops.relu(x)


@serializable
class Linear(layers.Dense):
    """``Dense`` computing ``x @ kernel + bias`` with ``ops.einsum``: Keras's ``ops.matmul`` on
    the torch backend computes in float32 whatever the inputs (its dtype promotion maps 64-bit
    types to 32-bit, as JAX's default), which a float64 model must not do. Same variables, names
    and weight file layout as ``Dense``; no activation (the spec's ReLU is a step of its own)."""

    def call(self, inputs, training=None):
        y = ops.einsum("ni,io->no", inputs, self.kernel)
        return y + self.bias if self.use_bias else y

    def parts(self, inputs):
        """(x W, x W + b): a feature extractor's logits_unbiased and logits."""
        y = ops.einsum("ni,io->no", inputs, self.kernel)
        return y, y + self.bias


def spatial_mean(x):
    """N x H x W x C -> N x C in x's own precision; an already pooled N x C as it is."""
    return x if len(x.shape) == 2 else _mean(x, (1, 2))
