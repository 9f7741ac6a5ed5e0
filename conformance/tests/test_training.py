"""Training-step conformance (conformance/training): GoogLeNet, converted weights, one batch of
4 at 224, label-smoothed CE + 0.3 x aux, then SGD and RMSProp steps (both epsilon conventions)
in PyTorch, Flax/optax and Keras on each backend; every pair's loss, gradients, BN running
statistics and updates within the floor-raised bounds of conformance.compare.tolerances.

The fast tier checks the optimizer conventions on small tensors in this process (torch and
optax; Keras never runs in the pytest process). The cross-framework run is in the slow tier:
five worker processes, about 4 minutes of CPU on two cores (JAX compiles the train step once per
machine; later runs hit the persistent compilation cache).
"""
from __future__ import annotations

import numpy as np
import pytest

from conformance.compare import steps as S
from conformance.training import hyper as H
from conformance.training import run as T


def _torch_steps(opt_name, w, g, steps=2):
    import torch

    from conformance.frameworks.torch_nn.train import optimizer

    p = torch.nn.Parameter(torch.from_numpy(w.copy()))
    opt = optimizer(opt_name, H.hyper("googlenet"), [p])
    out = []
    for _ in range(steps):
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


def _optax_steps(opt_name, w, g, steps=2):
    from conformance.frameworks.flax_nnx.train import apply, optax_optimizer

    tx = optax_optimizer(opt_name, H.hyper("googlenet"))
    params, out = {"w": w}, []
    state = tx.init(params)
    for _ in range(steps):
        params, state = apply(tx, params, state, {"w": g})
        out.append(np.asarray(params["w"]))
    return out


@pytest.mark.parametrize("opt_name", list(H.OPTIMIZERS))
def test_torch_and_optax_conventions_agree(opt_name):
    """torch.optim (or the torch translation) and optax, as configured, are the same optimizer:
    coupled weight decay, momentum, and the epsilon placement each name promises."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(1000).astype(np.float32)
    g = (rng.standard_normal(1000) * 3).astype(np.float32)  # |g| ~ eps: the conventions part here
    for a, b in zip(_torch_steps(opt_name, w, g), _optax_steps(opt_name, w, g)):
        np.testing.assert_allclose(a - w, b - w, rtol=0, atol=1e-5 * np.abs(a - w).max())  # fp32 ulp of w


def test_epsilon_placement_is_not_rounding():
    """At epsilon 1.0, sqrt(v) + eps and sqrt(v + eps) are different optimizers."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal(1000).astype(np.float32)
    g = (rng.standard_normal(1000) * 3).astype(np.float32)
    out, inside = _torch_steps("rmsprop_out", w, g)[0], _torch_steps("rmsprop_in", w, g)[0]
    assert np.abs(out - inside).max() > 0.1 * np.abs(out - w).max()


def test_tensor_bounds_take_the_downstream_floor():
    """A trunk tensor's bound comes from the largest floor between it and the loss; a head keeps
    its own (the stated 1e-5 where fp32 is well conditioned)."""
    floor = {"grad:inception4e.x": (0, 1e-3), "grad:inception5b.y": (0, 2e-2), "grad:fc.weight": (0, 1e-9),
             "grad:aux1.fc2.weight": (0, 2e-5), "grad:conv1.conv.weight": (0, 1e-9)}
    b = S.tensor_bounds("grad", list(floor), floor, "googlenet")
    assert b["grad:inception4e.x"] == pytest.approx(8e-2) and b["grad:conv1.conv.weight"] == pytest.approx(8e-2)
    assert b["grad:inception5b.y"] == pytest.approx(8e-2)
    assert b["grad:fc.weight"] == 1e-5 and b["grad:aux1.fc2.weight"] == pytest.approx(8e-5)


@pytest.mark.parametrize("arch,parameters,grown", [
    ("googlenet", 6_624_904 + 2 * 5_000, 1.6 * 2**30),  # keras-jax float64 step: +1.6 GiB (slow tier)
    ("inception_resnet_v2", 55_843_464 + 2 * 100_000, 6.0e9),  # keras-jax float64 step: up to 6.0 GB
])
def test_a_steps_declared_memory_covers_what_was_measured(arch, parameters, grown):
    """The pool runs training steps together only while their declared needs fit its budget: a
    need below what a step really takes lets two run beside idle workers (8.16 GiB in the slow
    tier, GoogLeNet's float64 step, before the floor). Parameter counts: torchvision's and timm's,
    plus BN statistics, roughly."""
    assert T.step_memory("keras-jax", parameters, "float64", optimizers=True) >= grown


def test_the_torch_float32_steps_need_counts_its_float64_twin_once():
    """Inception-ResNet-v2, 107 px, no optimizers, alone (2026-12-03): the torch worker grew by
    2746 MiB for its float32 step and float64 twin together, 1592 MiB for a float64 step. The
    need counted both steps' worst cases added up (6.0 GB, over the run's 5 GiB budget: every
    idle worker of both test processes closed for it); the twin runs after the step, in its memory."""
    parameters = 55_843_464 + 2 * 100_000
    need = T.step_memory("torch", parameters, "float32", optimizers=False)
    assert 2746 * 2**20 <= need < 5 * 2**30
    assert T.step_memory("torch", parameters, "float64", optimizers=False) >= 1592 * 2**20


