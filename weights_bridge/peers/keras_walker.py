"""Matches a functional ``keras.applications`` model to our spec by dataflow, never by layer names
(the stem's layers are auto-numbered, and a ``.keras`` file may rename any of them).

From the model's output backwards: ``Dense`` <- ``GlobalAveragePooling2D`` <- each block's
``Concatenate``, whose inputs are its branches in order, each branch a chain of
Activation(relu) <- BatchNormalization <- Conv2D and pools, down to the ``InputLayer``. A residual
block (``keras.applications.InceptionResNetV2``) is

    Concatenate(branches) -> Conv2D(1x1, use_bias=True) = up;  CustomScaleLayer([x, up]) = x + scale * up;
    Activation(relu)  (none after the last block8)

so it is matched from its (optional) ReLU to the scale layer, whose first input must be the block's
input (the shortcut) and whose second the up-projection, whose input is the Concatenate of the
branches, each of which must start from that same block input. The scale is compared exactly: it is
a constant of the graph, not a weight. Every layer's type, kernel, strides, padding, filters and BN
settings are checked against the spec; any difference is an error naming the Keras layer and what
was expected and found. One rule per spec node type (``RULES``).
"""
from __future__ import annotations

from impls.spec import blocks as B
from impls.spec import layers as L

from ..errors import WeightsMismatchError


def fail(where, msg):
    raise WeightsMismatchError(f"{where}: {msg}")


