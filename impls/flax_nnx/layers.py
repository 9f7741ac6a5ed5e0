"""Flax NNX translations of the spec's layers and blocks (NHWC).

Module attribute names mirror the PyTorch ones, so an NNX state path differs from the
canonical tensor name only in its leaf (``kernel``/``scale``/``mean``/``var``).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from ..spec import blocks as B
from ..spec import layers as L


class ConvBlock(nnx.Module):
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, batch_norm=True, eps=1e-3,
                 bias=None, *, rngs: nnx.Rngs):
        k, s, p = L.pair(kernel_size), L.pair(stride), L.pair(padding)
        self.conv = nnx.Conv(in_channels, out_channels, k, s, padding=((p[0], p[0]), (p[1], p[1])),
                             use_bias=not batch_norm if bias is None else bias, rngs=rngs)
        # flax momentum 0.9 == torch momentum 0.1 (flax weights the old statistic).
        self.bn = nnx.BatchNorm(out_channels, epsilon=eps, momentum=0.9, use_fast_variance=False,
                                rngs=rngs) if batch_norm else None

    def __call__(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return jax.nn.relu(x)


def _window_pads(x, spec):
    """reduce_window padding for NHWC ``x`` under torch's pool convention."""
    pads = [L.pool_pads(x.shape[1 + i], spec.kernel_size[i], spec.stride[i], spec.padding[i], spec.ceil_mode)
            for i in range(2)]
    return [(0, 0), (pads[0][0], pads[0][1]), (pads[1][0], pads[1][1]), (0, 0)]


class MaxPool(nnx.Module):
    def __init__(self, spec: L.MaxPool):
        self.spec = spec

    def __call__(self, x):
        s = self.spec
        # reduce_window pads with the init value, -inf: torch's ceil_mode windows exactly.
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *s.kernel_size, 1), (1, *s.stride, 1),
                                     _window_pads(x, s))


class AvgPool(nnx.Module):
    def __init__(self, spec: L.AvgPool):
        self.spec = spec

    def __call__(self, x):
        s = self.spec
        pads = _window_pads(x, s)
        window, strides = (1, *s.kernel_size, 1), (1, *s.stride, 1)
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
        # The divisor counts the input pixels, plus torch's symmetric padding when
        # count_include_pad, but never the extra ceil_mode tail.
        ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
        if s.count_include_pad:
            (ph, pw) = s.padding
            ones = jnp.pad(ones, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=1.0)
            pads = [(0, 0), (0, pads[1][1] - ph), (0, pads[2][1] - pw), (0, 0)]
        count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pads)
        return total / count


class AdaptiveAvgPool(nnx.Module):
    def __init__(self, spec: L.AdaptiveAvgPool):
        self.spec = spec

    def __call__(self, x):
        rows = L.adaptive_bins(x.shape[1], self.spec.output_size[0])
        cols = L.adaptive_bins(x.shape[2], self.spec.output_size[1])
        return jnp.stack([jnp.stack([x[:, r0:r1, c0:c1].mean(axis=(1, 2)) for c0, c1 in cols], 1)
                          for r0, r1 in rows], 1)


class GlobalAvgPool(nnx.Module):
    def __call__(self, x):
        return x.mean(axis=(1, 2))


