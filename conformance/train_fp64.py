"""The training step in float64, every framework: ``python -m conformance.train_fp64 JOB.json``.

Why: in float32 a train-mode gradient differs between frameworks by ~1e-2 relative in the trunk,
not because of different arithmetic (~1e-5) but because a handful of ReLU inputs and max-pool
ties sit within fp32 rounding of their kink and each framework takes its own branch
(conformance/kinks.py); train-mode BN spreads each flip over a whole channel. In float64 the
same inputs sit ~1e-9 further from rounding and no branch flips, so the five implementations must
agree to float64 rounding on the loss, every gradient, the BN running statistics and every
optimizer update: label smoothing, aux weight, BN momentum and unbiased variance, epsilon
placement and weight-decay coupling are then checked with no floor raising at all.

Same procedure and outputs as conformance.train_worker (its functions, run in float64):

* torch: ``model.double()``;
* flax: ``jax_enable_x64`` (also set in the environment by ``worker_command``, so it holds before
  jax is first imported), every float state of the built model cast to float64;
* keras on each backend: ``keras.config.set_floatx("float64")`` before the model is built (every
  layer's dtype policy, the loss and the optimizers' learning-rate variables follow floatx); on
  the jax backend ``jax_enable_x64`` before keras is imported.

The batch and the weights are float32 files cast up (exactly), so every run starts from the same
values. Every float the worker writes must be float64, else it fails naming the tensor.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from . import train_worker as W


def worker_command(job_path, dtype):
    """(argv, extra environment) of the worker for a training job in ``dtype``."""
    if dtype == "float32":
        return [sys.executable, "-m", "conformance.train_worker", str(job_path)], None
    if dtype != "float64":
        raise ValueError(f"training step dtype {dtype!r}: float32 or float64")
    return [sys.executable, "-m", "conformance.train_fp64", str(job_path)], {"JAX_ENABLE_X64": "1"}


def run_torch(job, x, y, hp):
    import torch

    from impls.torch_nn import MODELS

    from .precision import torch_full_precision

    info = torch_full_precision()
    dev = info["device"]
    model = MODELS[job["arch"]](**W._model_kwargs(job))
    model.load_state_dict(torch.load(job["weights"]["torch"], map_location="cpu", weights_only=True), strict=True)
    model = model.double().to(dev)
    counts = {}
    res = W._torch_procedure(model, torch.from_numpy(x).to(dev), torch.from_numpy(y).long().to(dev), hp, counts)
    res.update({f"count:{k}": np.int64(n) for k, n in counts.items()})
    return res, info


class _Tensors:
    """What run_flax / run_keras read from ``from_model``: the bridge's checkpoints are float32
    only (it refuses to cast silently), so the float64 BN statistics bypass it, mapped to
    canonical names by the same plan."""

    def __init__(self, tensors):
        self.tensors = tensors


def run_flax(job, x, y, hp):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from flax import nnx

    from weights_bridge import flax_io

    build, native_from_model = flax_io.build_model, flax_io.from_model

    def build_float64(*args, **kwargs):
        model = build(*args, **kwargs)
        state = nnx.state(model)
        pure = jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                            nnx.to_pure_dict(state))
        nnx.replace_by_pure_dict(state, pure)
        nnx.update(model, state)
        return model

    def from_model_float64(model, architecture):
        flat = {".".join(map(str, p)): np.asarray(v.get_value())
                for p, v in nnx.to_flat_state(nnx.state(model, nnx.BatchStat))}
        return _Tensors(W._canonical("flax", flat, "flax float64 BN statistics"))

    # run_flax imports both at call time
    flax_io.build_model, flax_io.from_model = build_float64, from_model_float64
    try:
        return W.run_flax(job, x, y, hp)
    finally:
        flax_io.build_model, flax_io.from_model = build, native_from_model


def run_keras(job, x, y, hp, backend):
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    import keras
    from keras import ops

    from weights_bridge import keras_io

    keras.config.set_floatx("float64")
    native_from_model = keras_io.from_model

    def from_model_float64(model, architecture):
        native = {keras_io.native_key(v): np.asarray(ops.convert_to_numpy(v.value))
                  for v in model.non_trainable_variables if v.name in ("moving_mean", "moving_variance")}
        return _Tensors(W._canonical("keras", native, "keras float64 BN statistics"))

    native_cce, native_optimizer = keras.losses.CategoricalCrossentropy, W._keras_optimizer
    if backend == "tensorflow":
        W._keras_optimizer = _momentum_as_float64(native_optimizer)
    if backend == "torch":
        from keras.src.backend.torch import numpy as knp

        native_matmul = knp.matmul
        knp.matmul = _matmul_in_float64(native_matmul)
        keras.losses.CategoricalCrossentropy = _cce_batch_mean_in_float64(native_cce)
    keras_io.from_model = from_model_float64  # run_keras imports it at call time
    try:
        return W.run_keras(job, x, y, hp, backend)
    finally:
        keras_io.from_model, keras.losses.CategoricalCrossentropy = native_from_model, native_cce
        W._keras_optimizer = native_optimizer
        if backend == "torch":
            knp.matmul = native_matmul


# Keras 3.15 promotes dtypes with ``keras.backend.result_type``, which maps float64 to float32 on
# every backend but TensorFlow ("aligned with JAX's default", keras/src/backend/common/dtypes.py
# BIT64_TO_BIT32_DTYPE), whatever floatx says. Ops that compute in that result dtype then run a
# float64 model's step partly in float32. Found by this check, each 1e-7..1e-6 off (measured):
# jax ops.mean (BN moments, pooling: fixed in impls.keras3.layers._mean), torch ops.matmul
# (Dense: 2.4e-6 relative) and torch divide_no_nan (the loss's batch mean). The last two are
# Keras internals, replaced below in this worker only (TRANSLATED: torch.matmul in float64; the
# batch mean as sum / n); nothing else of the keras-torch step is touched. Likewise TensorFlow's
# cast of SGD's Python-float momentum (_momentum_as_float64).
def _momentum_as_float64(native):
    """keras.optimizers.SGD casts its momentum with ``ops.cast(0.9, float64)``; on TensorFlow that
    converts the Python float to a float32 tensor first (0.899999976), 1e-8 off at the 2nd step."""

    def make(name, hp):
        opt = native(name, hp)
        opt.momentum = np.float64(opt.momentum)
        return opt

    return make


def _matmul_in_float64(native):
    import torch
    from keras.src.backend.torch.core import convert_to_tensor

    def matmul(x1, x2):
        x1, x2 = convert_to_tensor(x1), convert_to_tensor(x2)  # a Dense kernel is a Keras variable
        if x1.dtype == x2.dtype == torch.float64:
            return torch.matmul(x1, x2)
        return native(x1, x2)

    return matmul


def _cce_batch_mean_in_float64(cce):
    """Keras's CategoricalCrossentropy (its per-sample loss and label smoothing) with the batch
    mean taken as sum / n: the default reduction's ``divide_no_nan`` returns float32 on torch."""
    from keras import ops

    class BatchMeanCCE(cce):
        def __init__(self, **kwargs):
            super().__init__(reduction="sum", **kwargs)

        def __call__(self, y_true, y_pred, sample_weight=None):
            return ops.divide(super().__call__(y_true, y_pred, sample_weight), ops.shape(y_pred)[0])

    return BatchMeanCCE


def main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    impl, hp = job["impl"], job["hyper"]
    x, y = np.load(job["input"]).astype(np.float64), np.load(job["labels"])
    t0 = time.perf_counter()
    if impl == "torch":
        res, info = run_torch(job, x, y, hp)
    elif impl == "flax":
        res, info = run_flax(job, x, y, hp)
    elif impl.startswith("keras-"):
        res, info = run_keras(job, x, y, hp, impl.split("-", 1)[1])
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    res = {k: np.asarray(v) for k, v in res.items()}
    narrow = [f"{k} ({v.dtype})" for k, v in res.items() if v.dtype.kind == "f" and v.dtype != np.float64]
    if narrow:
        raise TypeError(f"{impl}: float64 training step produced narrower tensors: {', '.join(narrow[:5])}"
                        f"{' ...' if len(narrow) > 5 else ''}")
    np.savez(os.path.join(job["out_dir"], "train.npz"), **res)
    info.update(dtype="float64", total_seconds=round(time.perf_counter() - t0, 3))
    with open(os.path.join(job["out_dir"], "report.json"), "w") as f:
        json.dump({"impl": impl, "precision": info}, f, indent=1)


if __name__ == "__main__":
    from conformance.worker import run_job

    run_job(main, sys.argv[1])
