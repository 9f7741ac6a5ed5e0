"""ONNX export of our PyTorch models, checked against PyTorch with onnxruntime before it is kept.

``export_onnx(arch, weights, out)`` reads any bridge format (so Flax and Keras weights export
too, through the canonical form), builds ``impls.torch_nn``'s model in eval mode (logits only:
aux heads and dropout are training-time), exports it with a dynamic batch dimension, and runs
the file in onnxruntime at batch sizes 1 and 3 on a seeded input. The file is written to a
temporary path and renamed only when max|ort - torch| <= rtol * max|torch logit| at every batch
size; otherwise ``ToleranceError`` is raised and nothing is left behind.

Exporter: torch 2.14's default ``torch.onnx.export(dynamo=True)`` needs the ``onnxscript``
package and builds opset 18+ graphs; we use the TorchScript exporter (``dynamo=False``, deprecated
but present in torch 2.14), which writes opset 10 directly (seed 000's opset: ONNX MaxPool takes
``ceil_mode`` from opset 10; LRN is a native ONNX op). Opsets 9, 10, 13 and 17 were tried: all
run in onnxruntime and agree with PyTorch. Measured max|Δ| / max|logit| on seeded test weights
(CPU): ~4e-7 for googlenet_paper, 5e-6 to 9e-6 for googlenet (BN; PyTorch fp32 alone is ~4e-6
from fp64 there), so the 1e-5 check has a margin of about 1.1x to 2x on googlenet.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .atomic import atomic_path, check_destination
from .errors import BridgeError, ToleranceError

DEFAULT_OPSET = 10
CHECK_BATCH_SIZES = (1, 3)
RTOL = 1e-5  # max|delta| <= RTOL * max|logit|, the eval tolerance of conformance/tolerances.py


def _max_rel(ref, got) -> float:
    return float(np.max(np.abs(ref - got)) / max(float(np.max(np.abs(ref))), 1e-30))


def build_torch_model(ckpt):
    """Our PyTorch model for a checkpoint, weights loaded strictly, in eval mode."""
    from impls.torch_nn import create_model

    from .torch_io import state_dict

    model = create_model(ckpt.architecture, num_classes=ckpt.num_classes, aux_logits=ckpt.aux_logits,
                         transform_input=ckpt.transform_input)
    model.load_state_dict(state_dict(ckpt), strict=True)
    return model.eval()


def check_onnx(model, onnx_path, input_size, batch_sizes=CHECK_BATCH_SIZES, seed=0):
    """Runs the ONNX file in onnxruntime and ``model`` in PyTorch; returns {batch: max relative diff}."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    g = torch.Generator().manual_seed(seed)
    diffs = {}
    for n in batch_sizes:
        x = torch.randn(n, 3, input_size, input_size, generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ToleranceError(f"{onnx_path}: onnxruntime output shape {got.shape} at batch {n}, "
                                 f"PyTorch {ref.shape}")
        diffs[n] = _max_rel(ref, got)
    return diffs


def export_onnx(arch, weights_path, out_path, opset=DEFAULT_OPSET, overwrite=False, input_size=None,
                rtol=RTOL, weights_format=None, progress=None):
    """Exports ``arch`` with the weights in ``weights_path`` (any bridge format) to ``out_path``.

    Returns {"path", "opset", "input_size", "max_rel": {batch size: max|Δ| / max|logit|}}.
    Raises a ``BridgeError`` subclass (``ToleranceError`` when onnxruntime disagrees with
    PyTorch beyond ``rtol``); on any error nothing is written.
    """
    import onnx
    import torch

    from .formats import read

    say = progress or (lambda msg: None)
    check_destination(out_path, overwrite)  # fail before the (slow) export
    ckpt = read(weights_path, weights_format, architecture=arch)
    model = build_torch_model(ckpt)
    size = input_size or ckpt.spec().config.input_size[-1]
    say(f"exporting {ckpt.architecture} (num_classes={ckpt.num_classes}) to ONNX opset {opset}, "
        f"input N x 3 x {size} x {size}")
    with atomic_path(out_path, overwrite) as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False,
                                  opset_version=opset, input_names=["input"], output_names=["logits"],
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            onnx.checker.check_model(str(tmp))
        except (RuntimeError, ValueError, onnx.checker.ValidationError) as e:
            raise BridgeError(f"{out_path}: ONNX export of {arch} at opset {opset} failed: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        diffs = check_onnx(model, tmp, size)
        say("  onnxruntime vs PyTorch, max relative difference: "
            + ", ".join(f"batch {n}: {d:.1e}" for n, d in diffs.items()))
        bad = {n: d for n, d in diffs.items() if not d <= rtol}
        if bad:
            raise ToleranceError(f"{out_path}: onnxruntime disagrees with PyTorch beyond {rtol:.0e} x max|logit| "
                                 f"(" + ", ".join(f"batch {n}: {d:.2e}" for n, d in bad.items()) + "); not written")
    return {"path": Path(out_path), "opset": opset, "input_size": size, "max_rel": diffs}
