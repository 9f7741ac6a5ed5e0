"""The flax worker's models: ours (``impls.flax_nnx``) through the bridge's loader, run under
``nnx.jit`` (eager NNX dispatches op by op), and their per-block activations."""
from __future__ import annotations

import numpy as np

from ..base import nchw, nhwc, outputs_dict, read_neutral


def load(neutral_path, dtype="float32"):
    """Our NNX model holding the checkpoint, every dropout 0; in float64 every float cast up
    (exactly: the checkpoint is float32)."""
    from weights_bridge import flax_io

    model = flax_io.to_model(read_neutral(neutral_path), dropout=0.0, dropout_aux=0.0)
    return cast(model, dtype) if dtype != "float32" else model


def cast(model, dtype):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    state = nnx.state(model)
    pure = jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                        nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


def bn_stats(model) -> dict:
    """BN running statistics under canonical names, in the model's dtype."""
    from flax import nnx

    from weights_bridge.flax_io import native_state
    from weights_bridge.mapping import canonical_arrays

    return canonical_arrays("flax", native_state(model, nnx.BatchStat), "flax BN statistics")


def _forward(model, x):
    return model(x)


def _capture(model, x):
    captured = {}
    model.forward_stages(x, capture=captured)
    return captured


def run(model, x_nchw, train: bool) -> dict:
    model.train() if train else model.eval()
    out = JIT["forward"](model, nhwc(x_nchw))
    res = {k: np.asarray(v) for k, v in outputs_dict(out).items()}
    if train:
        res.update({f"stat:{k}": v for k, v in bn_stats(model).items()})
    return res


def blocks(model, x_nchw, train=False) -> dict:
    model.train() if train else model.eval()
    return {k: nchw(v) for k, v in JIT["capture"](model, nhwc(x_nchw)).items()}


class _Jitted(dict):
    """nnx.jit of the functions above, made once per process (a fresh jit per call would
    trace and compile again)."""

    def __missing__(self, name):
        from flax import nnx

        self[name] = nnx.jit({"forward": _forward, "capture": _capture}[name])
        return self[name]


JIT = _Jitted()
