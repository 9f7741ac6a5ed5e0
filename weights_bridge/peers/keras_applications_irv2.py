"""The keras.applications walker's rules for Inception-ResNet-v2's building blocks, on top of the
Inception v3 ones in ``keras_applications``: timm's nested ``nn.Sequential``s (our spec's tuples,
canonical names ``<name>.<i>``) and the residual blocks.

``keras.applications.InceptionResNetV2`` writes a residual block as

    Concatenate(branches) -> Conv2D(1x1, use_bias=True) = up;  CustomScaleLayer([x, up]) = x + scale * up;
    Activation(relu)  (none after the last block8)

so, walking backwards, a block is matched from its (optional) ReLU to the scale layer, whose
first input must be the block's input (the shortcut) and whose second the up-projection, whose
input is the Concatenate of the branches, each of which must start from that same block input.
The scale is compared exactly with the spec's (0.17 / 0.10 / 0.20 / 1.0): it is a constant of
the graph, not a weight, so a file with other scales describes a different network.
"""
from __future__ import annotations

from impls.spec.blocks import BranchBlock
from impls.spec.blocks_v4 import Residual

from .keras_applications import _fail, _Walker


class Walker(_Walker):
    """Every architecture's walker: for a spec without tuples or ``Residual`` blocks (Inception v3)
    it matches exactly what ``_Walker`` does."""

    def step(self, layer, spec, name):
        if isinstance(spec, tuple):  # a Sequential: its items in reverse, named by position
            for i in reversed(range(len(spec))):
                sub = f"{name}.{i}"
                layer = self.block(layer, spec[i], sub) if isinstance(spec[i], BranchBlock) else self.step(
                    layer, spec[i], sub)
            return layer
        return super().step(layer, spec, name)

    def relu(self, layer, name):
        self.expect(layer, "Activation", name)
        act = getattr(layer.activation, "__name__", layer.activation)
        if act != "relu":
            _fail(self.where, f"Keras layer {layer.name!r} ({name}) applies {act!r}, expected relu")
        return self.parent(layer)

    def block(self, layer, spec, name):
        if not isinstance(spec, Residual):
            return super().block(layer, spec, name)
        if spec.relu:
            layer = self.relu(layer, f"{name}.act")
        elif type(layer).__name__ == "Activation":
            _fail(self.where, f"Keras layer {layer.name!r} applies an activation after {name}, which has none "
                              f"(IRv2's last block8)")
        self.expect(layer, "CustomScaleLayer", f"{name} (x + scale * conv2d(branches))")
        if float(layer.scale) != spec.scale:
            _fail(self.where, f"Keras layer {layer.name!r} ({name}) scales its residual by {layer.scale!r}, "
                              f"expected {spec.scale!r}")
        ins = self.parents(layer)
        if len(ins) != 2:
            _fail(self.where, f"Keras layer {layer.name!r} ({name}) adds {len(ins)} inputs, expected 2 (x, up)")
        shortcut, up = ins
        p = spec.project
        self.expect(up, "Conv2D", f"{name}.conv2d", filters=p.out_channels, kernel_size=p.kernel_size,
                    strides=p.stride, use_bias=True, dilation_rate=(1, 1), groups=1, data_format="channels_last")
        if p.padding != (0, 0) or p.kernel_size != (1, 1) or up.padding not in ("valid", "same"):
            _fail(self.where, f"Keras layer {up.name!r} ({name}.conv2d) has padding={up.padding!r}; expected a 1x1 "
                              f"conv (our {p})")
        if up.kernel.shape[2] != p.in_channels:
            _fail(self.where, f"Keras layer {up.name!r} ({name}.conv2d) has kernel shape {tuple(up.kernel.shape)}, "
                              f"expected {(*p.kernel_size, p.in_channels, p.out_channels)}")
        self.biased[f"{name}.conv2d"] = up
        start = super().block(self.parent(up), spec, name)
        if start is not shortcut:
            _fail(self.where, f"Keras layer {layer.name!r} ({name}) adds {shortcut.name!r} to its residual, but its "
                              f"branches start from {start.name!r}; expected the same layer")
        return start
