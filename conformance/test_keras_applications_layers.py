"""``verify --layers`` against keras.applications: its per-block activations (a functional
sub-model over the layers at our block boundaries) compared with ours block by block."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conformance.conftest import REPO, run_cli
from conformance.tolerances import TOLERANCES


@pytest.mark.slow
def test_keras_applications_blocks_agree_with_ours(tmp_path):
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
        pytest.skip("keras.applications needs keras and tensorflow")  # found, never imported here
    import torchvision

    weights = tmp_path / "inception_v3.weights.h5"
    subprocess.run([sys.executable, "-c", "from conformance.keras_applications_weights import make\n"
                    f"make({str(weights)!r}, seed=5, num_classes=10)\n"], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    report = tmp_path / "m.json"
    proc = run_cli("verify", "inception_v3", "--weights", weights, "--from", "keras-applications", "--layers",
                   "--impls", "torch,keras-applications", "--sizes", "299", "--json", report, "--workdir", tmp_path / "w")
    r = json.loads(report.read_text())
    assert not r["errors"], r["errors"]
    blocks = r["blocks"]["inception_v3-eval-299"]["keras-applications"]
    # Every stage torchvision's Inception3 has, in its order (keras.applications has no aux head).
    expected = [n for n, _ in torchvision.models.Inception3(aux_logits=False, init_weights=False).named_children()]
    assert [row["block"] for row in blocks["rows"]] == expected
    assert expected[7:18] == [f"Mixed_{s}" for s in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")]
    bound = TOLERANCES[("float32", "block")]["rel"]
    assert blocks["first_beyond_tolerance"] is None and all(row["max_rel"] <= bound for row in blocks["rows"]), blocks
    assert "keras-applications: every block within tolerance" in proc.stdout
    assert "Mixed_7c" in proc.stdout.split("per-block max relative difference")[1]
