"""The Keras 3 models (NHWC; tensorflow, jax and torch backends): one forward pass for every
spec, one class per architecture.

    model = create_model("inception_v3", num_classes=10)     # built at 299x299, its native size
    model.load_weights("inception_v3.weights.h5")

Padding is explicit everywhere (torch's convention), so the model needs static spatial sizes
when called. It is built for ``input_size`` (the architecture's native size by default, kept in
its config; ``None`` leaves it unbuilt, for the weights bridge's layout walk).

Every model and layer class is registered with Keras (package "inception_bridge"), so
``model.save("x.keras")`` and, after ``import impls.keras3``, ``keras.saving.load_model("x.keras")``
(safe mode, no ``custom_objects``) work on every backend: a model's config is its architecture,
the ``model_spec`` keywords and the input size, and loading rebuilds it from the spec."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops

from ..spec import ModelSpec, model_spec
from ..spec.registry import SERIALIZATION_PACKAGE, check, model_classes, spec_arguments
from ..spec.tensors import canonical_shapes
from .blocks import build
from .layers import spatial_mean

NATIVE = "native"  # input_size default: the architecture's own (config.input_size)
INITIALIZERS = ("kernel_initializer", "bias_initializer", "gamma_initializer", "beta_initializer",
                "moving_mean_initializer", "moving_variance_initializer")


class Placeholder(keras.initializers.Initializer):
    """Zeros made by numpy: a variable about to be assigned loaded weights needs no random
    draw, and on jax each random initializer compiles once per shape (24 of the 29 s GoogLeNet's
    build took)."""

    def __call__(self, shape, dtype=None):
        return np.zeros(shape, dtype or keras.config.floatx())


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class SpecModel(keras.Model):
    """``model(x, training=True)`` uses batch statistics and returns the spec's named tuple when
    aux heads exist; ``training=False`` returns the logits. ``initialize=False`` creates the
    variables as zeros, for weights loaded right after (``weights_bridge.keras_io.to_model``)."""

    def __init__(self, spec: ModelSpec, input_size=NATIVE, initialize=True, **kwargs):
        super().__init__(name=kwargs.pop("name", spec.arch), **kwargs)
        self.spec = spec
        self.stage_layers = [build(node, name) for name, node in spec.stages]
        self.aux_layers = {name: build(head, name) for name, (_, head) in spec.aux_heads.items()}
        if not initialize:
            for layer in self._flatten_layers(include_self=False, recursive=True):
                for attr in INITIALIZERS:
                    if hasattr(layer, attr):
                        setattr(layer, attr, Placeholder())
        size = spec.config.input_size[-1] if input_size == NATIVE else input_size
        self.input_size = size
        if size:
            self.build((None, size, size, 3))

    def get_config(self):
        """Plain data that rebuilds this model (``from_config``): the architecture, the spec's
        keywords (``impls.spec.registry.spec_arguments``), the input size it was built for."""
        return {"name": self.name, "input_size": self.input_size, "architecture": self.spec.arch,
                **spec_arguments(self.spec)}

    @classmethod
    def from_config(cls, config):
        kwargs = dict(config)
        arch, size, name = kwargs.pop("architecture"), kwargs.pop("input_size"), kwargs.pop("name", None)
        return SpecModel(model_spec(arch, **kwargs), input_size=size, name=name)

    def build(self, input_shape):
        """Creates every variable from the spec's tensor shapes, with no forward pass: a layer is
        named by its canonical module path, so its weight's canonical shape gives the channels it
        takes (``canonical_shapes``). A symbolic pass (on torch a real one: Keras's torch
        ``max_pool`` needs real tensors) took 3-8 s for GoogLeNet and 20-23 s for
        Inception-ResNet-v2 on each backend, two busy cores; this takes 0.4-2 s and 2-3.5 s. The
        input's height and width matter only when the model is called (the pooling pads)."""
        shapes = canonical_shapes(self.spec)

        def build_within(parent):  # in each container's name scope, as a call would: 'googlenet/aux1/aux1-fc2/kernel'
            for layer in parent._flatten_layers(include_self=False, recursive=False):
                weight = shapes.get(layer.name.replace("-", ".") + ".weight")
                if weight is not None and not layer.built:
                    layer.build(_input_shape(weight))
                else:
                    with keras.name_scope(layer.name, caller=layer):
                        build_within(layer)
                layer.built = True

        build_within(self)
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
        if self.spec.features:  # a feature extractor (the FID Inception): its named tuple
            stages = dict(zip((name for name, _ in self.spec.stages), self.stage_layers))
            return self.spec.forward_features(ops.convert_to_tensor(x), lambda name, v: stages[name](
                v, training=training), spatial_mean, lambda name, v: stages[name].parts(v))
        logits, aux = self.forward_stages(ops.convert_to_tensor(x), training=training)
        return self.spec.pack_outputs(logits, aux) if training else logits


def _input_shape(weight: tuple) -> tuple:
    """The input a layer takes, from its weight's canonical (torch) shape: a convolution's
    (out, in, kh, kw) and a linear layer's (out, in) take ``in`` channels, a BN's (C,) takes C."""
    if len(weight) == 4:
        return (None, None, None, weight[1])
    return (None, weight[1]) if len(weight) == 2 else (None, None, None, weight[0])


class Architecture(SpecModel):
    """A model of the architecture ``arch`` (a class attribute), from the registry's keywords
    (``num_classes``, ``aux_logits``, ``transform_input``, ``dropout``, ``dropout_aux``,
    ``variant``), built for ``input_size`` (see the module)."""

    arch = ""

    def __init__(self, input_size=NATIVE, *, name=None, initialize=True, **spec_kwargs):
        super().__init__(model_spec(self.arch, **spec_kwargs), input_size=input_size, initialize=initialize,
                         name=name or self.arch)


    @classmethod
    def from_config(cls, config):
        kwargs = dict(config)
        if kwargs.pop("architecture", cls.arch) != cls.arch:
            raise ValueError(f"{cls.__name__} builds {cls.arch!r}, the config names {config['architecture']!r}")
        return cls(**kwargs)


# Named in the package (impls.torch_nn.GoogLeNet, ...), where pickle finds them too; registered
# with Keras by that name ("inception_bridge>GoogLeNet").
MODELS = {arch: keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)(cls)
          for arch, cls in model_classes(Architecture, __package__).items()}


def create_model(arch: str, **kwargs) -> Architecture:
    return MODELS[check(arch)](**kwargs)
