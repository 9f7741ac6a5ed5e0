"""ONNX export of our models, checked against the framework with onnxruntime before it is kept
(``inception-bridge export-onnx``).

``export_onnx(arch, weights, out)`` reads any bridge format (so Flax and Keras weights export
too, through the canonical form), builds ``impls.torch_nn``'s model in eval mode (logits only:
aux heads and dropout are training-time), exports it with a dynamic batch dimension, and runs
the file in onnxruntime at batch sizes 1 and 3 on a seeded input. The file is written to a
temporary path and renamed only when max|ort - torch| <= rtol * max|torch logit| at every batch
size; otherwise ``ToleranceError`` is raised and nothing is left behind. ``framework="keras"``
exports our Keras model instead (NHWC input; in the keras-tensorflow worker,
``conformance.frameworks.keras3.onnx``), with the same check.

Exporter: torch 2.14's default ``torch.onnx.export(dynamo=True)`` needs the ``onnxscript``
package and builds opset 18+ graphs; we use the TorchScript exporter (``dynamo=False``, deprecated
but present in torch 2.14), which writes opset 10 directly (seed 000's opset: ONNX MaxPool takes
``ceil_mode`` from opset 10; LRN is a native ONNX op). Opsets 9, 10, 13 and 17 were tried: all
run in onnxruntime and agree with PyTorch. It folds eval-mode BN into the convolutions.

Headroom: measured max|Δ| / max|logit| on seeded test weights (CPU) is ~4e-7 for
googlenet_paper and 4.5e-6 to 6e-6 for googlenet (earlier runs saw up to 9e-6), against 1e-5.
That is two independent fp32 roundings adding up, not an onnxruntime shortcut: against a float64
PyTorch run, onnxruntime is 2.8e-6 to 3.8e-6 off and PyTorch fp32 itself 3.7e-6 to 4.9e-6.
onnxruntime's graph optimisation level changes nothing that matters (ORT_DISABLE_ALL, BASIC and
EXTENDED give identical outputs, 3.3e-6 to 3.8e-6 from fp64; the default ENABLE_ALL 2.8e-6 to
3.7e-6), nor does exporting BN unfused (4.5e-6 to 5.6e-6 from PyTorch fp32 either way). No
onnxruntime setting buys honest headroom, so the default session is used and the bound stays.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from weights_bridge import neutral, torch_io
from weights_bridge.atomic import atomic_path, check_destination
from weights_bridge.errors import BridgeError
from weights_bridge.extras import require
from weights_bridge.formats import read

from ..compare.onnx import CHECK_BATCH_SIZES, RTOL, file_opset, onnxruntime_diffs, require_within
from ..launch import WorkerPool

DEFAULT_OPSET = 10
FRAMEWORKS = {"torch": "PyTorch", "keras": "Keras"}
# What each export imports (Keras 3 exports TensorFlow-backend models through tf2onnx), checked
# before any work without importing anything.
REQUIRES = {"torch": ("torch", "onnx", "onnxruntime"), "keras": ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")}


def export_onnx(arch, weights_path, out_path, opset=DEFAULT_OPSET, overwrite=False, input_size=None,
                rtol=RTOL, weights_format=None, progress=None, framework="torch"):
    """Exports ``arch`` with the weights in ``weights_path`` (any bridge format) to ``out_path``.

    ``framework``: "torch" (our PyTorch model, NCHW input) or "keras" (our Keras model on the
    TensorFlow backend through tf2onnx, NHWC input, in the keras-tensorflow worker).
    Returns {"path", "framework", "opset", "input_size", "input_layout", "max_rel": {batch size:
    max|Δ| / max|logit|}}. Raises a ``BridgeError`` subclass (``ToleranceError`` when onnxruntime
    disagrees with the framework beyond ``rtol``); on any error nothing is written.
    """
    if framework not in FRAMEWORKS:
        raise BridgeError(f"unknown ONNX export framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
    say = progress or (lambda msg: None)
    require(f"export-onnx --framework {framework}", REQUIRES[framework])
    check_destination(out_path, overwrite)  # fail before the (slow) export
    ckpt = read(weights_path, weights_format, architecture=arch)
    size = input_size or ckpt.spec().config.input_size[-1]
    layout = f"N x 3 x {size} x {size}" if framework == "torch" else f"N x {size} x {size} x 3"
    say(f"exporting {ckpt.architecture} (num_classes={ckpt.num_classes}) from {FRAMEWORKS[framework]} to ONNX "
        f"opset {opset}, input {layout}")
    with atomic_path(out_path, overwrite) as tmp:
        if framework == "torch":
            diffs, file_op = _export_torch(ckpt, tmp, out_path, opset, size)
        else:
            diffs, file_op = _export_keras(ckpt, tmp, out_path, opset, size)
        say(f"  onnxruntime vs {FRAMEWORKS[framework]}, max relative difference: "
            + ", ".join(f"batch {n}: {d:.1e}" for n, d in diffs.items()))
        require_within(out_path, diffs, rtol, FRAMEWORKS[framework])
    return {"path": Path(out_path), "framework": framework, "opset": file_op, "input_size": size,
            "input_layout": "NCHW" if framework == "torch" else "NHWC", "max_rel": diffs}


def _export_keras(ckpt, tmp, out_path, opset, size):
    """The export in the keras-tensorflow worker, handed the checked weights as a neutral folder."""
    with tempfile.TemporaryDirectory(prefix="inception-bridge-onnx-") as work, WorkerPool(work, jobs=1) as pool:
        neutral.write(ckpt, Path(work) / "weights.neutral")
        res = pool.request("keras-tensorflow", "onnx_export", weights=str(Path(work) / "weights.neutral"),
                           tmp=str(tmp), out=str(out_path), opset=opset, size=size, batch_sizes=list(CHECK_BATCH_SIZES))
    return {int(n): d for n, d in res["max_rel"].items()}, res["opset"]


def _export_torch(ckpt, tmp, out_path, opset, size):
    import onnx
    import torch

    model = torch_io.to_model(ckpt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False,
                              opset_version=opset, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        onnx.checker.check_model(str(tmp))
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as e:
        raise BridgeError(f"{out_path}: ONNX export of {ckpt.architecture} at opset {opset} failed: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e

    def reference(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return onnxruntime_diffs(tmp, reference, (3, size, size), where=out_path), file_opset(tmp)
