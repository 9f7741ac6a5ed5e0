"""A Keras worker's models: ours (``impls.keras3``) through the bridge's loader, built at the
input size of the request (padding is explicit, so the model needs static sizes)."""
from __future__ import annotations

import contextlib

import numpy as np

from ..base import nchw, nhwc, outputs_dict, read_neutral


@contextlib.contextmanager
def floatx(dtype):
    """Keras's ``floatx`` and global dtype policy set to ``dtype`` for what runs inside: layers,
    losses and optimizers (their learning-rate variables) all follow them."""
    import keras

    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)  # the global policy is cached from floatx when first used
    try:
        yield
    finally:
        keras.config.set_floatx(previous[0])
        keras.config.set_dtype_policy(previous[1])


def load(neutral_path, input_size, dtype="float32"):
    """Our Keras model holding the checkpoint, every dropout 0, built for ``input_size`` (a
    float64 model: call under ``floatx("float64")``, the checkpoint cast up exactly)."""
    from weights_bridge import keras_io

    ckpt = read_neutral(neutral_path)
    return keras_io.to_model(ckpt if dtype == "float32" else _cast(ckpt, dtype), input_size=input_size,
                             dropout=0.0, dropout_aux=0.0)


def _cast(ckpt, dtype):
    """The checkpoint's tensors cast up for a float64 model (exactly: they are float32)."""
    import copy

    out = copy.copy(ckpt)
    out.tensors = {k: v.astype(dtype) for k, v in ckpt.tensors.items()}
    return out


def call(model, backend, x, train):
    """``model(x, training=train)``; on jax one jit of the stateless call with the updated BN
    statistics written back (eager Keras-on-JAX dispatches op by op: tens of seconds)."""
    if backend != "jax":
        return model(x, training=train)
    import jax

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    out, ntv = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=train))(tv, ntv, x)
    for v, value in zip(model.non_trainable_variables, ntv):
        v.assign(value)
    return out


def bn_stats(model) -> dict:
    """BN running statistics under canonical names, in the model's dtype."""
    from weights_bridge.keras_io import native_state
    from weights_bridge.mapping import canonical_arrays

    variables = [v for v in model.non_trainable_variables if v.name in ("moving_mean", "moving_variance")]
    return canonical_arrays("keras", native_state(model, variables), f"keras model {model.name}")


def run(model, backend, x_nchw, train) -> dict:
    from keras import ops

    out = call(model, backend, nhwc(x_nchw), train)
    res = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in outputs_dict(out).items()}
    if train:
        res.update({f"stat:{k}": v for k, v in bn_stats(model).items()})
    return res


def blocks(model, x_nchw, backend, train=False) -> dict:
    """Every block's activation under the spec's names, NCHW."""
    from keras import ops

    x = nhwc(x_nchw)
    if backend != "jax":
        captured = {}
        model.forward_stages(ops.convert_to_tensor(x), training=train, capture=captured)
        return {k: nchw(ops.convert_to_numpy(v)) for k, v in captured.items()}
    # jit with the variables bound statelessly: eager Keras-on-JAX dispatches op by op.
    import jax
    import keras

    variables = model.trainable_variables + model.non_trainable_variables

    def capture(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            captured = {}
            model.forward_stages(x, training=train, capture=captured)
            return captured

    return {k: nchw(v) for k, v in jax.jit(capture)([v.value for v in variables], x).items()}