@pytest.fixture(scope="module")
def train_run(pool, tmp_path_factory):
    return T.train_agreement("googlenet", tmp_path_factory.mktemp("train-googlenet"), pool)


def _load(path):
    """A worker's whole output file (GoogLeNet's: small enough to hold)."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
def test_every_implementation_ran(train_run):
    assert not train_run["errors"], train_run["errors"]
    assert set(train_run["impls"]) == set(T.implementations())


@pytest.mark.slow
def test_training_step_agrees(train_run):
    bad = [r for r in train_run["rows"] if not r.ok]
    assert not bad, "\n" + S.table({"rows": bad})
    quantities = {r.quantity for r in train_run["rows"]}
    assert {"loss", "grad", "bn_running_stats", "sgd1", "sgd2", "rmsprop_out1", "rmsprop_in2"} <= quantities


@pytest.mark.slow
def test_loss_and_head_gradients_are_tight(train_run):
    """Where fp32 is well conditioned the stated 1e-5 holds unraised: the loss, and the
    classifier gradients (a label-smoothing or aux-weight slip moves them by >1e-3)."""
    for r in train_run["rows"]:
        if r.quantity == "loss":
            assert r.max_rel <= 1e-5, r
    assert train_run["floor"]["loss"]["max_rel"] < 1e-6
    torch_out = _load(train_run["outputs"]["torch"])
    keys = [k for k in torch_out if k.startswith("grad:")]
    bounds = S.tensor_bounds("grad", keys, S.floors(torch_out), "googlenet")
    for head in ("fc.weight", "fc.bias", "aux1.fc2.weight", "aux2.fc2.weight"):
        assert bounds[f"grad:{head}"] <= 2e-4, (head, bounds[f"grad:{head}"])


@pytest.mark.slow
def test_fp32_floor_is_measured(train_run):
    floor = train_run["floor"]
    assert floor["grad"]["max_rel"] > 0 and floor["sgd1"]["max_rel"] > 0


@pytest.mark.slow
def test_epsilon_placement_far_beyond_bounds(train_run):
    """Comparing a torch-convention RMSProp with a Keras-convention one would fail: the two land
    farther apart than any pair within one convention."""
    within = max(r.max_abs for r in train_run["rows"] if r.quantity == "rmsprop_out1")
    for impl, d in train_run["eps_placement"].items():
        assert d > 10 * within, (impl, d, within)


@pytest.mark.slow
def test_wrong_epsilon_convention_is_caught(train_run):
    """torch.optim.RMSprop against Keras's own RMSprop, as if they were the same optimizer: the
    comparison fails (this is why rmsprop_out and rmsprop_in are compared separately)."""
    from safetensors.numpy import load_file

    if not {"torch", "keras-tensorflow"} <= set(train_run["outputs"]):
        pytest.skip("needs torch and keras-tensorflow")
    t, k = (_load(train_run["outputs"][i]) for i in ("torch", "keras-tensorflow"))
    pick = lambda out, src: {"loss": out["loss"], **{"rmsprop_out1:" + key.split(":", 1)[1]: v
                                                     for key, v in out.items() if key.startswith(src + ":")}}
    from pathlib import Path

    weights = Path(train_run["outputs"]["torch"]).parent / "weights"
    w0 = load_file(str(next(weights.glob("*.neutral")) / "model.safetensors"))
    rows = S.compare_pair("torch", "keras-tensorflow", pick(t, "rmsprop_out1"), pick(k, "rmsprop_in1"), w0,
                          S.floors(t), "googlenet", H.hyper("googlenet"))
    row = next(r for r in rows if r.quantity == "rmsprop_out1")
    assert not row.ok, row


def test_kink_flips_are_excused_only_where_float64_agrees():
    from conformance.compare.steps import Row, kink_flips

    def row(q, ok, a="torch", b="flax"):
        return Row(a, b, q, 1.0, 0.3 if not ok else 1e-6, "t", 1e-4, ok)

    grad32, grad64 = row("grad", False), row("grad", True)
    res32 = {"rows": [row("loss", True), grad32, row("bn_running_stats", True)]}
    assert kink_flips(res32, {"rows": [row("loss", True), grad64]}) == [grad32]
    assert kink_flips(res32, {"rows": [row("loss", True), row("grad", False)]}) == []  # a convention: fails
    assert kink_flips(res32, {"rows": [row("loss", False), grad64]}) == []  # the pair fails in float64
    bad_loss = {"rows": [row("loss", False), grad32]}
    assert kink_flips(bad_loss, {"rows": [row("loss", True), grad64]}) == []  # float32 loss off: not a flip
    other = {"rows": [row("loss", True), row("grad", False, "flax", "keras-jax")]}
    assert kink_flips(other, {"rows": [row("loss", True), grad64]}) == []  # no float64 row for that pair
