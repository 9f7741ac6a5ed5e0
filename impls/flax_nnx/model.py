"""The forward pass every spec-built Flax NNX model shares."""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ..spec import ModelSpec
from .layers import build


class SpecModel(nnx.Module):
    """NHWC input. ``model.train()`` / ``model.eval()`` switch BN statistics, dropout and the
    aux heads together (``deterministic`` is the attribute NNX's ``train``/``eval`` set)."""

    def __init__(self, spec: ModelSpec, rngs: nnx.Rngs):
        self.spec = spec
        self.deterministic = False
        for name, layer in spec.stages:
            setattr(self, name, build(layer, rngs))
        for name, (_, head) in spec.aux_heads.items():
            setattr(self, name, build(head, rngs))

    def forward_stages(self, x, capture=None):
        spec = self.spec
        if spec.transform_input:
            x = x * jnp.asarray(spec.config.transform_scale, x.dtype) + jnp.asarray(spec.config.transform_shift, x.dtype)
        taps = {tap: name for name, (tap, _) in spec.aux_heads.items()}
        aux = {}
        for name, _ in spec.stages:
            if capture is not None and name in spec.capture_children:
                for i, item in enumerate(getattr(self, name)):  # what Sequential does, item by item
                    x = capture[f"{name}.{i}"] = item(x)
            else:
                x = getattr(self, name)(x)
                if capture is not None:
                    capture[name] = x
            head = taps.get(name)
            if head is not None and not self.deterministic:
                aux[head] = getattr(self, head)(x)
                if capture is not None:
                    capture[head] = aux[head]
        return x, aux

    def __call__(self, x):
        """Eval mode: logits (N, num_classes). Train mode with aux heads: the spec's named tuple."""
        logits, aux = self.forward_stages(x)
        return logits if self.deterministic else self.spec.pack_outputs(logits, aux)
