"""The forward pass every spec-built Keras model shares."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops

from ..spec import ModelSpec
from .layers import build


class SpecModel(keras.Model):
    """NHWC input. ``model(x, training=True)`` uses batch statistics and returns the spec's
    named tuple when aux heads exist; ``training=False`` returns the logits."""

    def __init__(self, spec: ModelSpec, input_size=224, **kwargs):
        super().__init__(name=kwargs.pop("name", spec.arch), **kwargs)
        self.spec = spec
        self.stage_layers = [build(layer, name) for name, layer in spec.stages]
        self.aux_layers = {name: build(head, name) for name, (_, head) in spec.aux_heads.items()}
        self._taps = {tap: name for name, (tap, _) in spec.aux_heads.items()}
        if input_size:
            self.build((None, input_size, input_size, 3))

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
        aux = {}
        for (name, _), layer in zip(self.spec.stages, self.stage_layers):
            # Item by item only once built: build()'s symbolic pass must call (and so build) the Sequence.
            if capture is not None and name in self.spec.capture_children and self.built:
                for i, item in enumerate(layer.items):
                    x = capture[f"{name}.{i}"] = item(x, training=training)
            else:
                x = layer(x, training=training)
                if capture is not None:
                    capture[name] = x
            head = self._taps.get(name)
            if head is not None and training:
                aux[head] = self.aux_layers[head](x, training=training)
                if capture is not None:
                    capture[head] = aux[head]
        return x, aux

    def call(self, x, training=False):
        logits, aux = self.forward_stages(ops.convert_to_tensor(x), training=training)
        return self.spec.pack_outputs(logits, aux) if training else logits
