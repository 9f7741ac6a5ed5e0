"""Flax NNX translations of the Inception-v4 / Inception-ResNet-v2 spec blocks (NHWC)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ..spec import blocks_v4 as V4
from .layers import BranchBlock, Sequential


class Residual(BranchBlock):
    """timm's Block35 / Block17 / Block8: ``act(conv2d(concat(branches)) * scale + x)``."""

    def __init__(self, spec: V4.Residual, rngs: nnx.Rngs):
        super().__init__(spec, rngs)
        self.scale, self.relu = spec.scale, spec.relu

    def __call__(self, x):
        out = self.conv2d(jnp.concatenate([self._path(p, x) for p in self.paths], axis=-1))
        out = out * self.scale + x
        return jax.nn.relu(out) if self.relu else out


def build_v4(spec, rngs: nnx.Rngs):
    """The NNX module for a v4 spec entry, or None if ``spec`` is none of them."""
    if isinstance(spec, tuple):
        return Sequential(spec, rngs)  # state paths '<index>.<leaf>', as torch's Sequential
    if isinstance(spec, V4.Conv2d):
        (ph, pw) = spec.padding
        return nnx.Conv(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride,
                        padding=((ph, ph), (pw, pw)), use_bias=True, rngs=rngs)
    if isinstance(spec, V4.Residual):
        return Residual(spec, rngs)
    if isinstance(spec, V4.Branches):
        return BranchBlock(spec, rngs)
    return None
