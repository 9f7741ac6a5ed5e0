"""``verify --layers`` against keras.applications: its per-block activations (a functional
sub-model over the layers at our block boundaries) compared with ours block by block."""
import pytest

from conformance.agreement.matrix import agreement, to_json
from conformance.cli.tables import blocks_table
from conformance.compare.tolerances import TOLERANCES

from .helpers import require


@pytest.mark.slow
def test_keras_applications_blocks_agree_with_ours(pool, tmp_path):
    require("tensorflow", "keras")  # found, never imported here
    import torchvision

    weights = tmp_path / "inception_v3.weights.h5"
    pool.request("keras-tensorflow", "seed_applications", out=str(weights), seed=5, num_classes=10)
    results, errors, precision, blocks = agreement("inception_v3", tmp_path / "w", pool, ["torch", "keras-applications"],
                                                   (299,), layers=True, source=weights,
                                                   source_format="keras-applications")
    r = to_json("inception_v3", results, errors, precision, blocks)
    assert not r["errors"], r["errors"]
    rows = r["blocks"]["inception_v3-eval-299"]["keras-applications"]
    # Every stage torchvision's Inception3 has, in its order (keras.applications has no aux head).
    expected = [n for n, _ in torchvision.models.Inception3(aux_logits=False, init_weights=False).named_children()]
    assert [row["block"] for row in rows["rows"]] == expected
    assert expected[7:18] == [f"Mixed_{s}" for s in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")]
    bound = TOLERANCES[("float32", "block")]["rel"]
    assert rows["first_beyond_tolerance"] is None and all(row["max_rel"] <= bound for row in rows["rows"]), rows
    text = blocks_table(blocks)
    assert "keras-applications: every block within tolerance" in text
    assert "Mixed_7c" in text.split("per-block max relative difference")[1]
