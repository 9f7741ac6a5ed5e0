"""Keras 3 translation of the spec's nodes: one registry from node type to layer, ``build``.

Every layer is named by its canonical (torch) module path with '-' for '.', e.g.
``inception3a-branch2-1-conv`` (the torch backend forbids '.' in variable paths; no torch module
name contains '-'), so a variable's canonical tensor name follows from its layer name. Adding a
node type to the spec is one entry in ``BUILDERS`` (docs/architecture.md).
"""
from __future__ import annotations

from keras import layers, ops

from ..spec import blocks as B
from ..spec import layers as L
from .layers import (LRN, AdaptiveAvgPool, AvgPool, ConvBlock, Flatten, FromSpec, GlobalAvgPool, Linear, MaxPool, ReLU,
                     serializable)


def call_chain(layer_list, x, training):
    """Runs layers in order; Keras drops ``training`` for layers whose call() does not take it."""
    for layer in layer_list:
        x = layer(x, training=training)
    return x


@serializable
class Sequence(FromSpec, layers.Layer):
    """torch's ``nn.Sequential``: steps named ``<name>-<step>``. Named steps (an aux head's
    ``conv``, ``fc1``) are attributes of that name, positional ones ('0', '1', ...) the list
    ``items``: the attribute paths Keras's weight files use."""

    def __init__(self, spec: B.Sequential, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.step_names = tuple(step for step, _ in spec.steps)
        built = [build(node, f"{self.name}-{step}") for step, node in spec.steps]
        if all(step.isdigit() for step in self.step_names):
            self.items = built
        else:
            for step, layer in zip(self.step_names, built):
                setattr(self, step, layer)

    def ordered(self):
        """The step layers in order."""
        return self.items if all(s.isdigit() for s in self.step_names) else [getattr(self, s) for s in self.step_names]

    def call(self, x, training=False):
        return call_chain(self.ordered(), x, training)


@serializable
class BranchBlock(FromSpec, layers.Layer):
    """Parallel paths concatenated on channels: each step a sublayer named ``<block>-<step>``
    (e.g. ``Mixed_7b-branch3x3_2a``), looked up by the step's name."""

    def __init__(self, spec: B.Branches, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.paths = spec.paths
        children = spec.children()
        # Sublayers in a list (Keras tracks it) looked up by step name. Method names avoid
        # ``_path``: Keras layers keep their variable path there.
        self.steps = [build(node, f"{self.name}-{name}") for name, node in children]
        self.step_index = {name: i for i, (name, _) in enumerate(children)}

    def step(self, name):
        return self.steps[self.step_index[name]]

    def run_branch(self, path, x, training):
        for step in path:
            if isinstance(step, B.Split):
                x = ops.concatenate([self.step(name)(x, training=training) for name, _ in step.parts], axis=-1)
            else:
                x = self.step(step[0])(x, training=training)
        return x

    def call(self, x, training=False):
        return ops.concatenate([self.run_branch(p, x, training) for p in self.paths], axis=-1)


@serializable
class Residual(BranchBlock):
    """timm's Block35 / Block17 / Block8: ``act(conv2d(concat(branches)) * scale + x)``."""

    def __init__(self, spec: B.Residual, **kwargs):
        super().__init__(spec, **kwargs)
        self.scale, self.relu = spec.scale, spec.relu

    def call(self, x, training=False):
        out = ops.concatenate([self.run_branch(p, x, training) for p in self.paths], axis=-1)
        out = self.step("conv2d")(out) * self.scale + x
        return ops.relu(out) if self.relu else out


def _conv2d(s: L.Conv2d, name):
    if s.padding != (0, 0):  # the 1x1 up-projection: no padding to make explicit
        raise NotImplementedError("Keras bare Conv2d with padding (none of these models has one)")
    return layers.Conv2D(s.out_channels, s.kernel_size, s.stride, padding="valid", use_bias=True, name=name)


BUILDERS = {
    L.ConvBlock: lambda s, name: ConvBlock(s.in_channels, s.out_channels, s.kernel_size, s.stride, s.padding,
                                           s.batch_norm, s.bn_eps, s.has_bias, name=name),
    L.Conv2d: _conv2d,
    L.MaxPool: lambda s, name: MaxPool(s, name=name),
    L.AvgPool: lambda s, name: AvgPool(s, name=name),
    L.AdaptiveAvgPool: lambda s, name: AdaptiveAvgPool(s, name=name),
    L.GlobalAvgPool: lambda s, name: GlobalAvgPool(name=name),
    L.Flatten: lambda s, name: Flatten(name=name),
    L.ReLU: lambda s, name: ReLU(name=name),
    L.LRN: lambda s, name: LRN(s, name=name),
    L.Dropout: lambda s, name: layers.Dropout(s.rate, name=name),
    L.Linear: lambda s, name: Linear(s.out_features, name=name),
    B.Sequential: lambda s, name: Sequence(s, name=name),
    B.Branches: lambda s, name: BranchBlock(s, name=name),
    B.Residual: lambda s, name: Residual(s, name=name),
}


def build(node, name: str):
    """The Keras layer for one spec node, named by its canonical module path."""
    try:
        builder = BUILDERS[type(node)]
    except KeyError:
        raise TypeError(f"no Keras translation for {type(node).__name__}") from None
    return builder(node, name)
