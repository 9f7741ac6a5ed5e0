"""FID Inception's input pipelines in JAX (for the Flax NNX model): ``preprocess(images, mode)``,
NHWC in, NHWC out.

The steps, their order and every weight come from ``impls.spec.pipelines`` / ``impls.spec.resize``;
this module only applies them with jax.numpy (a gather and a multiply-add per tap). Shapes decide
the taps, so ``preprocess`` traces under ``jax.jit`` with ``mode`` static.
"""
from __future__ import annotations

import jax.numpy as jnp

from ..spec.pipelines import SIZE, pipeline, uint8_levels
from ..spec.resize import taps


def resize_axis(x, axis: int, rule: str, size: int = SIZE):
    """``x`` resized along ``axis`` to ``size`` by ``rule``; float32 taps summed in index order."""
    indices, weights = taps(rule, x.shape[axis], size)
    shape = [1] * x.ndim
    shape[axis] = size
    out = None
    for k in range(indices.shape[1]):
        term = jnp.take(x, jnp.asarray(indices[:, k]), axis=axis) * jnp.asarray(weights[:, k]).reshape(shape)
        out = term if out is None else out + term
    return out


def preprocess(images, mode: str):
    """A batch of NHWC images (uint8, or float in the mode's [0, full_scale]) as FID Inception's
    input: float32 NHWC 299x299 in [-1, 1], equal to ``mode``'s origin (``impls.spec.pipelines``)."""
    p = pipeline(mode)
    x = jnp.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"expected a batch of NHWC images, got shape {tuple(x.shape)}")
    if x.dtype == jnp.uint8:
        x = jnp.take(jnp.asarray(uint8_levels(mode)), x.astype(jnp.int32))
    else:
        x = x.astype(jnp.float32)
    x = resize_axis(x, 2, p.rule)  # width first, as every origin does
    x = resize_axis(x, 1, p.rule)
    if p.clip is not None:
        x = jnp.clip(x, *p.clip)
    return (x - jnp.float32(p.centre)) * jnp.float32(1.0 / p.half_range)
