"""Keras 3 translations of the spec's layers and blocks (NHWC), for every Keras backend.

Every layer is named by its canonical (torch) module path with '-' for '.', e.g.
``inception3a-branch2-1-conv`` (the torch backend forbids '.' in variable paths; no torch
module name contains '-'), so a variable's canonical tensor name follows from its layer name. Padding is always explicit
(``ops.pad`` + 'valid'): Keras 'same' would pad the extra pixel on the bottom/right at stride 2.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from keras import layers, ops

from ..spec import blocks as B
from ..spec import layers as L


def _mean(x, axis, keepdims=False):
    """``ops.mean`` in x's own precision: Keras 3.15's JAX backend reduces float64 in float32
    (compute dtype result_type(x, "float32")), 1e-7 off in a float64 training step."""
    n = int(np.prod([x.shape[a] for a in (axis if isinstance(axis, tuple) else (axis,))]))
    return ops.divide(ops.sum(x, axis=axis, keepdims=keepdims), n)


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


class ConvBlock(layers.Layer):
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, batch_norm=True, eps=1e-3,
                 bias=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = L.pair(padding)
        self.conv = layers.Conv2D(out_channels, L.pair(kernel_size), L.pair(stride), padding="valid",
                                  use_bias=not batch_norm if bias is None else bias, name=f"{self.name}-conv")
        # Keras momentum 0.9 == torch momentum 0.1 (Keras weights the old statistic).
        self.bn = BatchNorm(momentum=0.9, epsilon=eps, name=f"{self.name}-bn") if batch_norm else None

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


class MaxPool(layers.Layer):
    def __init__(self, spec: L.MaxPool, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, x):
        (t, b, _), (l, r, _) = _pads(x.shape, self.spec)
        if t or b or l or r:  # -inf, not zero: a padded pixel must never win the max
            x = ops.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=-np.inf)
        return ops.max_pool(x, self.spec.kernel_size, self.spec.stride, padding="valid")


class AvgPool(layers.Layer):
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


class AdaptiveAvgPool(layers.Layer):
    def __init__(self, spec: L.AdaptiveAvgPool, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, x):
        rows = L.adaptive_bins(x.shape[1], self.spec.output_size[0])
        cols = L.adaptive_bins(x.shape[2], self.spec.output_size[1])
        return ops.stack([ops.stack([_mean(x[:, r0:r1, c0:c1], (1, 2)) for c0, c1 in cols], axis=1)
                          for r0, r1 in rows], axis=1)


class GlobalAvgPool(layers.Layer):
    def call(self, x):
        return _mean(x, (1, 2))


class LRN(layers.Layer):
    def __init__(self, spec: L.LRN, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, x):
        s, c = self.spec, x.shape[-1]
        sq = ops.pad(ops.square(x), ((0, 0), (0, 0), (0, 0), (s.size // 2, (s.size - 1) // 2)))
        window = sum(sq[..., i:i + c] for i in range(s.size))
        return x / ops.power(s.k + (s.alpha / s.size) * window, s.beta)


class InceptionV1Block(layers.Layer):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 branch3_kernel=5, batch_norm=True, bn_eps=1e-3, pool_ceil_mode=True, **kwargs):
        super().__init__(**kwargs)
        spec = B.InceptionV1(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                             branch3_kernel, batch_norm, bn_eps, pool_ceil_mode)
        self.branches = [build(b, f"{self.name}-{n}") if not isinstance(b, tuple)
                         else [build(s, f"{self.name}-{n}-{i}") for i, s in enumerate(b)]
                         for n, b in spec.branches.items()]

    def call(self, x, training=False):
        return ops.concatenate([_chain(b, x, training) for b in self.branches], axis=-1)


def _chain(layer_or_list, x, training):
    # Keras drops ``training`` for layers whose call() does not take it.
    for layer in layer_or_list if isinstance(layer_or_list, list) else [layer_or_list]:
        x = layer(x, training=training)
    return x


class AuxHeadV1(layers.Layer):
    def __init__(self, in_channels, num_classes, pool, dropout=0.7, batch_norm=True, bn_eps=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.pool = build(pool, f"{self.name}-pool")
        self.conv = ConvBlock(in_channels, 128, 1, batch_norm=batch_norm, eps=bn_eps, name=f"{self.name}-conv")
        self.fc1 = layers.Dense(1024, name=f"{self.name}-fc1")
        self.fc2 = layers.Dense(num_classes, name=f"{self.name}-fc2")
        self.dropout = layers.Dropout(dropout, name=f"{self.name}-dropout")

    def call(self, x, training=False):
        x = self.conv(self.pool(x), training=training)  # N,4,4,128
        x = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, 2048))  # (C, H, W) flatten order, as torch
        x = ops.relu(self.fc1(x))  # N,1024
        return self.fc2(self.dropout(x, training=training))


class BranchBlock(layers.Layer):
    """An Inception v3 block from its spec: each step a sublayer named ``<block>-<torch attribute>``
    (e.g. ``Mixed_7b-branch3x3_2a``), branches concatenated on channels."""

    def __init__(self, spec: B.BranchBlock, **kwargs):
        super().__init__(**kwargs)
        self.paths = spec.paths
        # Sublayers in a list (Keras tracks it) looked up by torch attribute name. Method names
        # avoid ``_path``: Keras layers keep their variable path there.
        self.steps = [build(layer, f"{self.name}-{name}") for name, layer in spec.layers]
        self._step_index = {name: i for i, (name, _) in enumerate(spec.layers)}

    def _run_step(self, name, x, training):
        return _chain(self.steps[self._step_index[name]], x, training)

    def _run_branch(self, path, x, training):
        for step in path:
            if isinstance(step, B.Split):
                x = ops.concatenate([self._run_step(name, x, training) for name, _ in step.parts], axis=-1)
            else:
                x = self._run_step(step[0], x, training)
        return x

    def call(self, x, training=False):
        return ops.concatenate([self._run_branch(p, x, training) for p in self.paths], axis=-1)


class InceptionA(BranchBlock):
    def __init__(self, in_channels, pool_features, bn_eps=1e-3, pool_count_include_pad=True, **kwargs):
        super().__init__(B.InceptionA(in_channels, pool_features, bn_eps, pool_count_include_pad), **kwargs)


class InceptionB(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3, **kwargs):
        super().__init__(B.InceptionB(in_channels, bn_eps), **kwargs)


class InceptionC(BranchBlock):
    def __init__(self, in_channels, channels_7x7, bn_eps=1e-3, pool_count_include_pad=True, **kwargs):
        super().__init__(B.InceptionC(in_channels, channels_7x7, bn_eps, pool_count_include_pad), **kwargs)


class InceptionD(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3, **kwargs):
        super().__init__(B.InceptionD(in_channels, bn_eps), **kwargs)


class InceptionE(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3, pool_count_include_pad=True, **kwargs):
        super().__init__(B.InceptionE(in_channels, bn_eps, pool_count_include_pad), **kwargs)


class AuxHeadV3(layers.Layer):
    def __init__(self, in_channels, num_classes, bn_eps=1e-3, **kwargs):
        super().__init__(**kwargs)
        (self.pool, self.conv0, self.conv1, self.avgpool, self.fc) = [
            build(layer, f"{self.name}-{name}") for name, layer in B.AuxHeadV3(in_channels, num_classes, bn_eps).layers]

    def call(self, x, training=False):
        x = self.conv0(self.pool(x), training=training)  # N,5,5,128
        x = self.avgpool(self.conv1(x, training=training))  # N,1,1,768
        x = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, x.shape[1] * x.shape[2] * x.shape[3]))  # (C, H, W)
        return self.fc(x)


V3_BLOCKS = {B.InceptionA: InceptionA, B.InceptionB: InceptionB, B.InceptionC: InceptionC,
             B.InceptionD: InceptionD, B.InceptionE: InceptionE, B.AuxHeadV3: AuxHeadV3}


def build(spec, name: str):
    """The Keras layer for one spec entry, named by its canonical module path."""
    if isinstance(spec, L.ConvBlock):
        return ConvBlock(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                         spec.batch_norm, spec.bn_eps, spec.has_bias, name=name)
    simple = {L.MaxPool: MaxPool, L.AvgPool: AvgPool, L.AdaptiveAvgPool: AdaptiveAvgPool, L.LRN: LRN}
    if type(spec) in simple:
        return simple[type(spec)](spec, name=name)
    if isinstance(spec, L.GlobalAvgPool):
        return GlobalAvgPool(name=name)
    if isinstance(spec, L.Dropout):
        return layers.Dropout(spec.rate, name=name)
    if isinstance(spec, L.Linear):
        return layers.Dense(spec.out_features, name=name)
    if isinstance(spec, B.InceptionV1):
        return InceptionV1Block(spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5,
                                spec.pool_proj, spec.branch3_kernel, spec.batch_norm, spec.bn_eps,
                                spec.pool_ceil_mode, name=name)
    if isinstance(spec, B.AuxHeadV1):
        return AuxHeadV1(spec.in_channels, spec.num_classes, spec.pool, spec.dropout, spec.batch_norm, spec.bn_eps,
                         name=name)
    if type(spec) in V3_BLOCKS:
        return V3_BLOCKS[type(spec)](**{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}, name=name)
    from .blocks_v4 import build_v4  # Sequentials, bare convs, data-given branch and residual blocks

    layer = build_v4(spec, name)
    if layer is not None:
        return layer
    raise TypeError(f"no Keras translation for {type(spec).__name__}")

