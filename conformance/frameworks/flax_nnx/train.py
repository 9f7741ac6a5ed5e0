"""One training step in Flax NNX + optax (``conformance.training``), in canonical names; with a
``mesh`` the same step data parallel (the model state replicated, the batch split along the
mesh's axis, one jit over all devices: BN's batch statistics stay global)."""
from __future__ import annotations

import numpy as np

from .model import bn_stats


def optax_optimizer(name, hp):
    import optax

    o = hp["optimizers"][name]
    decay = optax.add_decayed_weights(o["weight_decay"])  # coupled: g + wd * w, as torch
    if name == "sgd":
        return optax.chain(decay, optax.sgd(o["lr"], momentum=o["momentum"]))
    return optax.chain(decay, optax.rmsprop(o["lr"], decay=o["rho"], eps=o["eps"], momentum=o["momentum"],
                                            eps_in_sqrt=name == "rmsprop_in"))


def apply(tx, params, state, grads):
    import optax

    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def _canonical(tree, where):
    from weights_bridge.flax_io import flatten
    from weights_bridge.mapping import canonical_arrays

    return canonical_arrays("flax", dict(flatten(tree)), where)


def step(model, x, y, hp, mesh=None, info=None):
    """The step on ``model`` (NCHW ``x``, integer labels ``y``) in chunks, as torch's
    ``procedure``: loss, gradients and BN statistics, then one chunk per optimizer application.
    ``info`` (a dict) receives facts about the run."""
    import jax
    import optax
    from flax import nnx

    model.train()
    num_classes, info = model.spec.num_classes, {} if info is None else info
    xh = np.transpose(x, (0, 2, 3, 1))
    if mesh is not None:
        from jax.sharding import NamedSharding, PartitionSpec

        nnx.update(model, jax.device_put(nnx.state(model), NamedSharding(mesh, PartitionSpec())))
        xh, y = (jax.device_put(a, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))) for a in (xh, y))
        info["input_devices"] = len(xh.sharding.device_set)

    def loss_of(out, y):
        ce = lambda logits: optax.softmax_cross_entropy(
            logits, optax.smooth_labels(jax.nn.one_hot(y, num_classes), hp["label_smoothing"])).mean()
        if not isinstance(out, tuple):
            return ce(out)
        return ce(out.logits) + hp["aux_weight"] * sum(ce(getattr(out, f)) for f in out._fields if f != "logits")

    @nnx.jit
    def forward_backward(model, x, y):
        return nnx.value_and_grad(lambda m: loss_of(m(x), y))(model)

    loss, grads = forward_backward(model, xh, y)
    grads = nnx.to_pure_dict(grads)
    yield {"loss": np.asarray(loss), **{f"grad:{k}": v for k, v in _canonical(grads, "flax grads").items()},
           **{f"stat:{k}": v for k, v in bn_stats(model).items()}}
    if not hp["optimizers"]:
        return
    # The optimizers see the parameters as one vector: each is one elementwise rule (no
    # per-tensor groups), so every number is the same, and XLA compiles one loop, not one per
    # tensor (2.5 s per optimizer on BN-Inception, its forward and backward 6 s).
    from jax.flatten_util import ravel_pytree

    params0 = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    if jax.tree.structure(params0) != jax.tree.structure(grads):
        raise ValueError("flax gradients and parameters differ in structure")
    flat0, unravel = ravel_pytree(params0)
    flat_grads = ravel_pytree(grads)[0]
    for name in hp["optimizers"]:
        tx = optax_optimizer(name, hp)
        params, state = flat0, tx.init(flat0)
        jitted = jax.jit(lambda p, s, g, tx=tx: apply(tx, p, s, g))
        for k in range(1, hp["steps"] + 1):
            params, state = jitted(params, state, flat_grads)
            yield {f"{name}{k}:{c}": v for c, v in _canonical(jax.device_get(unravel(params)), "flax params").items()}
