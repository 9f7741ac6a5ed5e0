"""ONNX export of our Keras model (TensorFlow backend, through tf2onnx), in the keras-tensorflow
worker (``export_onnx(..., framework="keras")``, ``inception-bridge export-onnx --framework keras``).

The calling process may already hold torch (a ``.pth`` read), and TensorFlow must run on a
backend fixed before keras is first imported, so the export runs in the Keras worker: the caller
reads and checks the weights (the bridge's own errors and exit codes), hands them over as a
neutral folder, and the worker builds ``impls.keras3``'s model at the static input size, calls
it once (Keras exports only a called model), exports it with ``model.export(format="onnx")``
and a ``(None, H, W, 3)`` input signature (dynamic batch), names the graph's input ``input``,
its output ``logits`` and their first dimension ``batch`` as the PyTorch export does, and runs
the file in onnxruntime against the Keras forward with the PyTorch path's own check
(``conformance.compare.onnx``). A failure comes back as the bridge error it raised.

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

import numpy as np


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


def export(weights, tmp, out, opset, size, batch_sizes):
    """Exports the neutral checkpoint ``weights`` to ``tmp``; returns {"max_rel": {batch: rel}, "opset"}."""
    import keras
    import onnx

    from weights_bridge.errors import BridgeError
    from weights_bridge.keras_io import to_model

    from ...compare.onnx import file_opset, onnxruntime_diffs
    from ..base import read_neutral

    if keras.backend.backend() != "tensorflow":
        raise BridgeError(f"Keras ONNX export runs on the tensorflow backend, found {keras.backend.backend()!r}")
    ckpt = read_neutral(weights)
    model = to_model(ckpt, input_size=size)

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
        raise BridgeError(f"{out}: Keras (tf2onnx) ONNX export of {ckpt.architecture} at opset {opset} "
                          f"failed: {type(e).__name__}: {reason[:300]}") from e
    diffs = onnxruntime_diffs(tmp, forward, (size, size, 3), batch_sizes, framework="Keras", where=out)
    return {"max_rel": diffs, "opset": file_opset(tmp)}


