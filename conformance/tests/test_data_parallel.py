"""Data-parallel training steps against one device (conformance/training/data_parallel.py): GoogLeNet, the
training suite's step (label-smoothed CE + 0.3 x aux, SGD, RMSProp in both epsilon conventions),
a batch of 4 split 2 + 2.

* torch DDP (gloo, 2 CPU processes): BN is per device, so the expected result is the two
  single-device half-batch steps with their gradients averaged (what DDP's all-reduce computes)
  and rank r's running statistics from half r. Exact arithmetic, compared at the stated bounds.
  Default tier at 64x64 with SGD only (the optimizer is each replica's local arithmetic on the
  all-reduced gradient); the 112x112 run with every optimizer is in the slow tier.
* JAX (Flax NNX + optax) and Keras 3 DataParallel (jax backend), 2 host devices, one jit over a
  sharded batch: BN statistics stay global, so the expected result is the single-device step on
  the whole batch, compared at the training suite's floor-raised bounds. Slow tier: JAX compiles
  the single-device and the sharded step (minutes on two cores without the compilation cache).
"""
from __future__ import annotations

import json

import pytest

from conformance.training import data_parallel as DP
from conformance.training.hyper import OPTIMIZERS, STEPS

from .helpers import run_cli

SMALL = 64  # GoogLeNet's aux heads pool adaptively, so the step runs at any size >= 64
# What torch-ddp reaches at SMALL with SGD (peak PSS, alone, 2026-12-04): its worker 1.3 GiB and two
# 0.75 GiB ranks. Declared, so the other test process's requests run beside it.
DDP_SMALL_MEMORY = 3 * 2**30
# The slow tier's size: splitting the batch is what is tested, not the size (GoogLeNet's
# native-size step is test_training.py's); a quarter of 224's pixels.
LARGE = 112
# What a JAX engine's worker reaches at LARGE (peak PSS, alone, 2026-12-04): flax 3.0 GiB, keras-jax
# 2.7 GiB. Declared, so the other test process's requests run beside it; torch-ddp (its worker
# 3.4 GiB and two 1.1 GiB ranks) still runs alone.
JAX_STEP_MEMORY = int(3.25 * 2**30)
QUANTITIES = {"loss", "grad", "bn_running_stats"} | {f"{o}{k}" for o in OPTIMIZERS for k in range(1, STEPS + 1)}
SMALL_QUANTITIES = {"loss", "grad", "bn_running_stats", "sgd1", "sgd2"}


def _rows(result, a):
    return [r for r in result["rows"] if r.a == a]


@pytest.fixture(scope="module")
def ddp_small(pool, googlenet_pth, tmp_path_factory):
    import weights_bridge as wb

    if "torch-ddp" not in DP.engines():
        pytest.skip("needs torch")
    workdir = tmp_path_factory.mktemp("dp-small")
    wb.convert(googlenet_pth, workdir / "googlenet.neutral", "googlenet")
    return DP.run_engines("googlenet", workdir, pool, {"neutral": str(workdir / "googlenet.neutral")}, ["torch-ddp"],
                          size=SMALL, optimizers=["sgd"], needs={"torch-ddp": DDP_SMALL_MEMORY})


def test_ddp_equals_the_averaged_half_batch_steps(ddp_small):
    """DDP's gradients, every optimizer's updated weights and each rank's BN statistics equal
    the single-device steps on each half, gradients averaged, within the stated 1e-5 (no floor:
    the same kernels on the same half-batches, and averaging two values is exact)."""
    assert not ddp_small["errors"], ddp_small["errors"]
    for rank in ("ddp-rank0", "ddp-rank1"):
        rows = _rows(ddp_small, rank)
        assert {r.quantity for r in rows} == SMALL_QUANTITIES
        bad = [r for r in rows if not r.ok or r.bound_rel > 1e-5]
        assert not bad, bad
    assert ddp_small["info"]["torch-ddp"]["rank_weights_identical"]


def test_ddp_batch_norm_is_per_device(ddp_small):
    """Why DDP is compared with the half-batch steps: SyncBatchNorm refuses CPU tensors, each
    rank normalises its own 2 images, and the step is far from the whole-batch one."""
    info = ddp_small["info"]["torch-ddp"]
    assert info["syncbn_cpu"].startswith("refused"), info["syncbn_cpu"]
    contrast = {r.quantity: r for r in ddp_small["contrast"]}
    assert not contrast["grad"].ok and contrast["grad"].max_rel > 0.1
    assert not contrast["bn_running_stats"].ok
    assert info["contrast_grad_median_rel"] > 1e-2


@pytest.fixture(scope="module")
def dp_run(pool, tmp_path_factory):
    from conformance.agreement.checkpoints import prepare

    workdir = tmp_path_factory.mktemp("dp-googlenet")
    return DP.run_engines("googlenet", workdir, pool, prepare("googlenet", workdir / "weights", pool), size=LARGE,
                          needs={"flax": JAX_STEP_MEMORY, "keras-jax": JAX_STEP_MEMORY})


@pytest.mark.slow
def test_every_engine_ran(dp_run):
    assert not dp_run["errors"], dp_run["errors"]
    assert set(dp_run["info"]) == set(DP.engines())
    for engine in set(dp_run["info"]) - {"torch-ddp"}:
        assert dp_run["info"][engine]["input_devices"] == 2, engine  # the batch really was split


@pytest.mark.slow
def test_data_parallel_equals_one_device(dp_run):
    """Every engine, every quantity within its bound (LARGE, the training suite's batch)."""
    bad = [r for r in dp_run["rows"] if not r.ok]
    assert not bad, bad
    for a in {r.a for r in dp_run["rows"]}:
        assert {r.quantity for r in _rows(dp_run, a)} == QUANTITIES, a


@pytest.mark.slow
def test_jax_batch_norm_is_synchronised(dp_run):
    """Under jit a sharded batch keeps BN's statistics global: the loss and the running
    statistics agree with the whole-batch step at the stated 1e-5, where per-device BN (DDP's
    contrast) moves the statistics by > 1e-3."""
    jax_rows = [r for r in dp_run["rows"] if not r.a.startswith("ddp")]
    assert jax_rows
    for r in jax_rows:
        if r.quantity in ("loss", "bn_running_stats"):
            assert r.max_rel <= 1e-5, r
    contrast = {r.quantity: r for r in dp_run["contrast"]}
    assert contrast["bn_running_stats"].max_rel > 1e-3


@pytest.mark.slow
def test_verify_train_data_parallel_cli(tmp_path, room):
    """``verify --train --data-parallel`` adds the DDP rows to the training matrix and its JSON."""
    out = tmp_path / "train.json"
    proc = run_cli("verify", "googlenet", "--train", "--data-parallel", "--impls", "torch", "--json", out,
                   "--workdir", tmp_path / "work")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ddp-rank0 vs torch-per-shard" in proc.stdout and "per-device BN" in proc.stdout
    report = json.loads(out.read_text())
    assert report["ok"] and {"ddp-rank0", "ddp-rank1"} <= {r["a"] for r in report["rows"]}
    assert report["data_parallel"]["info"]["torch-ddp"]["world_size"] == 2


def test_data_parallel_needs_train():
    proc = run_cli("verify", "googlenet", "--data-parallel")
    assert proc.returncode == 2 and "--train" in proc.stderr