class Walker:
    def __init__(self, model, spec, where):
        self.spec, self.where = spec, where
        self.convs = {}  # canonical prefix -> (Conv2D, BatchNormalization)
        self.biased = {}  # canonical prefix -> Conv2D with bias, no BN (IRv2's residual up-projections)
        self.stages = {}  # our stage name -> the Keras layer whose output it is (verify --layers)
        self.dense = None
        self.output = model.outputs[0]._keras_history.operation if len(model.outputs) == 1 else None
        if self.output is None:
            fail(where, f"expected one model output, found {len(model.outputs)}")

    def parents(self, layer):
        nodes = layer._inbound_nodes
        if len(nodes) != 1:
            fail(self.where, f"Keras layer {layer.name!r} is called {len(nodes)} times; expected once")
        return [t._keras_history.operation for t in nodes[0].input_tensors]

    def parent(self, layer):
        ps = self.parents(layer)
        if len(ps) != 1:
            fail(self.where, f"Keras layer {layer.name!r} has {len(ps)} inputs; expected 1")
        return ps[0]

    def expect(self, layer, kind, what, **attrs):
        if type(layer).__name__ != kind:
            fail(self.where, f"Keras layer {layer.name!r} is a {type(layer).__name__}, expected a {kind} for {what}")
        for attr, want in attrs.items():
            found = getattr(layer, attr)
            found = tuple(found) if isinstance(found, list) else found
            if found != want:
                fail(self.where, f"Keras layer {layer.name!r} ({what}) has {attr}={found!r}, expected {want!r}")

    def relu(self, layer, name):
        self.expect(layer, "Activation", name)
        act = getattr(layer.activation, "__name__", layer.activation)
        if act != "relu":
            fail(self.where, f"Keras layer {layer.name!r} ({name}) applies {act!r}, expected relu")
        return self.parent(layer)

    def step(self, layer, node, name):
        """Matches ``node`` ending at ``layer``; returns the layer feeding it."""
        rule = RULES.get(type(node))
        if rule is None:
            fail(self.where, f"{name}: no Keras counterpart rule for {type(node).__name__}")
        return rule(self, layer, node, name)

    def conv_block(self, layer, spec: L.ConvBlock, name):
        """Activation <- BN <- Conv2D for our ConvBlock ``name``; returns the conv's input layer."""
        bn = self.relu(layer, name)
        self.expect(bn, "BatchNormalization", f"{name}.bn", center=True, scale=False)
        if abs(bn.epsilon - spec.bn_eps) > 1e-12 or bn.axis not in (-1, 3, [3], [-1]):
            fail(self.where, f"Keras layer {bn.name!r} ({name}.bn) has epsilon={bn.epsilon}, axis={bn.axis}; "
                             f"expected epsilon={spec.bn_eps}, channels-last axis")
        conv = self.parent(bn)
        (kh, kw), (ph, pw) = spec.kernel_size, spec.padding
        if (ph, pw) == (0, 0):
            paddings = ("valid", "same") if (kh, kw) == (1, 1) else ("valid",)
        elif spec.stride == (1, 1) and (ph, pw) == ((kh - 1) // 2, (kw - 1) // 2) and kh % 2 and kw % 2:
            paddings = ("same",)
        else:
            paddings = ()
        self.expect(conv, "Conv2D", f"{name}.conv", filters=spec.out_channels, kernel_size=spec.kernel_size,
                    strides=spec.stride, use_bias=False, dilation_rate=(1, 1), groups=1, data_format="channels_last")
        if conv.padding not in paddings:
            fail(self.where, f"Keras layer {conv.name!r} ({name}.conv) has padding={conv.padding!r}, "
                             f"expected {' or '.join(map(repr, paddings)) or 'a padding Keras cannot express'} "
                             f"(torch padding {spec.padding})")
        if conv.kernel.shape[2] != spec.in_channels:
            fail(self.where, f"Keras layer {conv.name!r} ({name}.conv) has kernel shape {tuple(conv.kernel.shape)}, "
                             f"expected {(kh, kw, spec.in_channels, spec.out_channels)}")
        self.convs[name] = (conv, bn)
        return self.parent(conv)

    def max_pool(self, layer, spec: L.MaxPool, name):
        if spec.padding != (0, 0) or spec.ceil_mode:
            fail(self.where, f"{name}: our max pool {spec} has no Keras equivalent")
        self.expect(layer, "MaxPooling2D", name, pool_size=spec.kernel_size, strides=spec.stride, padding="valid")
        return self.parent(layer)

    def avg_pool(self, layer, spec: L.AvgPool, name):
        k = spec.kernel_size
        if spec.count_include_pad or spec.stride != (1, 1) or spec.padding != ((k[0] - 1) // 2, (k[1] - 1) // 2):
            fail(self.where, f"{name}: Keras AveragePooling2D(padding='same') excludes the padding; "
                             f"our pool {spec} does not match (use variant 'keras')")
        self.expect(layer, "AveragePooling2D", name, pool_size=k, strides=(1, 1), padding="same")
        return self.parent(layer)

    def sequence(self, layer, spec: B.Sequential, name):
        for step, node in reversed(spec.steps):  # timm's nested Sequentials, named by position
            layer = self.step(layer, node, f"{name}.{step}")
        return layer

    def branches(self, layer, spec: B.Branches, name):
        self.expect(layer, "Concatenate", name)
        inputs = self.parents(layer)
        if len(inputs) != len(spec.paths):
            fail(self.where, f"Keras layer {layer.name!r} ({name}) concatenates {len(inputs)} branches, "
                             f"expected {len(spec.paths)}")
        starts = []
        for path, cur in zip(spec.paths, inputs):
            for step in reversed(path):
                cur = self.split(cur, step, name) if isinstance(step, B.Split) else \
                    self.step(cur, step[1], f"{name}.{step[0]}")
            starts.append(cur)
        if len({id(s) for s in starts}) != 1:
            fail(self.where, f"the branches of Keras layer {layer.name!r} ({name}) start from different layers: "
                             f"{[s.name for s in starts]}")
        return starts[0]

    def split(self, layer, split: B.Split, name):
        self.expect(layer, "Concatenate", f"{name}.{'/'.join(n for n, _ in split.parts)}")
        parts = self.parents(layer)
        if len(parts) != len(split.parts):
            fail(self.where, f"Keras layer {layer.name!r} concatenates {len(parts)} tensors, "
                             f"expected {len(split.parts)} ({name} split)")
        ins = [self.step(p, s, f"{name}.{n}") for p, (n, s) in zip(parts, split.parts)]
        if len({id(i) for i in ins}) != 1:
            fail(self.where, f"{name}: the split convs of Keras layer {layer.name!r} have different inputs")
        return ins[0]

    def residual(self, layer, spec: B.Residual, name):
        if spec.relu:
            layer = self.relu(layer, f"{name}.act")
        elif type(layer).__name__ == "Activation":
            fail(self.where, f"Keras layer {layer.name!r} applies an activation after {name}, which has none "
                             f"(IRv2's last block8)")
        self.expect(layer, "CustomScaleLayer", f"{name} (x + scale * conv2d(branches))")
        if float(layer.scale) != spec.scale:
            fail(self.where, f"Keras layer {layer.name!r} ({name}) scales its residual by {layer.scale!r}, "
                             f"expected {spec.scale!r}")
        ins = self.parents(layer)
        if len(ins) != 2:
            fail(self.where, f"Keras layer {layer.name!r} ({name}) adds {len(ins)} inputs, expected 2 (x, up)")
        shortcut, up = ins
        p = spec.project
        self.expect(up, "Conv2D", f"{name}.conv2d", filters=p.out_channels, kernel_size=p.kernel_size,
                    strides=p.stride, use_bias=True, dilation_rate=(1, 1), groups=1, data_format="channels_last")
        if p.padding != (0, 0) or p.kernel_size != (1, 1) or up.padding not in ("valid", "same"):
            fail(self.where, f"Keras layer {up.name!r} ({name}.conv2d) has padding={up.padding!r}; expected a 1x1 "
                             f"conv (our {p})")
        if up.kernel.shape[2] != p.in_channels:
            fail(self.where, f"Keras layer {up.name!r} ({name}.conv2d) has kernel shape {tuple(up.kernel.shape)}, "
                             f"expected {(*p.kernel_size, p.in_channels, p.out_channels)}")
        self.biased[f"{name}.conv2d"] = up
        start = self.branches(self.parent(up), spec, name)
        if start is not shortcut:
            fail(self.where, f"Keras layer {layer.name!r} ({name}) adds {shortcut.name!r} to its residual, but its "
                             f"branches start from {start.name!r}; expected the same layer")
        return start

    def dropout(self, layer, spec: L.Dropout, name):  # keras.applications has none: eval makes it the identity
        return self.parent(layer) if type(layer).__name__ == "Dropout" else layer

    def dense(self, layer, spec: L.Linear, name):
        self.expect(layer, "Dense", name, units=spec.out_features, use_bias=True)
        act = getattr(layer.activation, "__name__", "")
        if act not in ("linear", "softmax"):
            fail(self.where, f"Keras layer {layer.name!r} ({name}) applies {act!r}; expected None or softmax")
        self.dense = layer
        return self.parent(layer)

    def global_pool(self, layer, spec: L.GlobalAvgPool, name):
        self.expect(layer, "GlobalAveragePooling2D", name, keepdims=False)
        return self.parent(layer)

    def run(self):
        cur = self.output
        for name, node in reversed(self.spec.stages):
            self.stages[name] = cur
            cur = self.step(cur, node, name)
        self.expect(cur, "InputLayer", "the model input")
        if self.dense is None:
            fail(self.where, "no classifier found")
        return self


RULES = {L.ConvBlock: Walker.conv_block, L.MaxPool: Walker.max_pool, L.AvgPool: Walker.avg_pool,
         L.Dropout: Walker.dropout, L.Linear: Walker.dense, L.GlobalAvgPool: Walker.global_pool,
         B.Sequential: Walker.sequence, B.Branches: Walker.branches, B.Residual: Walker.residual}
