"""BN-Inception (Inception v2, Ioffe & Szegedy 2015) from ``impls.spec.bn_inception``."""
from __future__ import annotations

from flax import nnx

from ..spec.bn_inception import bn_inception_spec
from .model import SpecModel


class BNInception(SpecModel):
    def __init__(self, num_classes=1000, aux_logits=False, transform_input=None, dropout=None, variant="default", *, rngs: nnx.Rngs | None = None):
        super().__init__(bn_inception_spec(num_classes=num_classes, aux_logits=aux_logits,
                                           transform_input=transform_input, dropout=dropout, variant=variant), rngs if rngs is not None else nnx.Rngs(0))


def bn_inception(**kwargs) -> BNInception:
    return BNInception(**kwargs)
