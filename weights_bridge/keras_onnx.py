"""ONNX export of our Keras model (TensorFlow backend, through tf2onnx), in a worker process.

``export_onnx(..., framework="keras")`` (``inception-bridge export-onnx --framework keras``)
comes here. The calling process may already hold torch (a ``.pth`` read), and TensorFlow must
run on a backend fixed before keras is first imported, so the export runs in a fresh
``python -m weights_bridge.keras_onnx JOB.json`` with ``KERAS_BACKEND=tensorflow``: the caller
reads and checks the weights (the bridge's own errors and exit codes), hands them over as a
neutral folder, and the worker builds ``impls.keras3``'s model at the static input size, calls
it once (Keras exports only a called model), exports it with ``model.export(format="onnx")``
and a ``(None, H, W, 3)`` input signature (dynamic batch), names the graph's input ``input``,
its output ``logits`` and their first dimension ``batch`` as the PyTorch export does, and runs
the file in onnxruntime against the Keras forward with the PyTorch path's own check
(``onnx_export.onnxruntime_diffs``). A failure comes back as the bridge error it raised.

The graph takes **NHWC** input (Keras' layout; the PyTorch export takes NCHW): tf2onnx keeps
the TensorFlow input layout and puts one Transpose in front of the NCHW ONNX convolutions.
Opset: the one requested (default 10, as for PyTorch and seed 000), which tf2onnx honours; its
own default would be 15 (below 7, onnxruntime refuses the file and the error says so). Opset 10
is enough because our Keras model pads explicitly (-inf pads for ``ceil_mode`` pools, so no
``ceil_mode`` attribute), and BN is exported as Sub/Mul/Add.
tf2onnx also declares the ``ai.onnx.ml`` domain (version 2), which the graph does not use.

Measured on seeded test weights (CPU): onnxruntime vs Keras 6.2e-6 to 6.5e-6 x max|logit| for
googlenet, 4.5e-7 to 5e-7 for googlenet_paper; the Keras file is 2.9e-6 to 3.4e-6 from a float64
PyTorch run and 3.8e-6 to 4.3e-6 from the PyTorch export on the same images.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

from . import errors
from .errors import BridgeError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # holds weights_bridge and impls


def require_tf2onnx():
    """Fails early, without importing anything, when Keras' ONNX export cannot run."""
    missing = [m for m in ("tensorflow", "keras", "tf2onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise BridgeError(f"Keras ONNX export needs {', '.join(missing)} (Keras 3 exports TensorFlow-backend models "
                          f"through tf2onnx): pip install tf2onnx, or install inception-bridge[keras,test]")


def export_in_worker(ckpt, tmp, out_path, opset, size, batch_sizes):
    """Exports ``ckpt`` to ``tmp`` in a worker process; returns ({batch: max rel diff}, file opset)."""
    from . import neutral

    with tempfile.TemporaryDirectory(prefix="inception-bridge-onnx-") as work:
        work = Path(work)
        neutral.write(ckpt, work / "weights.neutral")
        job = {"weights": str(work / "weights.neutral"), "tmp": str(tmp), "out": str(out_path), "opset": opset,
               "size": size, "batch_sizes": list(batch_sizes), "result": str(work / "result.json")}
        (work / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "KERAS_BACKEND": "tensorflow",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        proc = subprocess.run([sys.executable, "-m", "weights_bridge.keras_onnx", str(work / "job.json")],
                              env=env, capture_output=True, text=True)
        result = work / "result.json"
        if not result.is_file():
            last = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["no output"]
            raise BridgeError(f"{out_path}: the Keras ONNX export worker died (exit {proc.returncode}): "
                              f"{last[0][:300]}")
        res = json.loads(result.read_text())
    if "error" in res:
        kind = getattr(errors, res["kind"], BridgeError)
        raise (kind if isinstance(kind, type) and issubclass(kind, BridgeError) else BridgeError)(res["error"])
    return {int(n): d for n, d in res["max_rel"].items()}, res["opset"]


def name_io(path):
    """tf2onnx names the output ``Identity:0`` and the batch dimension ``unk__N``: use the
    PyTorch export's names, so both files are driven the same way."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    for value, name in ((graph.input[0], "input"), (graph.output[0], "logits")):
        old, value.name = value.name, name
        for node in graph.node:
            node.input[:] = [name if i == old else i for i in node.input]
            node.output[:] = [name if o == old else o for o in node.output]
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, str(path))


def _export(job):
    import keras
    import onnx

    from impls.keras3 import create_model

    from .keras_io import load_into
    from .neutral import read
    from .onnx_export import file_opset, onnxruntime_diffs

    if keras.backend.backend() != "tensorflow":
        raise BridgeError(f"Keras ONNX export runs on the tensorflow backend, found {keras.backend.backend()!r}")
    ckpt = read(job["weights"])
    size, tmp, opset = job["size"], job["tmp"], job["opset"]
    variant = {"variant": ckpt.variant} if ckpt.variant != "default" else {}
    model = create_model(ckpt.architecture, num_classes=ckpt.num_classes, aux_logits=ckpt.aux_logits,
                         transform_input=ckpt.transform_input, input_size=size, **variant)
    load_into(model, ckpt)

    def forward(x):
        return keras.ops.convert_to_numpy(model(x, training=False))

    forward(np.zeros((1, size, size, 3), np.float32))  # Keras exports only a model that has been called
    spec = keras.InputSpec(shape=(None, size, size, 3), dtype="float32", name="input")
    try:
        model.export(tmp, format="onnx", opset_version=opset, verbose=False, input_signature=[spec])
        name_io(tmp)
        onnx.checker.check_model(tmp)
    except Exception as e:  # tf2onnx raises whatever its converters raise
        reason = str(e).splitlines()[0] if str(e) else ""
        raise BridgeError(f"{job['out']}: Keras (tf2onnx) ONNX export of {ckpt.architecture} at opset {opset} "
                          f"failed: {type(e).__name__}: {reason[:300]}") from e
    diffs = onnxruntime_diffs(tmp, forward, (size, size, 3), job["batch_sizes"], framework="Keras", where=job["out"])
    return diffs, file_opset(tmp)


def main(job_path):
    os.environ["KERAS_BACKEND"] = "tensorflow"  # before keras is first imported
    job = json.loads(Path(job_path).read_text())
    try:
        diffs, opset = _export(job)
        res = {"max_rel": diffs, "opset": opset}
    except BridgeError as e:
        res = {"error": str(e), "kind": type(e).__name__}
    except Exception as e:
        traceback.print_exc()
        res = {"error": f"{job['out']}: Keras ONNX export failed: {type(e).__name__}: {str(e)[:300]}",
               "kind": "BridgeError"}
    Path(job["result"]).write_text(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1])
