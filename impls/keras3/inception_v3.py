"""Inception v3 in Keras 3 (NHWC; tensorflow, jax and torch backends), torchvision-compatible
through the weights bridge."""
from __future__ import annotations

from ..spec.inception_v3 import CONFIGS, inception_v3_spec
from .model import SpecModel


class InceptionV3(SpecModel):
    # The aux head's 5x5 valid conv needs a 17x17 Mixed_6e map, i.e. 299-ish input: build there.
    def __init__(self, num_classes=1000, aux_logits=True, transform_input=None, dropout=None,
                 input_size=CONFIGS["inception_v3"].input_size[-1], variant="default", **kwargs):
        super().__init__(inception_v3_spec(num_classes=num_classes, aux_logits=aux_logits,
                                           transform_input=transform_input, dropout=dropout, variant=variant),
                         input_size=input_size, **kwargs)


def inception_v3(**kwargs) -> InceptionV3:
    return InceptionV3(**kwargs)
