"""The training-step conformance (conformance/training) for every model, in float64 and float32.

Float64 (``train_agreement(dtype="float64")``): every pair of the five implementations agrees on the loss,
every gradient, the BN running statistics and every optimizer update to the tight float64 bounds
of conformance.compare.tolerances, with no floor raising: in float64 no ReLU / max-pool branch flips, so
what is left is the conventions (label smoothing, aux weight, BN momentum and unbiased variance,
epsilon placement, weight-decay coupling) and float64 rounding.

Float32 (the models test_training.py does not run): the loss and the classifier-head gradients,
where fp32 is well conditioned, within the stated 1e-5 between every pair; the trunk gradients
carry the kink-flip floor (test_training_floor.py) and are reported, not asserted here.

Sizes and batches: conformance.training.hyper.SHAPE (GoogLeNet's float64 step: FLOAT64_SHAPE). Slow tier; each model runs its five workers twice.
The float64 step applies the optimizers on the models of UPDATES_CHECKED (why: there).
"""
from __future__ import annotations

import numpy as np
import pytest

from conformance.training import run as T
from conformance.compare import steps as S
from conformance.compare.tolerances import FLOOR_FACTOR, TOLERANCES
from conformance.training import hyper as H

# (architecture, checkpoint variant): every model the training step covers, bn_inception in both
# of its layouts (the "caffe" one is pretrainedmodels' bninception, BN eps 1e-5).
MODELS = [("googlenet", None), ("googlenet_paper", None), ("inception_v3", None), ("bn_inception", None),
          ("bn_inception", "caffe"), ("inception_v4", None), ("inception_resnet_v2", None)]
IDS = [a if v is None else f"{a}-{v}" for a, v in MODELS]
# The float64 step applies the optimizers on these models. An optimizer is one elementwise rule
# on every tensor (no parameter groups, masks or per-name exclusions in any implementation), so
# which tensors it sees is what a model adds, and the gradient rows check that set on every model;
# on Inception-v4 and Inception-ResNet-v2 (43M and 56M parameters) the six float64 results per
# implementation added only bytes: 16 GB written per run and ~40% of the file's CPU time.
UPDATES_CHECKED = {"googlenet", "googlenet_paper", "inception_v3", "bn_inception"}
# The float64 step checks conventions, not sizes: torchvision's GoogLeNet pools its aux heads
# adaptively, so its float64 step runs at 112 (uneven 7x7 -> 4x4 bins in the aux pools), a quarter
# of hyper.SHAPE's pixels; its native-size step is test_training.py's float32 one. Every other
# model's heads fix its size (hyper.SHAPE).
FLOAT64_SHAPE = {"googlenet": (112, H.BATCH)}


@pytest.fixture(scope="module", params=MODELS, ids=IDS)
def model(request, pool, tmp_path_factory):
    """(arch, variant, run) with run(dtype) -> conformance.training.run.train_agreement's result, once
    per model and dtype; both dtypes share the model's converted weights and batch. Module-scoped
    and parametrized, so pytest runs every test of one model before the next, and the model's
    worker outputs (gradients and, where UPDATES_CHECKED, six optimizer results per implementation:
    ~5 GB for Inception v3 in float64) are deleted before the next model starts."""
    import shutil

    from conformance.agreement.checkpoints import prepare

    arch, variant = request.param
    root = tmp_path_factory.mktemp(f"train-{arch}-{variant or 'default'}")
    state = {}

    def run(dtype):
        if "weights" not in state:
            state["weights"] = prepare(arch, root / "weights", pool, variant=variant)
        if dtype not in state:
            # float32 asserts the loss and head gradients only: no optimizer steps to pay for
            state[dtype] = T.train_agreement(arch, root, pool, dtype=dtype, files=state["weights"],
                                             optimizers=dtype == "float64" and arch in UPDATES_CHECKED,
                                             shape=FLOAT64_SHAPE.get(arch) if dtype == "float64" else None)
        return state[dtype]

    yield arch, variant, run
    shutil.rmtree(root, ignore_errors=True)


def _heads(arch, keys):
    """Gradient keys of the classifier: its input is the pooled trunk and nothing but the loss lies
    after it, so fp32 is well conditioned there."""
    from impls.spec import model_spec

    spec = model_spec(arch)
    last = spec.stages[-1][0]
    return [k for k in keys if S.block_of(k) == last]


@pytest.mark.slow
def test_float64_every_pair_agrees(model):
    arch, variant, run = model
    res = run("float64")
    assert not res["errors"], res["errors"]
    assert set(res["impls"]) == set(T.implementations())
    bad = [r for r in res["rows"] if not r.ok]
    assert not bad, "\n" + S.table({"rows": bad})
    rows = {(r.a, r.b, r.quantity): r for r in res["rows"]}
    updates = {"sgd2", "rmsprop_out2", "rmsprop_in2"} if arch in UPDATES_CHECKED else set()
    assert {q for _, _, q in rows} >= {"loss", "grad", "bn_running_stats"} | updates
    kind = {"loss": "train_loss", "grad": "grad", "bn_running_stats": "bn_running_stats"}
    for r in (r for r in res["rows"] if r.tensors):  # the tight bound itself, never a floor-raised one
        assert r.bound_rel == TOLERANCES[("float64", kind.get(r.quantity, "update"))]["rel"], r
    _print(res)


