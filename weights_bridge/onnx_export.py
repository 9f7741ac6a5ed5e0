"""ONNX export of our models, checked against the framework with onnxruntime before it is kept.

``export_onnx(arch, weights, out)`` reads any bridge format (so Flax and Keras weights export
too, through the canonical form), builds ``impls.torch_nn``'s model in eval mode (logits only:
aux heads and dropout are training-time), exports it with a dynamic batch dimension, and runs
the file in onnxruntime at batch sizes 1 and 3 on a seeded input. The file is written to a
temporary path and renamed only when max|ort - torch| <= rtol * max|torch logit| at every batch
size; otherwise ``ToleranceError`` is raised and nothing is left behind. ``framework="keras"``
exports our Keras model instead (NHWC input; ``weights_bridge.keras_onnx``), with the same check.

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

import warnings
from pathlib import Path

import numpy as np

from .atomic import atomic_path, check_destination
from .errors import BridgeError, ToleranceError
from .torch_io import build_model

DEFAULT_OPSET = 10
CHECK_BATCH_SIZES = (1, 3)
RTOL = 1e-5  # max|delta| <= RTOL * max|logit|, the eval tolerance of conformance/tolerances.py
FRAMEWORKS = {"torch": "PyTorch", "keras": "Keras"}


def _max_rel(ref, got) -> float:
    return float(np.max(np.abs(ref - got)) / max(float(np.max(np.abs(ref))), 1e-30))


def session(onnx_path):
    """An onnxruntime CPU session with its default graph optimisations (ORT_ENABLE_ALL): with
    ORT_DISABLE_ALL or unfused BN the distance to the framework is no smaller (module docstring)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def onnxruntime_diffs(onnx_path, reference, input_shape, batch_sizes=CHECK_BATCH_SIZES, seed=0, framework="PyTorch",
                      where=None):
    """Runs the ONNX file in onnxruntime and ``reference`` (numpy batch -> numpy logits, the
    framework's own forward) on the same seeded standard-normal batches of ``(n, *input_shape)``;
    returns {batch size: max|ort - reference| / max|reference|}. Framework-free: the Keras
    worker and the PyTorch path share it. ``where`` names the file in errors (the destination,
    not the temporary being checked)."""
    where = where or onnx_path
    try:
        sess = session(onnx_path)
    except Exception as e:  # onnxruntime's own exception types (NotImplemented, InvalidGraph, ...)
        raise BridgeError(f"{where}: onnxruntime cannot run the exported graph: "
                          f"{' '.join(str(e).split())[:300]}") from e
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    diffs = {}
    for n in batch_sizes:
        x = rng.standard_normal((n, *input_shape), dtype=np.float32)
        ref = np.asarray(reference(x))
        got = sess.run(None, {name: x})[0]
        if got.shape != ref.shape:
            raise ToleranceError(f"{where}: onnxruntime output shape {got.shape} at batch {n}, "
                                 f"{framework} {ref.shape}")
        diffs[n] = _max_rel(ref, got)
    return diffs


def check_onnx(model, onnx_path, input_size, batch_sizes=CHECK_BATCH_SIZES, seed=0, where=None):
    """Runs the ONNX file in onnxruntime and ``model`` in PyTorch (NCHW); returns {batch: max relative diff}."""
    import torch

    def reference(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return onnxruntime_diffs(onnx_path, reference, (3, input_size, input_size), batch_sizes, seed, where=where)


def file_opset(onnx_path) -> int:
    """The default (ai.onnx) domain's opset a file declares."""
    import onnx

    return next(o.version for o in onnx.load(str(onnx_path)).opset_import if o.domain in ("", "ai.onnx"))


def require_within(out_path, diffs, rtol, framework="PyTorch"):
    bad = {n: d for n, d in diffs.items() if not d <= rtol}
    if bad:
        raise ToleranceError(f"{out_path}: onnxruntime disagrees with {framework} beyond {rtol:.0e} x max|logit| ("
                             + ", ".join(f"batch {n}: {d:.2e}" for n, d in bad.items()) + "); not written")


def export_onnx(arch, weights_path, out_path, opset=DEFAULT_OPSET, overwrite=False, input_size=None,
                rtol=RTOL, weights_format=None, progress=None, framework="torch"):
    """Exports ``arch`` with the weights in ``weights_path`` (any bridge format) to ``out_path``.

    ``framework``: "torch" (our PyTorch model, NCHW input) or "keras" (our Keras model on the
    TensorFlow backend through tf2onnx, NHWC input, in a worker process: ``weights_bridge.keras_onnx``).
    Returns {"path", "framework", "opset", "input_size", "input_layout", "max_rel": {batch size:
    max|Δ| / max|logit|}}. Raises a ``BridgeError`` subclass (``ToleranceError`` when onnxruntime
    disagrees with the framework beyond ``rtol``); on any error nothing is written.
    """
    from .formats import read

    if framework not in FRAMEWORKS:
        raise BridgeError(f"unknown ONNX export framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
    say = progress or (lambda msg: None)
    check_destination(out_path, overwrite)  # fail before the (slow) export
    if framework == "keras":
        from .keras_onnx import require_tf2onnx

        require_tf2onnx()
    ckpt = read(weights_path, weights_format, architecture=arch)
    size = input_size or ckpt.spec().config.input_size[-1]
    layout = f"N x 3 x {size} x {size}" if framework == "torch" else f"N x {size} x {size} x 3"
    say(f"exporting {ckpt.architecture} (num_classes={ckpt.num_classes}) from {FRAMEWORKS[framework]} to ONNX "
        f"opset {opset}, input {layout}")
    with atomic_path(out_path, overwrite) as tmp:
        if framework == "torch":
            diffs, file_op = _export_torch(ckpt, tmp, out_path, opset, size)
        else:
            from .keras_onnx import export_in_worker

            diffs, file_op = export_in_worker(ckpt, tmp, out_path, opset, size, CHECK_BATCH_SIZES)
        say(f"  onnxruntime vs {FRAMEWORKS[framework]}, max relative difference: "
            + ", ".join(f"batch {n}: {d:.1e}" for n, d in diffs.items()))
        require_within(out_path, diffs, rtol, FRAMEWORKS[framework])
    return {"path": Path(out_path), "framework": framework, "opset": file_op, "input_size": size,
            "input_layout": "NCHW" if framework == "torch" else "NHWC", "max_rel": diffs}


def _export_torch(ckpt, tmp, out_path, opset, size):
    import onnx
    import torch

    model = build_model(ckpt)
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
    return check_onnx(model, tmp, size, where=out_path), file_opset(tmp)
