"""ONNX export (``conformance.onnx``, ``inception-bridge export-onnx``): the exported
graph agrees with our PyTorch model in onnxruntime within 1e-5 x max|logit| at two batch
sizes (one file, dynamic batch), and a failed export leaves nothing behind.

The Keras export (``--framework keras``: TensorFlow backend through tf2onnx, in a worker
process; this process never imports keras) checks itself against Keras at batch 1 and 3; here
its file is checked from outside (slow tier: tf2onnx's export takes 20 s): NHWC input with a
dynamic batch, the logits of our PyTorch model and of the PyTorch export for the same image
(after the NCHW -> NHWC transpose), and those of the suite's own Keras worker."""
from __future__ import annotations

import re

import numpy as np
import pytest

from conformance.compare.tolerances import within

from .helpers import own_process, run_cli, seeded

RTOL = 1e-5


@pytest.fixture(scope="module")
def weights(googlenet_pth, tmp_path_factory):
    """Seeded test weights per architecture (googlenet: the session's file)."""
    paper = seeded(tmp_path_factory.mktemp("onnx-weights") / "googlenet_paper.pth", "googlenet_paper", seed=2)
    return {"googlenet": googlenet_pth, "googlenet_paper": paper}


@pytest.fixture(scope="module")
def torch_onnx(weights, tmp_path_factory):
    """arch -> (file, export result), each exported once from PyTorch (the Keras tests reuse googlenet's)."""
    from conformance.onnx import export_onnx

    done = {}

    def get(arch):
        if arch not in done:
            out = tmp_path_factory.mktemp(f"onnx-{arch}") / f"{arch}.onnx"
            done[arch] = out, export_onnx(arch, weights[arch], out)
        return done[arch]

    return get


