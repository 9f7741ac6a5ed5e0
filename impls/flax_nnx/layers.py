"""Flax NNX leaf layers of the spec (NHWC).

Module attribute names mirror the PyTorch ones, so an NNX state path differs from the
canonical tensor name only in its leaf (``kernel``/``scale``/``mean``/``var``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ..spec import layers as L


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` with the same variables and arithmetic (the tests hold it to NNX's own,
    bit for bit), whose train-mode step replaces each running statistic whole (``set_value``).
    NNX assigns by index (``mean[...] = ...``), and under a trace each such assignment makes JAX
    walk the whole trace so far (the ``Tracer.sharding`` probe of ``Variable.set_value``, see
    ``abstract_model``): tracing a training step took time quadratic in the model's size (on two
    busy cores, Inception-v3's 7.9 s instead of 3.5, Inception-ResNet-v2's 36.5 s instead of
    8.1). Eval mode is NNX's own."""

    def __call__(self, x, use_running_average=None, *, mask=None):
        running = self.use_running_average if use_running_average is None else use_running_average
        if running is None or running or mask is not None or self.axis_name is not None or self.axis != -1 \
                or self.scale is None or self.bias is None or self.use_fast_variance or jnp.iscomplexobj(x):
            return super().__call__(x, use_running_average, mask=mask)  # NNX's own (and its errors)
        x, _, _, scale, bias = self.promote_dtype(  # the statistics take part, as in NNX's promotion
            (x, self.mean[...], self.var[...], self.scale[...], self.bias[...]), dtype=self.dtype)
        axes = tuple(range(x.ndim - 1))
        stats = jnp.asarray(x, jnp.promote_types(self.dtype or x.dtype, jnp.float32))
        batch_mean = stats.mean(axes)
        batch_var = jnp.square(stats - batch_mean).mean(axes)  # use_fast_variance=False
        for stat, batch in ((self.mean, batch_mean), (self.var, batch_var)):
            old = stat[...]  # NNX's indexed assignment keeps the statistic's dtype: so does this
            moved = jax.lax.stop_gradient(self.momentum * old + (1 - self.momentum) * batch)  # as NNX
            stat.set_value(moved.astype(old.dtype))
        return jnp.asarray((x - batch_mean) * (jax.lax.rsqrt(batch_var + self.epsilon) * scale) + bias,
                           jnp.result_type(x, scale, bias) if self.dtype is None else self.dtype)


class ConvBlock(nnx.Module):
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, batch_norm=True, eps=1e-3,
                 bias=None, *, rngs: nnx.Rngs):
        k, s, p = L.pair(kernel_size), L.pair(stride), L.pair(padding)
        self.conv = nnx.Conv(in_channels, out_channels, k, s, padding=((p[0], p[0]), (p[1], p[1])),
                             use_bias=not batch_norm if bias is None else bias, rngs=rngs)
        # flax momentum 0.9 == torch momentum 0.1 (flax weights the old statistic).
        self.bn = BatchNorm(out_channels, epsilon=eps, momentum=0.9, use_fast_variance=False,
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


def spatial_mean(x):
    """N x H x W x C -> N x C (a feature extractor's pooled features); an already pooled N x C as it is."""
    return x if x.ndim == 2 else x.mean(axis=(1, 2))


def linear_parts(fc: nnx.Linear, x):
    """(x W, x W + b) of a Linear (kernel in, out): a feature extractor's logits_unbiased, logits."""
    unbiased = x @ fc.kernel.value
    return unbiased, unbiased + fc.bias.value


class LRN(nnx.Module):
    def __init__(self, spec: L.LRN):
        self.spec = spec

    def __call__(self, x):
        s = self.spec
        sq = jnp.pad(jnp.square(x), ((0, 0), (0, 0), (0, 0), (s.size // 2, (s.size - 1) // 2)))
        window = sum(sq[..., i:i + x.shape[-1]] for i in range(s.size))
        return x / (s.k + s.alpha / s.size * window) ** s.beta


class Flatten(nnx.Module):
    """(N, H, W, C) -> (N, C*H*W) in (C, H, W) order, as torch flattens: the dense weights after
    it are shared without permutation."""

    def __call__(self, x):
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class ReLU(nnx.Module):
    def __call__(self, x):
        return jax.nn.relu(x)
