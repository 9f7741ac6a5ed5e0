"""The fast inference paths (``optimize_for_inference`` in impls/torch_nn, flax_nnx, keras3)
compute what the plain models compute, within the eval tolerance of ``conformance.compare.tolerances``:
each against the plain model of its own framework and against PyTorch's plain model, on seeded
O(1) weights. The bound is raised to FLOOR_FACTOR x PyTorch's own fp32 distance from fp64, as in
``verify``. GoogLeNet in torch and Flax is the default tier; everything else is ``slow``."""
from __future__ import annotations

import os

import numpy as np
import pytest

from conformance import registry
from conformance.compare import tolerances
from impls.xla_cpu import FAST_CONV_FLAGS

from .helpers import require, seeded

SIZES = {"googlenet": 224, "inception_v3": 299, "inception_v4": 299, "inception_resnet_v2": 299, "bn_inception": 224}


@pytest.fixture(scope="module")
def weights(tmp_path_factory, request):
    """arch -> (seeded .pth, the same as a neutral folder, the input batch's .npy, PyTorch's plain
    logits on it and their fp32 floor): made once per architecture, shared by its implementations."""
    import weights_bridge as wb

    made = {}

    def get(arch):
        if arch not in made:
            folder = tmp_path_factory.mktemp("fast")
            if arch == "googlenet":  # the session's seeded GoogLeNet, shared with the other tests
                pth = request.getfixturevalue("googlenet_pth")
            else:
                pth = seeded(folder / f"{arch}.pth", arch, seed=3)
            wb.convert(pth, folder / f"{arch}.neutral", arch)
            x = np.random.default_rng(7).standard_normal((2, 3, SIZES[arch], SIZES[arch]), dtype=np.float32)
            np.save(folder / "x.npy", x)
            made[arch] = (pth, folder / f"{arch}.neutral", folder / "x.npy", *_reference(arch, pth, x))
        return made[arch]

    return get


def _reference(arch, pth, x):
    """PyTorch plain logits and its fp32 floor (max |fp32 - fp64|)."""
    import torch

    from impls.torch_nn import create_model

    state = torch.load(pth, weights_only=True)
    model = create_model(arch, aux_logits=False)
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=True)
    model.eval()
    with torch.no_grad():
        y32 = model(torch.from_numpy(x)).numpy()
        y64 = model.double()(torch.from_numpy(x).double()).numpy()
    return y32, float(np.abs(y32 - y64).max())


def _check(pool, impl, arch, weights, tmp_path):
    """In the implementation's worker, as users get it: Flax and Keras-on-jax with the XLA:CPU
    flags of the fast path (``impls.xla_cpu``, read at start-up: a worker of their own)."""
    _, neutral, x, ref, floor = weights(arch)
    out = tmp_path / f"{impl}.npz"
    env = {"XLA_FLAGS": " ".join([os.environ.get("XLA_FLAGS", ""), *FAST_CONV_FLAGS]).strip()} \
        if impl in ("flax", "keras-jax") else None
    pool.request(registry.get(impl).process, "fast", env, impl=impl, arch=arch, weights={"neutral": str(neutral)},
                 input=str(x), out=str(out))
    got = np.load(out)
    scale = float(np.abs(ref).max())
    assert scale > 1.0  # O(1) logits: a relative bound means something
    for name, a, b in (("fast vs plain", got["fast"], got["plain"]), ("fast vs torch", got["fast"], ref)):
        diff = float(np.abs(a - b).max())
        print(f"{impl} {arch} {name}: max rel diff {diff / scale:.1e} (fp32 floor {floor / scale:.1e})")
        assert tolerances.within(diff, scale, "eval", floor_abs=floor, floor_rel=floor / scale), (
            f"{impl} {arch} {name}: max|diff| {diff:.2e}, {diff / scale:.1e} relative to max|logit| {scale:.1f}")


@pytest.mark.parametrize("impl", ["torch", "flax"])
def test_fast_googlenet(pool, impl, weights, tmp_path):
    require("flax") if impl == "flax" else None
    _check(pool, impl, "googlenet", weights, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["keras-tensorflow", "keras-jax", "keras-torch"])
def test_fast_googlenet_keras(pool, impl, weights, tmp_path):
    require("keras", impl.split("-", 1)[1])
    _check(pool, impl, "googlenet", weights, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["inception_v3", "inception_v4", "inception_resnet_v2", "bn_inception"])
@pytest.mark.parametrize("impl", ["torch", "flax", "keras-tensorflow", "keras-torch"])
def test_fast_deep_models(pool, impl, arch, weights, tmp_path):
    """keras-torch has its own kernels (impls/keras3/fast_torch.py: torch's convolutions and pools
    in channels-last, bias and ReLU fused), so it is checked on every model, ceil_mode pools included."""
    require("flax") if impl == "flax" else require("keras", impl.split("-", 1)[1]) if impl.startswith("keras") else None
    _check(pool, impl, arch, weights, tmp_path)


def test_fast_torch_leaves_the_model_alone():
    """Folding works on a copy: the model keeps its BatchNorms and state_dict, stays trainable,
    and the fast module refuses train mode."""
    import torch

    from impls.torch_nn import create_model
    from impls.torch_nn.fast import optimize_for_inference

    model = create_model("googlenet", aux_logits=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 3 + 9 * 6  # stem + 6 per block
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError, match="eval-only"):
        fast.train()


def test_load_for_inference_is_fast_by_default_and_plain_on_request(googlenet_pth, tmp_path):
    """The user's entry point: any checkpoint file in, the fast form out unless ``fast=False``."""
    import torch

    from impls.torch_nn.fast import InferenceModel
    from weights_bridge import convert
    from weights_bridge.inference import load_for_inference

    neutral = tmp_path / "googlenet.neutral"
    convert(googlenet_pth, neutral, architecture="googlenet")
    fast = load_for_inference(neutral, "torch")
    plain = load_for_inference(neutral, "torch", fast=False)
    assert isinstance(fast, InferenceModel)
    assert not plain.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert not [k for k in plain.state_dict() if k.startswith("aux")]  # eval logits only
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32))
    with torch.no_grad():
        a, b = plain(x), fast(x)
    assert tolerances.within(float((a - b).abs().max()), float(a.abs().max()), "eval")
    with pytest.raises(ValueError, match="unknown framework 'tf'"):
        load_for_inference(neutral, "tf")