@pytest.mark.parametrize("arch", ["googlenet", "googlenet_paper"])
def test_export_agrees_with_torch(arch, weights, torch_onnx):
    import onnx

    import torch

    from conformance.compare.onnx import onnxruntime_diffs
    from conformance.onnx.export import DEFAULT_OPSET
    from weights_bridge import read
    from weights_bridge.torch_io import to_model

    out, res = torch_onnx(arch)
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == [out.name]
    assert res["opset"] == DEFAULT_OPSET == 10
    assert set(res["max_rel"]) == {1, 3} and all(d <= RTOL for d in res["max_rel"].values()), res["max_rel"]

    graph = onnx.load(str(out))
    assert graph.opset_import[0].version == 10
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value, "the batch dimension must be dynamic"
    # Independently of the export's own check: other batch sizes and inputs.
    model = to_model(read(weights[arch], architecture=arch))

    def reference(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    diffs = onnxruntime_diffs(out, reference, (3, 224, 224), batch_sizes=(2, 5), seed=123)
    assert all(d <= RTOL for d in diffs.values()), diffs


def test_tolerance_failure_writes_nothing(weights, tmp_path):
    from conformance.onnx import export_onnx
    from weights_bridge import ToleranceError

    with pytest.raises(ToleranceError, match="onnxruntime disagrees"):
        export_onnx("googlenet_paper", weights["googlenet_paper"], tmp_path / "x.onnx", rtol=0.0)
    assert list(tmp_path.iterdir()) == []


def test_cli_export(weights, tmp_path):
    out = tmp_path / "googlenet.onnx"
    proc = run_cli("export-onnx", "googlenet", weights["googlenet"], out)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "max relative difference" in proc.stdout
    again = run_cli("export-onnx", "googlenet", weights["googlenet"], out)
    assert again.returncode == 6  # exists, no --overwrite


def test_cli_bad_weights_writes_nothing(weights, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "out" / "bad.onnx"
    out.parent.mkdir()
    proc = run_cli("export-onnx", "googlenet", bad, out)
    assert proc.returncode == 3, proc.stderr
    assert list(out.parent.iterdir()) == []
    wrong = run_cli("export-onnx", "googlenet", weights["googlenet_paper"], out)  # wrong architecture
    assert wrong.returncode == 5, wrong.stderr
    assert list(out.parent.iterdir()) == []


@pytest.fixture(scope="module")
def exported(googlenet_pth, torch_onnx, tmp_path_factory, pool):
    """googlenet exported from Keras through the CLI (and from PyTorch, shared with the tests above)."""
    d = tmp_path_factory.mktemp("onnx-keras")
    with own_process(pool):
        proc = run_cli("export-onnx", "googlenet", googlenet_pth, d / "keras.onnx", "--framework", "keras", fresh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"dir": d, "keras": d / "keras.onnx", "torch": torch_onnx("googlenet")[0], "stdout": proc.stdout}


@pytest.fixture(scope="module")
def run_onnx():
    """``run(path, x)``: a file's outputs, each file's onnxruntime session opened once and dropped
    with the module (a module-level cache held them for the rest of the session)."""
    from conformance.compare.onnx import session

    opened = {}

    def run(path, x):
        if path not in opened:
            opened[path] = session(path)
        return opened[path].run(None, {"input": x})[0]

    yield run
    opened.clear()


def _agree(ref, got, what):
    err = float(np.max(np.abs(ref - got)))
    assert ref.shape == got.shape and within(err, float(np.max(np.abs(ref))), "eval"), \
        f"{what}: max|Δ| {err:.2e}, {err / np.max(np.abs(ref)):.2e} relative"


@pytest.mark.slow  # tf2onnx's export of the Keras model: 20 s of the default tier's 5 minutes
def test_keras_export_file(exported):
    import onnx

    assert sorted(p.name for p in exported["dir"].iterdir()) == ["keras.onnx"]  # no temporaries
    # the export's own check against Keras at batch 1 and 3, as the CLI reports it
    reported = dict(re.findall(r"batch (\d+): ([0-9.e+-]+)", exported["stdout"]))
    assert "onnxruntime vs Keras" in exported["stdout"] and "input NHWC" in exported["stdout"]
    assert set(reported) == {"1", "3"} and all(float(d) <= RTOL for d in reported.values()), exported["stdout"]
    model = onnx.load(str(exported["keras"]))
    assert {o.domain: o.version for o in model.opset_import}.get("") == 10  # as requested (default)
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    assert [(v.name, dims(v)) for v in (*model.graph.input, *model.graph.output)] == [
        ("input", ["batch", 224, 224, 3]), ("logits", ["batch", 1000])]


@pytest.mark.slow
def test_keras_onnx_matches_torch(exported, googlenet_pth, run_onnx):
    """Dynamic batch (2: neither traced nor self-checked; 5 in the slow tier) against our PyTorch
    model, and the two ONNX files against each other on the same images."""
    import torch

    from weights_bridge import read
    from weights_bridge.torch_io import to_model

    model = to_model(read(googlenet_pth, architecture="googlenet"))
    rng = np.random.default_rng(2024)
    for n in (2,):
        x = rng.standard_normal((n, 3, 224, 224), dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        from_keras = run_onnx(exported["keras"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
        _agree(ref, from_keras, f"Keras ONNX vs PyTorch, batch {n}")
        _agree(run_onnx(exported["torch"], x), from_keras, f"Keras ONNX vs PyTorch ONNX, batch {n}")


def test_keras_export_bad_input_writes_nothing(googlenet_pth, tmp_path, monkeypatch):
    import importlib.util

    from conformance.onnx import export_onnx
    from weights_bridge import BridgeError

    out = tmp_path / "out" / "x.onnx"
    out.parent.mkdir()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    proc = run_cli("export-onnx", "googlenet", bad, out, "--framework", "keras")  # read before any export
    assert proc.returncode == 3 and "bad.pth" in proc.stderr, proc.stderr
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else find_spec(name, *a))
    with pytest.raises(BridgeError, match=r"needs the \[test\] extra \(not installed: tf2onnx\)"):
        export_onnx("googlenet", googlenet_pth, out, framework="keras")
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
def test_keras_onnx_matches_keras_worker(pool, exported, googlenet_pth, tmp_path, run_onnx):
    """The file against our Keras model run by the suite's own Keras worker (not the exporter)."""
    import weights_bridge as wb
    from conformance.agreement import matrix
    from conformance.agreement.tasks import Task, make_inputs

    wb.convert(googlenet_pth, tmp_path / "g.neutral", "googlenet")
    task = Task("googlenet", "eval", 224, batch=5)
    errors, _ = matrix.run_tasks(["keras-tensorflow"], [task], {"neutral": str(tmp_path / "g.neutral")}, tmp_path, pool)
    assert not errors, errors
    x = np.load(make_inputs([task], tmp_path)[task.id])
    from_keras = run_onnx(exported["keras"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    logits = matrix.load_outputs(matrix.output_path(tmp_path, "keras-tensorflow", task))["logits"]
    _agree(logits, from_keras, "Keras ONNX vs Keras, batch 5")


@pytest.mark.slow
def test_keras_tolerance_failure_writes_nothing(googlenet_pth, tmp_path, room):
    from conformance.onnx import export_onnx
    from weights_bridge import ToleranceError

    with pytest.raises(ToleranceError, match="onnxruntime disagrees with Keras"):
        export_onnx("googlenet", googlenet_pth, tmp_path / "x.onnx", rtol=0.0, framework="keras")
    assert list(tmp_path.iterdir()) == []
