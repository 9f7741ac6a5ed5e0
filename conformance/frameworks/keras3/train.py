"""One training step in Keras 3 on any backend (``conformance.training``), in canonical names;
``place`` puts the batch where a ``keras.distribution`` wants it (data parallel on jax).

Weight decay is coupled as torch's (``g + wd * w`` on the gradient): Keras's own ``weight_decay``
is decoupled. The loss is Keras's per-sample categorical cross-entropy (label smoothing, from
logits), averaged as sum / batch: the losses' default reduction computes its mean in float32
on the torch backend, which a float64 step must not.
"""
from __future__ import annotations

import contextlib

import numpy as np


def rmsprop_eps_outside():
    """TRANSLATED: Keras's RMSprop with torch's denominator sqrt(v) + eps instead of
    sqrt(v + eps) (Keras 3 has no option for it); everything else is Keras's update_step."""
    import keras
    from keras import ops

    class RMSpropEpsOutsideSqrt(keras.optimizers.RMSprop):
        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            gradient = ops.cast(gradient, variable.dtype)
            velocity = self._velocities[self._get_variable_index(variable)]
            momentum = self._momentums[self._get_variable_index(variable)]
            self.assign(velocity, ops.add(ops.multiply(self.rho, velocity),
                                          ops.multiply(1 - self.rho, ops.square(gradient))))
            increment = ops.divide(ops.multiply(lr, gradient), ops.add(ops.sqrt(velocity), self.epsilon))
            self.assign(momentum, ops.add(ops.multiply(self.momentum, momentum), increment))
            self.assign_sub(variable, momentum)

    return RMSpropEpsOutsideSqrt


def optimizer(name, hp, dtype):
    import keras

    o = hp["optimizers"][name]
    if name == "sgd":
        opt = keras.optimizers.SGD(o["lr"], momentum=o["momentum"])
        if dtype == "float64":  # TF casts the Python-float momentum through float32 (0.899999976)
            opt.momentum = np.float64(opt.momentum)
        return opt
    cls = keras.optimizers.RMSprop if name == "rmsprop_in" else rmsprop_eps_outside()
    return cls(o["lr"], rho=o["rho"], momentum=o["momentum"], epsilon=o["eps"])


def loss_fn(hp):
    import keras
    from keras import ops

    def ce(y, logits):
        per_sample = keras.losses.categorical_crossentropy(y, logits, from_logits=True,
                                                           label_smoothing=hp["label_smoothing"])
        return ops.divide(ops.sum(per_sample), ops.shape(logits)[0])

    def loss(out, y):
        if not isinstance(out, tuple):
            return ce(y, out)
        return ce(y, out.logits) + hp["aux_weight"] * sum(ce(y, getattr(out, f)) for f in out._fields if f != "logits")

    return loss


def _gradients(model, backend, loss_of, x, y):
    """(loss, gradients of the trainable variables), BN statistics updated by the forward."""
    tvars = model.trainable_variables
    if backend == "jax":
        import jax

        def f(tv, ntv, x, y):
            out, ntv = model.stateless_call(tv, ntv, x, training=True)
            return loss_of(out, y), ntv

        (loss, ntv), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(
            [v.value for v in tvars], [v.value for v in model.non_trainable_variables], x, y)
        for v, value in zip(model.non_trainable_variables, ntv):
            v.assign(value)
        return loss, grads
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(model(x, training=True), y)
        return loss, tape.gradient(loss, tvars)
    from keras import ops

    model.zero_grad()
    loss = loss_of(model(x, training=True), ops.convert_to_tensor(y))
    loss.backward()
    return loss.detach(), [v.value.grad.detach().clone() for v in tvars]


def _coupled(grads, weights, wd):
    """torch's coupled weight decay, ``g + wd * w`` (Keras's own ``weight_decay`` is decoupled)."""
    from keras import ops

    return [ops.add(g, ops.multiply(wd, w)) for g, w in zip(grads, weights)]


def _applier(opt, tvars, grads, wd, backend):
    """``apply()``: one application of ``opt`` (built here) to ``grads``, with coupled weight
    decay. On jax one jitted ``stateless_apply``, as Keras's own jax trainer runs it (eager, each
    op compiles once per tensor shape: ~1000 XLA programs per model and dtype), over the
    parameters as one vector, as Flax's (``conformance.frameworks.flax_nnx.train``): each
    optimizer is one elementwise rule (no per-tensor groups or exclusions), so every number is
    the same, and XLA compiles one loop, not one per tensor (6 s per optimizer on BN-Inception
    in float64, cold)."""
    if backend != "jax":
        opt.build(tvars)
        no_grad = __import__("torch").no_grad if backend == "torch" else contextlib.nullcontext

        def apply():
            with no_grad():
                opt.apply(_coupled(grads, [v.value for v in tvars], wd), tvars)

        return apply
    import jax
    import keras
    from keras import ops

    shapes = [tuple(v.shape) for v in tvars]
    ends = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    flat = keras.Variable(np.concatenate([ops.convert_to_numpy(v.value).ravel() for v in tvars]),
                          dtype=tvars[0].dtype, name="parameters")
    opt.build([flat])
    update = jax.jit(lambda ov, g, w: opt.stateless_apply(ov, _coupled([g], [w], wd), [w]))
    g = np.concatenate([np.asarray(x).ravel() for x in grads])  # the same gradient every application

    def apply():
        (w,), ov = update([v.value for v in opt.variables], g, flat.value)
        flat.assign(w)
        for v, value in zip(opt.variables, ov):
            v.assign(value)
        for v, part, shape in zip(tvars, np.split(np.asarray(w), ends), shapes):
            v.assign(part.reshape(shape))

    return apply


def step(model, backend, x, y, hp, dtype="float32", place=None):
    """The step on ``model`` (NCHW ``x``, integer labels ``y``) in chunks, as torch's
    ``procedure``: loss, gradients and BN statistics, then one chunk per optimizer application."""
    from keras import ops

    from weights_bridge.keras_io import native_key
    from weights_bridge.mapping import canonical_arrays

    from .model import bn_stats

    xh = np.transpose(x, (0, 2, 3, 1))
    yh = np.eye(model.spec.num_classes, dtype=x.dtype)[y]
    if place is not None:
        xh, yh = place(xh), place(yh)
    loss, grads = _gradients(model, backend, loss_fn(hp), xh, yh)
    tvars = model.trainable_variables
    keys = [native_key(v) for v in tvars]
    canonical = lambda native, what: canonical_arrays("keras", native, f"keras {what}")
    yield {"loss": np.asarray(ops.convert_to_numpy(loss)),
           **{f"grad:{k}": v for k, v in canonical({k: ops.convert_to_numpy(g) for k, g in zip(keys, grads)},
                                                    "grads").items()},
           **{f"stat:{k}": v for k, v in bn_stats(model).items()}}
    w0 = [ops.convert_to_numpy(v.value) for v in tvars] if hp["optimizers"] else []  # what each starts from
    for name in hp["optimizers"]:
        for v, w in zip(tvars, w0):
            v.assign(w)
        opt = optimizer(name, hp, dtype)
        apply = _applier(opt, tvars, grads, hp["optimizers"][name]["weight_decay"], backend)
        for k in range(1, hp["steps"] + 1):
            apply()
            yield {f"{name}{k}:{c}": a for c, a in canonical(
                {nk: ops.convert_to_numpy(v.value) for nk, v in zip(keys, tvars)}, "params").items()}
