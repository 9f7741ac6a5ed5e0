"""Inception-v4 and Inception-ResNet-v2 in PyTorch; ``state_dict`` keys and shapes are timm's."""
from __future__ import annotations

from ..spec import model_spec
from .model import SpecModel


class InceptionV4(SpecModel):
    arch = "inception_v4"

    def __init__(self, num_classes=1000, aux_logits=False, transform_input=None, dropout=None, variant="default"):
        super().__init__(model_spec(self.arch, num_classes=num_classes, aux_logits=aux_logits,
                                    transform_input=transform_input, dropout=dropout, variant=variant))


class InceptionResNetV2(InceptionV4):
    arch = "inception_resnet_v2"


def inception_v4(**kwargs) -> InceptionV4:
    return InceptionV4(**kwargs)


def inception_resnet_v2(**kwargs) -> InceptionResNetV2:
    return InceptionResNetV2(**kwargs)
