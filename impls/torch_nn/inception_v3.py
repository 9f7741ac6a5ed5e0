"""Inception v3 in PyTorch, torchvision-compatible (``state_dict`` keys and shapes are torchvision's)."""
from __future__ import annotations

from ..spec.inception_v3 import inception_v3_spec
from .model import SpecModel


class InceptionV3(SpecModel):
    def __init__(self, num_classes=1000, aux_logits=True, transform_input=None, dropout=None, variant="default"):
        super().__init__(inception_v3_spec(num_classes=num_classes, aux_logits=aux_logits,
                                           transform_input=transform_input, dropout=dropout, variant=variant))


def inception_v3(**kwargs) -> InceptionV3:
    return InceptionV3(**kwargs)
