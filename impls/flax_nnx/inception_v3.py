"""Inception v3 in Flax NNX (NHWC), torchvision-compatible through the weights bridge."""
from __future__ import annotations

from flax import nnx

from ..spec.inception_v3 import inception_v3_spec
from .model import SpecModel


class InceptionV3(SpecModel):
    def __init__(self, num_classes=1000, aux_logits=True, transform_input=None, dropout=None, variant="default", *,
                 rngs: nnx.Rngs | None = None):
        super().__init__(inception_v3_spec(num_classes=num_classes, aux_logits=aux_logits,
                                           transform_input=transform_input, dropout=dropout, variant=variant),
                         rngs if rngs is not None else nnx.Rngs(0))


def inception_v3(**kwargs) -> InceptionV3:
    return InceptionV3(**kwargs)
