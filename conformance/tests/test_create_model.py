"""``weights_bridge.models.create_model``: one line from a file in any format to each framework's
plain model. Outputs are held against torchvision's GoogLeNet holding the same state_dict (an
implementation that is not ours) and, in Flax and Keras, against our torch model through the
existing loader. Keras runs in a subprocess (tensorflow never in the pytest process)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conformance.compare.tolerances import within
from weights_bridge import WeightsMismatchError, convert
from weights_bridge.errors import BridgeError
from weights_bridge.models import create_model

from .helpers import require, run_python

SIZE = 96  # GoogLeNet's eval path pools adaptively: a small input keeps the JAX/Keras runs short


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(7).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def neutral(googlenet_pth, tmp_path_factory):
    folder = tmp_path_factory.mktemp("create") / "googlenet.neutral"
    convert(googlenet_pth, folder, "googlenet")
    return folder


@pytest.fixture(scope="module")
def torchvision_logits(googlenet_pth, batch):
    """torchvision's own GoogLeNet on the seeded state_dict: the reference from outside our code,
    with its fp32 floor (its distance from its own float64 run: 9e-6 relative on some CPUs)."""
    import torchvision

    ref = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    ref.load_state_dict(torch.load(googlenet_pth, weights_only=True))
    with torch.no_grad():
        fp32 = ref.eval()(torch.from_numpy(batch)).numpy().astype(np.float64)
        fp64 = ref.double()(torch.from_numpy(batch).double()).numpy()
    floor = float(np.abs(fp32 - fp64).max())
    return fp32, floor, floor / float(np.abs(fp64).max())


def _agrees(ours, torchvision_logits):
    """Within the eval tolerance, raised to FLOOR_FACTOR x torchvision's fp32 floor: the rule of
    every agreement bound (conformance.compare.tolerances)."""
    ref, floor_abs, floor_rel = torchvision_logits
    d = float(np.abs(np.asarray(ours, np.float64) - ref).max())
    return within(d, float(np.abs(ref).max()), "eval", floor_abs=floor_abs, floor_rel=floor_rel), d


def test_torch_from_a_pth_and_from_a_neutral_folder(googlenet_pth, neutral, batch, torchvision_logits):
    for model in (create_model("torch", "googlenet", weights=googlenet_pth), create_model("torch", weights=neutral)):
        assert type(model).__name__ == "GoogLeNet" and model.training  # as freshly built: ready to train
        with torch.no_grad():
            ok, d = _agrees(model.eval()(torch.from_numpy(batch)).numpy(), torchvision_logits)
        assert ok, d


def test_torch_without_weights_is_the_registry_model():
    model = create_model("torch", "googlenet", num_classes=10, aux_logits=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert shapes["fc.weight"] == (10, 1024) and not any(k.startswith("aux") for k in shapes)
    assert sum(v.numel() for v in model.parameters()) == 5_610_154  # torchvision googlenet(num_classes=10)


def test_bad_calls_fail_with_one_clear_error(googlenet_pth, neutral):
    with pytest.raises(WeightsMismatchError, match="architecture is 'googlenet', expected 'inception_v3'"):
        create_model("torch", "inception_v3", weights=neutral)
    with pytest.raises(BridgeError, match="does not record its architecture"):
        create_model("torch", weights=googlenet_pth)
    with pytest.raises(BridgeError, match="name the architecture"):
        create_model("flax")
    with pytest.raises(BridgeError, match="unknown framework 'jax'"):
        create_model("jax", "googlenet")
    with pytest.raises(WeightsMismatchError, match="unknown architecture 'googlenet_v9'"):
        create_model("torch", "googlenet_v9")


def test_flax_from_a_neutral_folder(neutral, batch, torchvision_logits):
    from flax import nnx

    model = create_model("flax", weights=neutral)
    assert type(model).__name__ == "GoogLeNet" and not model.deterministic  # train mode, as built
    model.eval()
    ok, d = _agrees(nnx.jit(lambda m, x: m(x))(model, batch.transpose(0, 2, 3, 1)), torchvision_logits)
    assert ok, d


KERAS = r"""
import json, sys
import numpy as np
from weights_bridge.models import create_model
pth, neutral, x = sys.argv[1], sys.argv[2], np.load(sys.argv[3]).transpose(0, 2, 3, 1)
out = {}
for name, model in (("pth", create_model("keras", "googlenet", weights=pth, input_size=x.shape[1])),
                    ("neutral", create_model("keras", weights=neutral, input_size=x.shape[1]))):
    out[name] = {"class": type(model).__name__, "logits": np.asarray(model(x, training=False)).tolist()}
bare = create_model("keras", "googlenet", num_classes=10, aux_logits=False)
out["bare_params"] = int(sum(np.prod(w.shape) for w in bare.trainable_weights))
print("RESULT " + json.dumps(out))
"""


def test_keras_from_a_pth_and_from_a_neutral_folder(googlenet_pth, neutral, batch, torchvision_logits, tmp_path):
    require("keras", "tensorflow")
    np.save(tmp_path / "x.npy", batch)
    stdout = run_python(KERAS, googlenet_pth, neutral, tmp_path / "x.npy")
    r = json.loads(next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    for name in ("pth", "neutral"):
        assert r[name]["class"] == "GoogLeNet"
        ok, d = _agrees(np.array(r[name]["logits"]), torchvision_logits)
        assert ok, (name, d)
    assert r["bare_params"] == 5_610_154  # torchvision googlenet(num_classes=10); BN moving statistics not trainable
