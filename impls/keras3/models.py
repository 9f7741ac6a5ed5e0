"""The Keras 3 models (NHWC; tensorflow, jax and torch backends): one forward pass for every
spec, one class per architecture.

    model = create_model("inception_v3", num_classes=10)     # built at 299x299, its native size
    model.load_weights("inception_v3.weights.h5")

Padding is explicit everywhere (torch's convention), so the model needs static spatial sizes: it
is built for ``input_size`` (the architecture's native size by default; ``None`` leaves it
unbuilt, for the weights bridge's layout walk)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops

from ..spec import ModelSpec, model_spec
from ..spec.registry import check, model_classes
from .blocks import build

NATIVE = "native"  # input_size default: the architecture's own (config.input_size)


class SpecModel(keras.Model):
    """``model(x, training=True)`` uses batch statistics and returns the spec's named tuple when
    aux heads exist; ``training=False`` returns the logits."""

    def __init__(self, spec: ModelSpec, input_size=NATIVE, **kwargs):
        super().__init__(name=kwargs.pop("name", spec.arch), **kwargs)
        self.spec = spec
        self.stage_layers = [build(node, name) for name, node in spec.stages]
        self.aux_layers = {name: build(head, name) for name, (_, head) in spec.aux_heads.items()}
        size = spec.config.input_size[-1] if input_size == NATIVE else input_size
        if size:
            self.build((None, size, size, 3))

    def build(self, input_shape):
        """Creates every variable, aux heads included, by a symbolic (shape-only) pass."""
        features = {}
        self.forward_stages(keras.KerasTensor(input_shape), capture=features)
        for head, layer in self.aux_layers.items():
            layer(features[self.spec.aux_heads[head][0]])
        self.built = True

    def forward_stages(self, x, training=False, capture=None):
        if self.spec.transform_input:
            cfg = self.spec.config
            x = x * np.asarray(cfg.transform_scale, "float32") + np.asarray(cfg.transform_shift, "float32")
        stages = dict(zip((name for name, _ in self.spec.stages), self.stage_layers))
        # Step by step only once built: build()'s symbolic pass must call (and so build) the Sequence.
        step = (lambda name, i, v: stages[name].ordered()[i](v, training=training)) if self.built else None
        return self.spec.forward(x, lambda name, v: stages[name](v, training=training),
                                 lambda name, v: self.aux_layers[name](v, training=training), training, capture, step)

    def call(self, x, training=False):
        logits, aux = self.forward_stages(ops.convert_to_tensor(x), training=training)
        return self.spec.pack_outputs(logits, aux) if training else logits


class Architecture(SpecModel):
    """A model of the architecture ``arch`` (a class attribute), from the registry's keywords
    (``num_classes``, ``aux_logits``, ``transform_input``, ``dropout``, ``dropout_aux``,
    ``variant``), built for ``input_size`` (see the module)."""

    arch = ""

    def __init__(self, input_size=NATIVE, *, name=None, **spec_kwargs):
        super().__init__(model_spec(self.arch, **spec_kwargs), input_size=input_size, name=name or self.arch)


# Named in the package (impls.torch_nn.GoogLeNet, ...), where pickle finds them too.
MODELS = model_classes(Architecture, __package__)


def create_model(arch: str, **kwargs) -> Architecture:
    return MODELS[check(arch)](**kwargs)
