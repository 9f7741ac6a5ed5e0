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
    """(plain, fast) logits of ``weights_bridge.inference.inference_model`` on NCHW ``x``: what a
    user of ``load_for_inference`` gets with ``fast=False`` and with the default."""
    from weights_bridge.inference import inference_model

    if framework == "torch":
        import torch

        with torch.no_grad():
            return tuple(inference_model(ckpt, "torch", fast=f)(torch.from_numpy(x)).numpy() for f in (False, True))
    xh = np.transpose(x, (0, 2, 3, 1))
    if framework == "flax":
        from flax import nnx

        plain = np.asarray(nnx.jit(lambda m, v: m(v))(inference_model(ckpt, "flax", fast=False), xh))
        return plain, np.asarray(inference_model(ckpt, "flax")(xh))
    from keras import ops

    plain = inference_model(ckpt, "keras", fast=False, input_size=x.shape[-1])(xh, training=False)
    fast = inference_model(ckpt, "keras", input_size=x.shape[-1]).predict_on_batch(xh)
    return np.asarray(ops.convert_to_numpy(plain)), np.asarray(ops.convert_to_numpy(fast))


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
