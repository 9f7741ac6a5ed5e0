"""A checkpoint in any format the bridge reads, as one framework's model ready for inference.

    from weights_bridge.inference import load_for_inference
    predict = load_for_inference("inception_v3.neutral", "torch")           # the fast path: the default
    model = load_for_inference("inception_v3.neutral", "torch", fast=False)  # the plain model, eval mode

``fast=True`` gives the framework's ``optimize_for_inference`` form (``impls/*/fast.py``: BatchNorm
folded into the convolutions, parallel 1x1 convolutions merged, channels-last on torch, one jit on
Flax, fused Conv2D+ReLU on Keras); its logits equal the plain model's within the eval tolerance
(``conformance/tests/test_fast.py``). ``fast=False`` is the model itself, for stepping through layers,
hooks or anything the folded form has folded away. Both are eval-only logits: aux heads are left
out. Inputs: NCHW for torch, NHWC for Flax and Keras. Keras uses the backend ``KERAS_BACKEND``
names; for Flax and Keras on jax call ``impls.xla_cpu.configure()`` before JAX starts (the
convolution library that makes XLA:CPU fast; docs/benchmarks.md).
"""
from __future__ import annotations

import copy
import importlib

from . import flax_io, keras_io, torch_io
from .checkpoint import Checkpoint
from .formats import read

# Each framework's fast form: a module with ``optimize_for_inference(plain_model)``.
FAST_MODULES = {"torch": "impls.torch_nn.fast", "flax": "impls.flax_nnx.fast", "keras": "impls.keras3.fast"}
FRAMEWORKS = tuple(FAST_MODULES)


def eval_checkpoint(ckpt: Checkpoint) -> Checkpoint:
    """A copy of the checkpoint without its aux heads (eval logits only; the fast forms have none)."""
    out = copy.copy(ckpt)
    out.aux_logits = False
    out.tensors = {k: v for k, v in ckpt.tensors.items() if k in out.expected_shapes()}
    return out


def inference_model(ckpt: Checkpoint, framework: str, fast: bool = True, input_size: int | None = None):
    """``ckpt`` as ``framework``'s model: its fast form, or with ``fast=False`` the plain model in eval
    mode. ``input_size`` (Keras only) fixes the input resolution the model is built for; default:
    the architecture's own."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
    ckpt = eval_checkpoint(ckpt)
    if framework == "torch":
        model = torch_io.to_model(ckpt)
    elif framework == "flax":
        model = flax_io.to_model(ckpt)
        model.eval()
    else:
        model = keras_io.to_model(ckpt, input_size=input_size)
    return optimized(model, framework) if fast else model


def optimized(model, framework: str):
    """The fast form of a plain model (``inference_model(..., fast=False)``): what ``fast=True`` returns."""
    return importlib.import_module(FAST_MODULES[framework]).optimize_for_inference(model)


def load_for_inference(path, framework: str, architecture: str | None = None, fmt: str | None = None,
                       fast: bool = True, input_size: int | None = None):
    """Reads ``path`` (format from its name or ``fmt``; ``architecture`` where the file does not
    say it, e.g. a bare ``.pth``) and returns ``inference_model`` of it."""
    return inference_model(read(path, fmt, architecture), framework, fast=fast, input_size=input_size)
