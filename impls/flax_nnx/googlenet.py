"""GoogLeNet in Flax NNX (NHWC): ``googlenet`` (torchvision's) and ``googlenet_paper``."""
from __future__ import annotations

from flax import nnx

from ..spec.googlenet import googlenet_spec
from .model import SpecModel


class GoogLeNet(SpecModel):
    def __init__(self, variant="googlenet", num_classes=1000, aux_logits=True, transform_input=None,
                 dropout=None, dropout_aux=None, *, rngs: nnx.Rngs | None = None):
        super().__init__(googlenet_spec(variant, num_classes=num_classes, aux_logits=aux_logits,
                                        transform_input=transform_input, dropout=dropout, dropout_aux=dropout_aux),
                         rngs if rngs is not None else nnx.Rngs(0))


def googlenet(**kwargs) -> GoogLeNet:
    return GoogLeNet("googlenet", **kwargs)


def googlenet_paper(**kwargs) -> GoogLeNet:
    return GoogLeNet("googlenet_paper", **kwargs)
