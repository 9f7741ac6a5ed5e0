"""One framework's fast-path check: ``python -m conformance.fast_worker IMPL ARCH WEIGHTS.pth INPUT.npy OUT.npz``.

Loads the checkpoint through the bridge into ``IMPL`` (torch, flax, keras-tensorflow, keras-jax,
keras-torch), runs the plain eval model and ``optimize_for_inference`` of it on the same NCHW
input, and saves both logits (``plain``, ``fast``). Its own process, as every worker: Keras
fixes its backend at import, and the XLA:CPU flags of the fast path (``impls.xla_cpu``) apply
only before JAX starts, so the fast path is checked in the configuration users get.
"""
from __future__ import annotations

import os
import sys

import numpy as np


def _torch(arch, ckpt, x):
    import torch

    from impls.torch_nn.fast import optimize_for_inference
    from weights_bridge.torch_io import build_model

    model = build_model(ckpt).eval()
    with torch.no_grad():
        plain = model(torch.from_numpy(x)).numpy()
    return plain, optimize_for_inference(model)(torch.from_numpy(x)).numpy()


def _flax(arch, ckpt, x):
    from flax import nnx

    from impls.flax_nnx.fast import optimize_for_inference
    from weights_bridge.flax_io import _nest, build_model, native_tensors

    model = build_model(arch, _nest(native_tensors(ckpt)), num_classes=ckpt.num_classes, aux_logits=ckpt.aux_logits,
                        transform_input=ckpt.transform_input)
    model.eval()
    xh = np.transpose(x, (0, 2, 3, 1))
    plain = np.asarray(nnx.jit(lambda m, v: m(v))(model, xh))
    return plain, np.asarray(optimize_for_inference(model)(xh))


def _keras(arch, ckpt, x):
    from keras import ops

    from impls.keras3.fast import optimize_for_inference
    from weights_bridge.keras_io import build_model, load_into

    model = load_into(build_model(arch, ckpt.num_classes, ckpt.aux_logits, input_size=x.shape[-1]), ckpt)
    xh = np.transpose(x, (0, 2, 3, 1))
    plain = np.asarray(ops.convert_to_numpy(model(xh, training=False)))
    return plain, np.asarray(ops.convert_to_numpy(optimize_for_inference(model).predict_on_batch(xh)))


def eval_checkpoint(ckpt):
    """The checkpoint without its aux heads: eval logits only, and the fast forms have none."""
    ckpt.aux_logits = False
    ckpt.tensors = {k: v for k, v in ckpt.tensors.items() if k in ckpt.expected_shapes()}
    return ckpt


def main(impl, arch, weights, inp, out):
    from weights_bridge.formats import read

    from .precision import keras_full_precision, torch_full_precision

    if impl == "torch":
        torch_full_precision()
    else:
        keras_full_precision("jax" if impl == "flax" else impl.split("-", 1)[1])
    ckpt = eval_checkpoint(read(weights, "torch", arch))
    run = {"torch": _torch, "flax": _flax}.get(impl, _keras)
    plain, fast = run(arch, ckpt, np.load(inp))
    np.savez(out, plain=plain, fast=fast)


if __name__ == "__main__":
    impl = sys.argv[1]
    if impl.startswith("keras-"):
        os.environ["KERAS_BACKEND"] = impl.split("-", 1)[1]
    if impl in ("flax", "keras-jax"):
        from impls import xla_cpu

        xla_cpu.configure()
    main(*sys.argv[1:])
