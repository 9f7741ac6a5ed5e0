"""Keras 3 translations of the Inception-v4 / Inception-ResNet-v2 spec blocks (NHWC, every backend).
Layers are named by canonical module path with '-' for '.', as in ``impls.keras3.layers``."""
from __future__ import annotations

from keras import layers, ops

from ..spec import blocks_v4 as V4
from .layers import BranchBlock, _chain, build


class Sequence(layers.Layer):
    """torch's ``nn.Sequential``: items named ``<name>-<index>``."""

    def __init__(self, specs, **kwargs):
        super().__init__(**kwargs)
        self.items = [build(s, f"{self.name}-{i}") for i, s in enumerate(specs)]

    def call(self, x, training=False):
        return _chain(self.items, x, training)


class Residual(BranchBlock):
    """timm's Block35 / Block17 / Block8: ``act(conv2d(concat(branches)) * scale + x)``."""

    def __init__(self, spec: V4.Residual, **kwargs):
        super().__init__(spec, **kwargs)
        self.scale, self.relu = spec.scale, spec.relu

    def call(self, x, training=False):
        out = ops.concatenate([self._run_branch(p, x, training) for p in self.paths], axis=-1)
        out = self._run_step("conv2d", out, training) * self.scale + x
        return ops.relu(out) if self.relu else out


def build_v4(spec, name: str):
    """The Keras layer for a v4 spec entry, or None if ``spec`` is none of them."""
    if isinstance(spec, tuple):
        return Sequence(spec, name=name)
    if isinstance(spec, V4.Conv2d):  # the 1x1 up-projection: no padding to make explicit
        if spec.padding != (0, 0):
            raise NotImplementedError("Keras bare Conv2d with padding (none of these models has one)")
        return layers.Conv2D(spec.out_channels, spec.kernel_size, spec.stride, padding="valid", use_bias=True,
                             name=name)
    if isinstance(spec, V4.Residual):
        return Residual(spec, name=name)
    if isinstance(spec, V4.Branches):
        return BranchBlock(spec, name=name)
    return None