class LRN(nnx.Module):
    def __init__(self, spec: L.LRN):
        self.spec = spec

    def __call__(self, x):
        s = self.spec
        sq = jnp.pad(jnp.square(x), ((0, 0), (0, 0), (0, 0), (s.size // 2, (s.size - 1) // 2)))
        window = sum(sq[..., i:i + x.shape[-1]] for i in range(s.size))
        return x / (s.k + s.alpha / s.size * window) ** s.beta


class InceptionV1Block(nnx.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 branch3_kernel=5, batch_norm=True, bn_eps=1e-3, pool_ceil_mode=True, *, rngs: nnx.Rngs):
        spec = B.InceptionV1(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                             branch3_kernel, batch_norm, bn_eps, pool_ceil_mode)
        self.branch1 = build(spec.branches["branch1"], rngs)
        self.branch2 = Sequential(spec.branches["branch2"], rngs)
        self.branch3 = Sequential(spec.branches["branch3"], rngs)
        self.branch4 = Sequential(spec.branches["branch4"], rngs)

    def __call__(self, x):
        return jnp.concatenate([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], axis=-1)


class Sequential(nnx.List):
    """An indexable chain whose state paths are ``<index>.<leaf>``, like torch's Sequential."""

    def __init__(self, specs, rngs):
        super().__init__([build(s, rngs) for s in specs])

    def __call__(self, x):
        for layer in self:
            x = layer(x)
        return x


class AuxHeadV1(nnx.Module):
    def __init__(self, in_channels, num_classes, pool, dropout=0.7, batch_norm=True, bn_eps=1e-3, *, rngs: nnx.Rngs):
        self.pool = build(pool, rngs)
        self.conv = ConvBlock(in_channels, 128, 1, batch_norm=batch_norm, eps=bn_eps, rngs=rngs)
        self.fc1 = nnx.Linear(2048, 1024, rngs=rngs)
        self.fc2 = nnx.Linear(1024, num_classes, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x):
        x = self.conv(self.pool(x))  # N,4,4,128
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # (C, H, W) flatten order, as torch
        x = jax.nn.relu(self.fc1(x))  # N,1024
        return self.fc2(self.dropout(x))


class BranchBlock(nnx.Module):
    """An Inception v3 block from its spec: every step a flat attribute named as torchvision's
    (so state paths are ``Mixed_7b.branch3x3_2a.conv.kernel``), branches concatenated on channels."""

    def __init__(self, spec: B.BranchBlock, rngs: nnx.Rngs):
        self.paths = spec.paths
        for name, layer in spec.layers:
            setattr(self, name, build(layer, rngs))

    def _path(self, path, x):
        for step in path:
            if isinstance(step, B.Split):
                x = jnp.concatenate([getattr(self, name)(x) for name, _ in step.parts], axis=-1)
            else:
                x = getattr(self, step[0])(x)
        return x

    def __call__(self, x):
        return jnp.concatenate([self._path(p, x) for p in self.paths], axis=-1)


class InceptionA(BranchBlock):
    def __init__(self, in_channels, pool_features, bn_eps=1e-3, pool_count_include_pad=True, *, rngs: nnx.Rngs):
        super().__init__(B.InceptionA(in_channels, pool_features, bn_eps, pool_count_include_pad), rngs)


class InceptionB(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3, *, rngs: nnx.Rngs):
        super().__init__(B.InceptionB(in_channels, bn_eps), rngs)


class InceptionC(BranchBlock):
    def __init__(self, in_channels, channels_7x7, bn_eps=1e-3, pool_count_include_pad=True, *, rngs: nnx.Rngs):
        super().__init__(B.InceptionC(in_channels, channels_7x7, bn_eps, pool_count_include_pad), rngs)


class InceptionD(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3, *, rngs: nnx.Rngs):
        super().__init__(B.InceptionD(in_channels, bn_eps), rngs)


class InceptionE(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3, pool_count_include_pad=True, *, rngs: nnx.Rngs):
        super().__init__(B.InceptionE(in_channels, bn_eps, pool_count_include_pad), rngs)


class AuxHeadV3(nnx.Module):
    def __init__(self, in_channels, num_classes, bn_eps=1e-3, *, rngs: nnx.Rngs):
        for name, layer in B.AuxHeadV3(in_channels, num_classes, bn_eps).layers:
            setattr(self, name, build(layer, rngs))

    def __call__(self, x):
        x = self.conv0(self.pool(x))  # N,5,5,128
        x = self.avgpool(self.conv1(x))  # N,1,1,768
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # (C, H, W) flatten order, as torch
        return self.fc(x)


V3_BLOCKS = {B.InceptionA: InceptionA, B.InceptionB: InceptionB, B.InceptionC: InceptionC,
             B.InceptionD: InceptionD, B.InceptionE: InceptionE, B.AuxHeadV3: AuxHeadV3}


def build(spec, rngs: nnx.Rngs):
    """The NNX module for one spec entry."""
    if isinstance(spec, L.ConvBlock):
        return ConvBlock(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                         spec.batch_norm, spec.bn_eps, spec.has_bias, rngs=rngs)
    if isinstance(spec, L.MaxPool):
        return MaxPool(spec)
    if isinstance(spec, L.AvgPool):
        return AvgPool(spec)
    if isinstance(spec, L.AdaptiveAvgPool):
        return AdaptiveAvgPool(spec)
    if isinstance(spec, L.GlobalAvgPool):
        return GlobalAvgPool()
    if isinstance(spec, L.LRN):
        return LRN(spec)
    if isinstance(spec, L.Dropout):
        return nnx.Dropout(spec.rate, rngs=rngs)
    if isinstance(spec, L.Linear):
        return nnx.Linear(spec.in_features, spec.out_features, rngs=rngs)
    if isinstance(spec, B.InceptionV1):
        return InceptionV1Block(spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5,
                                spec.pool_proj, spec.branch3_kernel, spec.batch_norm, spec.bn_eps,
                                spec.pool_ceil_mode, rngs=rngs)
    if isinstance(spec, B.AuxHeadV1):
        return AuxHeadV1(spec.in_channels, spec.num_classes, spec.pool, spec.dropout, spec.batch_norm, spec.bn_eps,
                         rngs=rngs)
    if type(spec) in V3_BLOCKS:
        return V3_BLOCKS[type(spec)](**{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}, rngs=rngs)
    from .blocks_v4 import build_v4  # Sequentials, bare convs, data-given branch and residual blocks

    module = build_v4(spec, rngs)
    if module is not None:
        return module
    raise TypeError(f"no Flax NNX translation for {type(spec).__name__}")
