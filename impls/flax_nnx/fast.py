"""The fast inference form of a Flax NNX model: BatchNorm folded into the convolutions, the
Inception blocks' parallel 1x1 convolutions merged into one, the whole forward one ``jax.jit``.

    model = create_model("inception_v3"); ...load weights...; model.eval()
    fast = optimize_for_inference(model)     # a new eval-only callable; ``model`` untouched
    logits = fast(x)                          # NHWC

Folding is done in float64 and cast once (``conv(x, W) * s + (beta - mean * s)`` becomes
``conv(x, W * s) + b``, ``s = gamma / sqrt(var + eps)``), so the outputs stay within the eval
tolerance of the unfolded model (``conformance/tests/test_fast.py``).

Measured on XLA:CPU (2 cores, batch 8), folding and merging buy little (within noise, a few %):
XLA already fuses BN's affine and the ReLU into one loop after each convolution, and the
convolutions dominate. What does pay is the convolution library: ``impls.xla_cpu.configure()``
before JAX starts (about 1.6x on GoogLeNet, 2x on Inception v3; see that module).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..spec import blocks as B
from .blocks import BranchBlock, Residual, Sequential
from .layers import ConvBlock, linear_parts, spatial_mean


def _np64(v):
    return np.asarray(v[...] if hasattr(v, "__getitem__") else v, dtype=np.float64)


class ConvAct(nnx.Module):
    """``relu(conv(x, kernel) + bias)`` (NHWC, HWIO), or without the ReLU."""

    def __init__(self, kernel, bias, strides, padding, relu=True):
        self.kernel = nnx.Param(jnp.asarray(kernel, jnp.float32))
        self.bias = nnx.Param(jnp.asarray(bias, jnp.float32))
        self.strides, self.padding, self.relu = tuple(strides), tuple(map(tuple, padding)), relu

    @classmethod
    def from_block(cls, block: ConvBlock):
        conv = block.conv
        w = _np64(conv.kernel)
        b = _np64(conv.bias) if conv.bias is not None else np.zeros(w.shape[-1])
        if block.bn is not None:
            bn = block.bn
            s = _np64(bn.scale) / np.sqrt(_np64(bn.var) + bn.epsilon)
            w, b = w * s, (b - _np64(bn.mean)) * s + _np64(bn.bias)
        return cls(w.astype(np.float32), b.astype(np.float32), conv.strides, conv.padding)

    def __call__(self, x, residual=None):
        y = jax.lax.conv_general_dilated(x, self.kernel[...], self.strides, self.padding,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y + self.bias[...]
        if residual is not None:
            y = y + residual
        return jax.nn.relu(y) if self.relu else y


def _pointwise(m) -> bool:
    return (isinstance(m, ConvAct) and m.kernel.shape[:2] == (1, 1) and m.strides == (1, 1)
            and m.padding == ((0, 0), (0, 0)))


class Chain(nnx.Module):
    def __init__(self, steps):
        self.steps = nnx.List(steps)

    def __call__(self, x):
        for s in self.steps:
            x = s(x)
        return x


class SplitStep(nnx.Module):
    def __init__(self, parts):
        self.parts = nnx.List(parts)

    def __call__(self, x):
        return jnp.concatenate([p(x) for p in self.parts], axis=-1)


class MergedBranches(nnx.Module):
    """An Inception block with its leading pointwise convolutions as one; a residual block's
    ``act(conv2d(cat) * scale + x)`` with the scale folded into the projection."""

    def __init__(self, paths, project=None, scale=1.0, relu=True, merge=True):
        heads = [i for i, p in enumerate(paths) if p and _pointwise(p[0])]
        heads = heads if merge and len(heads) >= 2 else []
        self.merged = tuple(heads)
        self.sizes = tuple(int(paths[i][0].kernel.shape[-1]) for i in heads)
        self.head = nnx.data(ConvAct(np.concatenate([np.asarray(paths[i][0].kernel[...]) for i in heads], -1),
                                     np.concatenate([np.asarray(paths[i][0].bias[...]) for i in heads]),
                                     (1, 1), ((0, 0), (0, 0))) if heads else None)
        self.paths = nnx.List([Chain(p[1:] if i in heads else p) for i, p in enumerate(paths)])
        self.project = nnx.data(None)
        if project is not None:
            w, b = _np64(project.kernel) * scale, _np64(project.bias) * scale
            self.project = nnx.data(ConvAct(w.astype(np.float32), b.astype(np.float32), project.strides,
                                            project.padding, relu=relu))

    def __call__(self, x):
        parts = {}
        if self.head is not None:
            y = self.head(x)
            bounds = np.cumsum(self.sizes)[:-1].tolist()
            parts = dict(zip(self.merged, jnp.split(y, bounds, axis=-1)))
        out = jnp.concatenate([p(parts[i]) if i in parts else p(x) for i, p in enumerate(self.paths)], axis=-1)
        return out if self.project is None else self.project(out, residual=x)


def _steps(module, fuse):
    return [transform(m, fuse) for m in module] if isinstance(module, (Sequential, nnx.List)) else [transform(module, fuse)]


def _paths(block: BranchBlock, fuse):
    paths = []
    for path in block.paths:
        steps = []
        for step in path:
            if isinstance(step, B.Split):
                steps.append(SplitStep([transform(getattr(block, n), fuse) for n, _ in step.parts]))
            else:
                steps += _steps(getattr(block, step[0]), fuse)
        paths.append(steps)
    return paths


def transform(module, fuse=True):
    """The eval-only counterpart of one module: ConvBlocks folded, blocks' heads merged (``fuse``)."""
    if isinstance(module, ConvBlock):
        return ConvAct.from_block(module)
    if isinstance(module, Residual):
        return MergedBranches(_paths(module, fuse), module.conv2d, module.scale, module.relu, merge=fuse)
    if isinstance(module, BranchBlock):
        return MergedBranches(_paths(module, fuse), merge=fuse)
    if isinstance(module, (Sequential, nnx.List)):
        return Chain(_steps(module, fuse))
    if isinstance(module, nnx.Dropout):  # eval: the identity, whatever mode the model was left in
        return Chain([])
    return module  # pools, LRN, Linear: stateless or read-only, shared with the model


