"""GoogLeNet in Keras 3 (NHWC; tensorflow, jax and torch backends)."""
from __future__ import annotations

from ..spec.googlenet import googlenet_spec
from .model import SpecModel


class GoogLeNet(SpecModel):
    def __init__(self, variant="googlenet", num_classes=1000, aux_logits=True, transform_input=None,
                 dropout=None, dropout_aux=None, input_size=224, **kwargs):
        super().__init__(googlenet_spec(variant, num_classes=num_classes, aux_logits=aux_logits,
                                        transform_input=transform_input, dropout=dropout, dropout_aux=dropout_aux),
                         input_size=input_size, **kwargs)


def googlenet(**kwargs) -> GoogLeNet:
    return GoogLeNet("googlenet", **kwargs)


def googlenet_paper(**kwargs) -> GoogLeNet:
    return GoogLeNet("googlenet_paper", **kwargs)
