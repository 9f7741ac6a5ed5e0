"""ONNX export (``weights_bridge.onnx_export``, ``inception-bridge export-onnx``): the exported
graph agrees with our PyTorch model in onnxruntime within 1e-5 x max|logit| at two batch
sizes (one file, dynamic batch), and a failed export leaves nothing behind."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conformance.conftest import REPO, run_cli

RTOL = 1e-5


@pytest.fixture(scope="module")
def weights(googlenet_pth, tmp_path_factory):
    """Seeded test weights per architecture (googlenet: the session's file)."""
    paper = tmp_path_factory.mktemp("onnx-weights") / "googlenet_paper.pth"
    subprocess.run([sys.executable, "-m", "conformance.weights", "googlenet_paper", str(paper), "--seed", "2"],
                   cwd=REPO, check=True)
    return {"googlenet": googlenet_pth, "googlenet_paper": paper}


@pytest.mark.parametrize("arch", ["googlenet", "googlenet_paper"])
def test_export_agrees_with_torch(arch, weights, tmp_path):
    import onnx

    from weights_bridge.onnx_export import DEFAULT_OPSET, build_torch_model, check_onnx, export_onnx
    from weights_bridge import read

    out = tmp_path / f"{arch}.onnx"
    res = export_onnx(arch, weights[arch], out)
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert res["opset"] == DEFAULT_OPSET == 10
    assert set(res["max_rel"]) == {1, 3} and all(d <= RTOL for d in res["max_rel"].values()), res["max_rel"]

    graph = onnx.load(str(out))
    assert graph.opset_import[0].version == 10
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value, "the batch dimension must be dynamic"
    # Independently of the export's own check: other batch sizes and inputs.
    model = build_torch_model(read(weights[arch], architecture=arch))
    diffs = check_onnx(model, out, 224, batch_sizes=(2, 5), seed=123)
    assert all(d <= RTOL for d in diffs.values()), diffs


def test_tolerance_failure_writes_nothing(weights, tmp_path):
    from weights_bridge import ToleranceError
    from weights_bridge.onnx_export import export_onnx

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
