"""Checking an ONNX file against the framework it came from, with onnxruntime: the same seeded
batches through both, max|ort - framework| / max|framework| per batch size."""
from __future__ import annotations

import numpy as np

from weights_bridge.errors import BridgeError, ToleranceError

CHECK_BATCH_SIZES = (1, 3)
RTOL = 1e-5  # max|delta| <= RTOL * max|logit|, the eval tolerance of conformance.compare.tolerances


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


def file_opset(onnx_path) -> int:
    """The default (ai.onnx) domain's opset a file declares."""
    import onnx

    return next(o.version for o in onnx.load(str(onnx_path)).opset_import if o.domain in ("", "ai.onnx"))


def require_within(out_path, diffs, rtol, framework="PyTorch"):
    bad = {n: d for n, d in diffs.items() if not d <= rtol}
    if bad:
        raise ToleranceError(f"{out_path}: onnxruntime disagrees with {framework} beyond {rtol:.0e} x max|logit| ("
                             + ", ".join(f"batch {n}: {d:.2e}" for n, d in bad.items()) + "); not written")


