"""Every implementation pair agrees on the same converted weights: eval and train mode, two
input sizes, BN running statistics; each framework in its own worker process."""
import json
from pathlib import Path

import pytest

from conformance.matrix import available
from conformance.tolerances import TOLERANCES
from impls.spec import ARCHITECTURES, model_spec
from impls.spec.tensors import canonical_shapes

ARCHS = [a if a in ("googlenet", "googlenet_paper") else pytest.param(a, marks=pytest.mark.slow) for a in ARCHITECTURES]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_implementation_ran(matrix, arch):
    run = matrix(arch)
    assert not run["errors"], run["errors"]
    for impl in ("torch", "flax", "keras-tensorflow", "keras-jax", "keras-torch"):
        if available(impl):
            assert impl in run["impls"], f"{impl} is installed but did not run"


@pytest.mark.parametrize("arch", ARCHS)
def test_pairwise_agreement(matrix, arch):
    run = matrix(arch)
    bad = [r for r in run["results"] if not r.ok]
    assert run["results"], "no comparisons were made"
    report = "\n".join(f"{r.task} {r.a} vs {r.b} {r.quantity}: abs {r.max_abs:.2e} rel {r.max_rel:.2e}" for r in bad)
    assert not bad, f"beyond tolerance {TOLERANCES}:\n{report}"
    tasks = {r.task for r in run["results"]}
    assert {t.id for t in run["tasks"]} <= tasks
    pairs = {(r.a, r.b) for r in run["results"]}
    n = len(run["impls"])
    assert len(pairs) == n * (n - 1) // 2


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shapes_and_fields(matrix, arch):
    import numpy as np

    run = matrix(arch)
    spec = model_spec(arch)
    train_fields = [f for f, head in spec.output_fields]
    has_bn = any(k.endswith("running_mean") for k in canonical_shapes(spec))
    for impl, out_dir in run["out_dirs"].items():
        for task in run["tasks"]:
            out = dict(np.load(Path(out_dir) / f"{task.id}.npz"))
            fields = sorted(k for k in out if ":" not in k)
            expected = ["logits"] if task.mode == "eval" else sorted(train_fields)
            assert fields == expected, (impl, task.id)
            for f in fields:
                assert out[f].shape == (task.batch, spec.num_classes), (impl, task.id, f)
            if task.mode == "train" and has_bn:
                assert any(k.startswith("stat:") for k in out), (impl, task.id)


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_are_order_one(matrix, arch):
    """Test weights must exercise the numerics: neither vanishing nor exploding logits."""
    import numpy as np

    run = matrix(arch)
    out = np.load(Path(run["out_dirs"]["torch"]) / f"{run['tasks'][0].id}.npz")
    assert 0.5 < np.abs(out["logits"]).max() < 1e3


def test_full_precision_is_recorded(matrix):
    run = matrix("googlenet")
    for impl, out_dir in run["out_dirs"].items():
        info = json.loads((Path(out_dir) / "report.json").read_text())["precision"]
        if "float32_matmul_precision" in info:
            assert info["float32_matmul_precision"] == "highest" and info["cudnn_allow_tf32"] is False
        if "jax_default_matmul_precision" in info:
            assert info["jax_default_matmul_precision"] == "highest"
        if "tf32" in info:
            assert info["tf32"] is False


@pytest.mark.gpu
def test_workers_use_the_gpu_when_present(matrix):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    info = json.loads((Path(matrix("googlenet")["out_dirs"]["torch"]) / "report.json").read_text())["precision"]
    assert info["device"] == "cuda"