@pytest.mark.slow
def test_float64_catches_an_untranslated_bn_variance(model):
    """The BN-statistics row has teeth at the float64 bound: torch's running_var (unbiased batch
    variance) read as if it were Flax's (biased) misses by ~m/(n-1), far beyond 1e-10."""
    arch, _, run = model
    res = run("float64")
    with np.load(res["outputs"]["torch"]) as t, np.load(res["outputs"]["flax"]) as f:
        keys = [k for k in t.files if k.endswith("running_var")]
        if not keys:
            pytest.skip(f"{arch} has no BatchNorm")
        raw = max(float(np.abs(t[k] - f[k]).max() / np.abs(f[k]).max()) for k in keys)
    assert raw > 1e3 * TOLERANCES[("float64", "bn_running_stats")]["rel"], raw


@pytest.mark.slow
def test_float32_loss_and_head_gradients(model):
    """Where fp32 is well conditioned the stated 1e-5 holds between every pair, unraised."""
    arch, _, run = model
    if arch == "googlenet":
        pytest.skip("googlenet's float32 step is test_training.py's")
    res = run("float32")
    assert not res["errors"], res["errors"]
    outs = {i: np.load(path) for i, path in res["outputs"].items()}  # read tensor by tensor
    ref = outs["torch"]
    heads = _heads(arch, [k for k in ref.files if k.startswith("grad:")])
    assert heads, "no classifier gradient found"
    # 1e-5, unless the torch worker's own fp32-vs-fp64 distance says this step cannot hold it
    # (Inception-v4 at 107 px, batch 2: train-mode BN over 8 values per channel in its last
    # stage): then FLOOR_FACTOR x that floor, the rule every trunk tensor follows.
    floor = S.floors(ref)
    bound = {k: max(TOLERANCES[("float32", "grad")]["rel"], FLOOR_FACTOR * floor.get(k, (0.0, 0.0))[1])
             for k in ["loss"] + heads}
    _print(res)
    for a in outs:
        for b in outs:
            if a < b:
                for k in ["loss"] + heads:
                    x, y = outs[a][k].astype(np.float64), outs[b][k].astype(np.float64)
                    rel = float(np.abs(x - y).max() / np.abs(x).max())
                    assert rel <= bound[k], (a, b, k, rel, bound[k], floor.get(k))
    for f in outs.values():
        f.close()


def _print(res):
    """The figures for the issue note (pytest -s): per pair, the worst relative difference of each
    quantity; for float32 also the torch worker's fp32-vs-fp64 floor."""
    print(f"\n{res['architecture']} {res['dtype']}")
    for r in res["rows"]:
        if r.quantity in ("loss", "grad", "bn_running_stats", "sgd2", "rmsprop_out2", "rmsprop_in2"):
            print(f"  {r.a:>16} {r.b:<16} {r.quantity:<16} {r.max_rel:9.2e} {r.worst}")
    if res["floor"]:
        print("  floor " + " ".join(f"{q}: median {v['median_rel']:.1e} max {v['max_rel']:.1e}"
                                   for q, v in sorted(res["floor"].items())))


@pytest.mark.slow
def test_verify_train_cli_covers_an_aux_free_model(tmp_path, room):
    """``verify --train`` runs bn_inception (no aux heads: no aux term) in float32 and float64;
    torch, not asked for, joins the float32 step for its floor and so the float64 one, where its
    float32 branch flips (this model at batch 2) are told from failures."""
    import json

    from .helpers import run_cli

    out = tmp_path / "train.json"
    proc = run_cli("verify", "bn_inception", "--train", "--impls", "flax", "--json", out,
                   "--workdir", tmp_path / "work")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "float64 (tight bounds, no floor)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["ok"] and report["float64"]["ok"] and report["float64"]["impls"] == ["torch", "flax"]
    assert report["float64"]["tolerances"]["grad"]["rel"] == TOLERANCES[("float64", "grad")]["rel"]


def test_float64_optimizer_updates_cover_every_kind_of_model():
    """Aux heads (GoogLeNet, Inception v3), LRN without BN (the paper's GoogLeNet), BN-Inception in
    both BN layouts (its Caffe variant: eps 1e-5): the models the optimizers' float64 updates run on."""
    from impls.spec import model_spec

    assert UPDATES_CHECKED <= {a for a, _ in MODELS}
    assert any(model_spec(a).aux_heads for a in UPDATES_CHECKED)
    assert {v for a, v in MODELS if a in UPDATES_CHECKED} == {None, "caffe"}


def test_every_model_has_a_training_step():
    """Aux weight 0.3 for GoogLeNet (the paper), 0.4 for Inception v3 (torchvision's reference
    training script), and no aux term exactly where the architecture has no aux head."""
    from impls.spec import model_spec

    assert set(H.AUX_WEIGHT) == set(H.SHAPE) == {a for a, _ in MODELS}
    assert (H.AUX_WEIGHT["googlenet"], H.AUX_WEIGHT["googlenet_paper"], H.AUX_WEIGHT["inception_v3"]) == (0.3, 0.3, 0.4)
    for arch in H.AUX_WEIGHT:
        assert (H.AUX_WEIGHT[arch] > 0) == bool(model_spec(arch).aux_heads), arch


def test_float64_steps_get_workers_of_their_own():
    """jax reads JAX_ENABLE_X64 at import, TensorFlow TF_ENABLE_ONEDNN_OPTS: a float64 step on
    either gets a worker of its own."""
    assert T.worker_env("flax", "float64") == T.worker_env("keras-jax", "float64") == {"JAX_ENABLE_X64": "1"}
    assert T.worker_env("flax", "float32") is None and T.worker_env("torch", "float64") is None
    assert T.worker_env("keras-tensorflow", "float64") == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert T.worker_env("keras-tensorflow", "float32") is None
