"""The Flax NNX models (NHWC): one forward pass for every spec, one class per architecture.

    model = create_model("inception_v3", num_classes=10)        # or InceptionV3(num_classes=10)
    model.eval()                                                # BN running statistics, no dropout
    abstract = abstract_model("inception_v3")                   # shapes only: to restore weights into

State paths are the canonical (torch) module paths with NNX's leaf names, so the weights bridge
maps them by rule (``weights_bridge.layouts``)."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from ..spec import ModelSpec, model_spec
from ..spec.registry import check, model_classes
from .blocks import build
from .layers import linear_parts, spatial_mean


class SpecModel(nnx.Module):
    """``model.train()`` / ``model.eval()`` switch BN statistics, dropout and the aux heads
    together (``deterministic`` is the attribute NNX's ``train``/``eval`` set)."""

    def __init__(self, spec: ModelSpec, rngs: nnx.Rngs):
        self.spec = spec
        self.deterministic = False
        for name, node in spec.stages:
            setattr(self, name, build(node, rngs))
        for name, (_, head) in spec.aux_heads.items():
            setattr(self, name, build(head, rngs))

    def forward_stages(self, x, capture=None):
        cfg = self.spec.config
        if self.spec.transform_input:
            x = x * jnp.asarray(cfg.transform_scale, x.dtype) + jnp.asarray(cfg.transform_shift, x.dtype)
        call = lambda name, v: getattr(self, name)(v)
        return self.spec.forward(x, call, call, not self.deterministic, capture,
                                 step=lambda name, i, v: getattr(self, name)[i](v))

    def __call__(self, x):
        """Eval mode: logits (N, num_classes). Train mode with aux heads: the spec's named tuple.
        A feature extractor (the FID Inception): its named tuple of features in both modes."""
        if self.spec.features:
            return self.spec.forward_features(x, lambda name, v: getattr(self, name)(v), spatial_mean,
                                              lambda name, v: linear_parts(getattr(self, name), v))
        logits, aux = self.forward_stages(x)
        return logits if self.deterministic else self.spec.pack_outputs(logits, aux)


class Architecture(SpecModel):
    """A model of the architecture ``arch`` (a class attribute), from the registry's keywords
    (``num_classes``, ``aux_logits``, ``transform_input``, ``dropout``, ``dropout_aux``,
    ``variant``) and ``rngs`` (default ``nnx.Rngs(0)``)."""

    arch = ""

    def __init__(self, *, rngs: nnx.Rngs | None = None, **kwargs):
        super().__init__(model_spec(self.arch, **kwargs), rngs if rngs is not None else nnx.Rngs(0))


# Named in the package (impls.torch_nn.GoogLeNet, ...), where pickle finds them too.
MODELS = model_classes(Architecture, __package__)


def create_model(arch: str, **kwargs) -> Architecture:
    return MODELS[check(arch)](**kwargs)


class _PythonCountedRngs(nnx.Rngs):
    """``nnx.Rngs`` whose ``params`` keys are counted in Python. An ``RngStream`` counts in a
    Variable, and under a trace every Variable update makes JAX walk the whole trace so far (the
    ``Tracer.sharding`` probe in ``Variable.set_value`` builds an error message; jax PR 40041), so
    ``nnx.eval_shape`` of a model took time quadratic in its size: 21-26 s for Inception-ResNet-v2
    on two busy CPU cores, under 3 s counted here. Dropout streams stay ordinary ``RngStream``s."""

    def __init__(self, seed: int):
        super().__init__(seed)
        self.keys = itertools.count()

    def params(self):
        return jax.random.fold_in(self.default.key[...], next(self.keys))


def abstract_model(arch: str, **kwargs) -> Architecture:
    """``create_model(arch, **kwargs)`` with every variable a ``jax.ShapeDtypeStruct``
    (``nnx.eval_shape``): nothing allocated or compiled, the state to restore weights into. The
    same graph and state shapes as ``nnx.eval_shape(lambda: create_model(arch))``, built in
    linear time (``_PythonCountedRngs``)."""
    return nnx.eval_shape(lambda: create_model(arch, rngs=_PythonCountedRngs(0), **kwargs))
