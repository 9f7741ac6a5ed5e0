"""Transfer learning in Flax NNX: new classifiers for ``num_classes``, the backbone frozen.

    model = weights_bridge.flax_io.load_model("googlenet.msgpack", "googlenet")
    model = for_transfer(model, num_classes=5)
    wrt = trainable(model)                       # an nnx filter: the classifiers' nnx.Param
    optimizer = nnx.Optimizer(model, optax.sgd(0.01), wrt=wrt)
    grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, wrt))(model)
    optimizer.update(model, grads)
    model.train()   # dropout and aux heads on; frozen BatchNorm keeps its running statistics

NNX parameters carry no ``requires_grad``: freezing means differentiating and optimising only
``trainable(model)``. Frozen BatchNorm layers always normalise with their running statistics
and never update them, whatever ``model.train()`` says (Keras's rule for ``trainable=False``
BN; the common fine-tuning practice).
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
from flax import nnx

from ..spec.transfer import classifier_layers, head_init, is_head, with_num_classes
from .layers import BatchNorm


class FrozenBatchNorm(BatchNorm):
    """Our BatchNorm, always using (and never updating) its running statistics."""

    def __call__(self, x, use_running_average: Optional[bool] = None, **kwargs):
        return super().__call__(x, use_running_average=True, **kwargs)


def for_transfer(model, num_classes: int, freeze_backbone: bool = True, seed: int = 0):
    """Replaces the main and aux classifiers of ``model`` (in place; returned) by fresh
    ``num_classes``-way nnx.Linear layers (``impls.spec.transfer.head_init``) and freezes the rest."""
    spec = model.spec
    fresh = head_init(spec, num_classes, seed)
    for path, in_features in classifier_layers(spec).items():
        *parents, attr = path.split(".")
        parent = model
        for p in parents:
            parent = getattr(parent, p)
        fc = nnx.Linear(in_features, num_classes, rngs=nnx.Rngs(seed))
        fc.kernel.set_value(jnp.asarray(fresh[path]["weight"].T))  # (out, in) -> (in, out)
        fc.bias.set_value(jnp.asarray(fresh[path]["bias"]))
        setattr(parent, attr, fc)
    model.spec = with_num_classes(spec, num_classes)
    model.frozen_backbone = bool(freeze_backbone)
    if freeze_backbone:
        for _, m in nnx.iter_modules(model):
            if isinstance(m, nnx.BatchNorm) and not isinstance(m, FrozenBatchNorm):
                m.__class__ = FrozenBatchNorm
    return model


def trainable(model):
    """The nnx filter of the parameters to optimise: pass it as ``wrt`` to ``nnx.Optimizer`` and
    ``nnx.DiffState(0, ...)`` to ``nnx.grad``. All ``nnx.Param`` unless the backbone is frozen."""
    if not getattr(model, "frozen_backbone", False):
        return nnx.Param
    spec = model.spec
    return nnx.All(nnx.Param, lambda path, _: is_head(".".join(map(str, path)), spec))
