"""One framework's fast-path check: ``python -m conformance.fast_worker IMPL ARCH WEIGHTS.pth INPUT.npy OUT.npz``.

Loads the checkpoint into ``IMPL`` (torch, flax, keras-tensorflow, keras-jax, keras-torch) with
``weights_bridge.inference``, as plain eval model and as its default fast form, runs both on the
same NCHW input and saves both logits (``plain``, ``fast``). Its own process, as every worker: Keras
fixes its backend at import, and the XLA:CPU flags of the fast path (``impls.xla_cpu``) apply
only before JAX starts, so the fast path is checked in the configuration users get.
"""
from __future__ import annotations

import os
import sys

import numpy as np


def run(framework, ckpt, x):
    """(plain, fast) logits on NCHW ``x`` of ``weights_bridge.inference``'s plain model and of its
    fast form (``optimized``, what ``load_for_inference`` returns by default), the model built once."""
    from weights_bridge.inference import inference_model, optimized

    plain_model = inference_model(ckpt, framework, fast=False, input_size=x.shape[-1])
    fast_model = optimized(plain_model, framework)
    if framework == "torch":
        import torch

        with torch.no_grad():
            return plain_model(torch.from_numpy(x)).numpy(), fast_model(torch.from_numpy(x)).numpy()
    xh = np.transpose(x, (0, 2, 3, 1))
    if framework == "flax":
        from flax import nnx

        return np.asarray(nnx.jit(lambda m, v: m(v))(plain_model, xh)), np.asarray(fast_model(xh))
    from keras import ops

    return (np.asarray(ops.convert_to_numpy(plain_model(xh, training=False))),
            np.asarray(ops.convert_to_numpy(fast_model.predict_on_batch(xh))))


def main(impl, arch, weights, inp, out):
    from weights_bridge.formats import read

    from .precision import keras_full_precision, torch_full_precision

    if impl == "torch":
        torch_full_precision()
    else:
        keras_full_precision("jax" if impl == "flax" else impl.split("-", 1)[1])
    plain, fast = run("keras" if impl.startswith("keras") else impl, read(weights, "torch", arch), np.load(inp))
    np.savez(out, plain=plain, fast=fast)


if __name__ == "__main__":
    impl = sys.argv[1]
    if impl.startswith("keras-"):
        os.environ["KERAS_BACKEND"] = impl.split("-", 1)[1]
    if impl in ("flax", "keras-jax"):
        from impls import xla_cpu

        xla_cpu.configure()
    main(*sys.argv[1:])
