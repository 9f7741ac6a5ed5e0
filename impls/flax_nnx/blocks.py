"""Flax NNX translation of the spec's nodes: one registry from node type to module, ``build``.

Adding a node type to the spec is one entry in ``BUILDERS`` (docs/architecture.md)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ..spec import blocks as B
from ..spec import layers as L
from .layers import LRN, AdaptiveAvgPool, AvgPool, ConvBlock, Flatten, GlobalAvgPool, MaxPool, ReLU


class Sequential(nnx.Module):
    """Named steps run in order, each an attribute under its step name ('0', '1', ... for a
    positional one), so state paths are torch's ``nn.Sequential`` keys (``branch2.1.conv``)."""

    def __init__(self, spec: B.Sequential, rngs: nnx.Rngs):
        self.names = tuple(name for name, _ in spec.steps)
        for name, node in spec.steps:
            setattr(self, name, build(node, rngs))

    def __getitem__(self, i):
        return getattr(self, self.names[i])

    def __len__(self):
        return len(self.names)

    def __iter__(self):
        return (getattr(self, name) for name in self.names)

    def __call__(self, x):
        for layer in self:
            x = layer(x)
        return x


class BranchBlock(nnx.Module):
    """Parallel paths concatenated on channels: every step a flat attribute named as the peer
    library names it (state paths ``Mixed_7b.branch3x3_2a.conv.kernel``)."""

    def __init__(self, spec: B.Branches, rngs: nnx.Rngs):
        self.paths = spec.paths
        for name, node in spec.children():
            setattr(self, name, build(node, rngs))

    def run_path(self, path, x):
        for step in path:
            if isinstance(step, B.Split):
                x = jnp.concatenate([getattr(self, name)(x) for name, _ in step.parts], axis=-1)
            else:
                x = getattr(self, step[0])(x)
        return x

    def __call__(self, x):
        return jnp.concatenate([self.run_path(p, x) for p in self.paths], axis=-1)


class Residual(BranchBlock):
    """timm's Block35 / Block17 / Block8: ``act(conv2d(concat(branches)) * scale + x)``."""

    def __init__(self, spec: B.Residual, rngs: nnx.Rngs):
        super().__init__(spec, rngs)
        self.scale, self.relu = spec.scale, spec.relu

    def __call__(self, x):
        out = self.conv2d(jnp.concatenate([self.run_path(p, x) for p in self.paths], axis=-1))
        out = out * self.scale + x
        return jax.nn.relu(out) if self.relu else out


def _conv2d(s: L.Conv2d, rngs):
    (ph, pw) = s.padding
    return nnx.Conv(s.in_channels, s.out_channels, s.kernel_size, s.stride, padding=((ph, ph), (pw, pw)),
                    use_bias=True, rngs=rngs)


BUILDERS = {
    L.ConvBlock: lambda s, rngs: ConvBlock(s.in_channels, s.out_channels, s.kernel_size, s.stride, s.padding,
                                           s.batch_norm, s.bn_eps, s.has_bias, rngs=rngs),
    L.Conv2d: _conv2d,
    L.MaxPool: lambda s, rngs: MaxPool(s),
    L.AvgPool: lambda s, rngs: AvgPool(s),
    L.AdaptiveAvgPool: lambda s, rngs: AdaptiveAvgPool(s),
    L.GlobalAvgPool: lambda s, rngs: GlobalAvgPool(),
    L.Flatten: lambda s, rngs: Flatten(),
    L.ReLU: lambda s, rngs: ReLU(),
    L.LRN: lambda s, rngs: LRN(s),
    L.Dropout: lambda s, rngs: nnx.Dropout(s.rate, rngs=rngs),
    L.Linear: lambda s, rngs: nnx.Linear(s.in_features, s.out_features, rngs=rngs),
    B.Sequential: Sequential,
    B.Branches: BranchBlock,
    B.Residual: Residual,
}


def build(node, rngs: nnx.Rngs):
    """The NNX module for one spec node."""
    try:
        builder = BUILDERS[type(node)]
    except KeyError:
        raise TypeError(f"no Flax NNX translation for {type(node).__name__}") from None
    return builder(node, rngs)