class FastModel(nnx.Module):
    """The trunk of a ``SpecModel`` in eval mode (no aux heads), from transformed stages."""

    def __init__(self, model, fuse=True):
        self.spec = model.spec
        self.stages = nnx.List([transform(getattr(model, name), fuse) for name, _ in model.spec.stages])

    def __call__(self, x):
        cfg = self.spec.config
        if self.spec.transform_input:
            x = x * jnp.asarray(cfg.transform_scale, x.dtype) + jnp.asarray(cfg.transform_shift, x.dtype)
        if self.spec.features:  # a feature extractor: the same named tuple as the model's
            stages = dict(zip((name for name, _ in self.spec.stages), self.stages))
            return self.spec.forward_features(x, lambda name, v: stages[name](v), spatial_mean,
                                              lambda name, v: linear_parts(stages[name], v))
        for stage in self.stages:
            x = stage(x)
        return x


class InferenceFn:
    """``fast(x)`` -> logits: a model's forward under one ``jax.jit``, its state an argument (not
    baked into the executable as constants, which compiles slower and holds a second copy)."""

    def __init__(self, model: nnx.Module):
        graphdef, self.state = nnx.split(model)
        self._fn = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))

    def __call__(self, x):
        return self._fn(self.state, x)


def optimize_for_inference(model: nnx.Module, fold_bn: bool = True, fuse: bool = True):
    """A jitted eval-only callable computing ``model.eval()``'s logits; ``model`` is not modified.
    ``fold_bn=False`` gives the plain model under ``jax.jit`` (the baseline, BN as it is)."""
    return InferenceFn(FastModel(model, fuse=fuse) if fold_bn else model)
