"""Every implementation pair agrees on the same converted weights: eval and train mode, two
input sizes, BN running statistics; each framework in its own worker process."""
import pytest

from conformance import registry
from conformance.agreement.matrix import load_outputs, output_path
from conformance.compare.tolerances import TOLERANCES
from impls.spec import ARCHITECTURES, model_spec
from impls.spec.tensors import canonical_shapes

from .helpers import require

ARCHS = [a if a in ("googlenet", "googlenet_paper") else pytest.param(a, marks=pytest.mark.slow) for a in ARCHITECTURES]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_implementation_ran(matrix, arch):
    run = matrix(arch)
    assert not run["errors"], run["errors"]
    for impl in registry.implementations(arch):
        assert impl in run["impls"], f"{impl} is installed but did not run"


@pytest.mark.parametrize("arch", ARCHS)
def test_pairwise_agreement(matrix, arch):
    run = matrix(arch)
    bad = [r for r in run["results"] if not r.ok]
    assert run["results"], "no comparisons were made"
    report = "\n".join(f"{r.task} {r.a} vs {r.b} {r.quantity}: abs {r.max_abs:.2e} rel {r.max_rel:.2e}" for r in bad)
    assert not bad, f"beyond tolerance {TOLERANCES}:\n{report}"
    assert {t.id for t in run["tasks"]} <= {r.task for r in run["results"]}
    n = len(run["impls"])
    assert len({(r.a, r.b) for r in run["results"]}) == n * (n - 1) // 2


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shapes_and_fields(matrix, arch):
    run = matrix(arch)
    spec = model_spec(arch)
    train_fields = [f for f, head in spec.output_fields]
    has_bn = any(k.endswith("running_mean") for k in canonical_shapes(spec))
    for impl in run["impls"]:
        for task in run["tasks"]:
            out = load_outputs(output_path(run["workdir"], impl, task))
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
    out = load_outputs(output_path(run["workdir"], "torch", run["tasks"][0]))
    assert 0.5 < np.abs(out["logits"]).max() < 1e3


def test_full_precision_is_recorded(matrix):
    for impl, info in matrix("googlenet")["precision"].items():
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
    assert matrix("googlenet")["precision"]["torch"]["device"] == "cuda"


def test_a_source_that_needs_keras_is_read_in_the_keras_worker(pool, googlenet_pth, tmp_path):
    """``prepare`` reads a Keras file in the keras-tensorflow worker (TensorFlow loaded here would
    crash this process's next torchvision import; the autouse check fails a test that loads it):
    the neutral folder holds the file's tensors exactly, and bad input comes back as the
    bridge's own error, naming the file."""
    import numpy as np

    from conformance.agreement.checkpoints import prepare
    from weights_bridge import errors, formats, neutral

    require("keras", "tensorflow")
    src = tmp_path / "googlenet.weights.h5"
    pool.request("keras-tensorflow", "convert", src=str(googlenet_pth), dst=str(src), fmt="keras",
                 architecture="googlenet")
    got = neutral.read(prepare("googlenet", tmp_path / "w", pool, source=src)["neutral"]).tensors
    want = formats.read(googlenet_pth, "torch", "googlenet").tensors
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an HDF5 file")
    with pytest.raises(errors.BridgeError, match="bad.weights.h5"):
        prepare("googlenet", tmp_path / "w2", pool, source=bad)
