"""Data-parallel training-step worker: ``python -m conformance.dp_worker JOB.json``.

Runs conformance.training's step (same weights, batch, loss, optimizers) data parallel on one
engine and the single-device step it must equal in the same process, compares them there (the
tensors are ~0.4 GB per run) and writes ``<out_dir>/dp.json``: rows (conformance.training.Row),
contrast rows (informative, expected beyond tolerance) and run facts.

``torch-ddp``  torch.nn.parallel.DistributedDataParallel, gloo backend, WORLD CPU processes
               (torch.multiprocessing.spawn, TCP rendezvous on a free localhost port), one
               thread each. torch.nn.SyncBatchNorm refuses CPU tensors, so BN normalises each
               rank's own shard: the expectation is the per-shard single-device steps run here
               (same thread count), gradients averaged as DDP does, the optimizers applied to
               that mean, and rank r's running statistics = shard r's (DDP's broadcast_buffers
               copies rank 0's buffers at the next forward, not after this one). Contrast:
               the single-device step on the whole batch (per-device BN departs from it). With
               job["measure_floor"] that step is rerun in float64 (``fp64.npz``) and its fp32
               floor written (``floor.npz``), for the JAX engines' bounds.
``flax``       Flax NNX + optax on WORLD host devices (XLA_FLAGS
               --xla_force_host_platform_device_count, set before jax is imported): model state
               replicated, batch split over a 1-D mesh, one jit. Under jit a sharded batch does
               not change the program's meaning: BN's batch mean is over the global batch (XLA
               inserts the all-reduce), i.e. synchronised. Expectation: the single-device step.
``keras-jax``  Keras 3 (jax backend) under keras.distribution.DataParallel: variables replicated,
               batch split by the distribution's data layout, the trainer's stateless_call jit
               (conformance.train_worker.run_keras). Synchronised BN as for flax.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time

import numpy as np

WORLD = 2
ENGINES = {"torch-ddp": "torch", "flax": "flax", "keras-jax": "keras-jax"}  # engine -> implementation


def _xla_flags():
    """XLA_FLAGS with WORLD host devices; only effective before jax is first imported."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        flags = f"{flags} --xla_force_host_platform_device_count={WORLD}".strip()
    return flags


def _compare(a, b, oa, ob, w0, floor, arch):
    """conformance.training.compare_pair; a and b are named outside TORCH_CONVENTION, so BN
    statistics are compared as recorded (both sides of a pair use one framework's convention)."""
    from .training import compare_pair

    return compare_pair(a, b, oa, ob, w0, floor, arch)


# ----------------------------------------------------------------------------------- torch
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torch_model(job):
    import torch

    from impls.torch_nn import MODELS

    from .train_worker import _model_kwargs

    model = MODELS[job["arch"]](**_model_kwargs(job))
    model.load_state_dict(torch.load(job["weights"]["torch"], map_location="cpu", weights_only=True), strict=True)
    return model


def _shard(a, rank):
    n = len(a) // WORLD
    return a[rank * n:(rank + 1) * n]


def _ddp_rank(rank, job, port):
    """One DDP process: its shard through DistributedDataParallel, results to rank<r>.npz."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from .train_worker import _torch_procedure

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        x, y = np.load(job["input"]), np.load(job["labels"])
        ddp = DDP(_torch_model(job))  # broadcast_buffers=True (default): rank 0's buffers at each forward
        res = _torch_procedure(ddp, torch.from_numpy(_shard(x, rank)), torch.from_numpy(_shard(y, rank)).long(),
                               job["hyper"])
        loss = torch.from_numpy(res["loss"]).reshape(1)
        dist.all_reduce(loss)  # the global loss: mean of the shard means (equal shards)
        res["loss"] = (loss / WORLD).reshape(()).numpy()
        try:  # why BN stays per device here (both ranks call it: were it supported, it syncs)
            torch.nn.SyncBatchNorm(1).train()(torch.zeros(2, 1, 1, 1))
            syncbn = "ran on CPU"
        except ValueError as e:
            syncbn = f"refused: {e}"
        res["syncbn"] = np.array(syncbn)
        res = {k.replace(":module.", ":", 1): v for k, v in res.items()}  # DDP's prefix off: canonical names
        np.savez(os.path.join(job["out_dir"], f"rank{rank}.npz"), **res)
    finally:
        dist.destroy_process_group()


def run_torch_ddp(job, x, y, hp, arch):
    import copy

    import torch
    import torch.multiprocessing as mp

    from .train_worker import _torch_procedure, _torch_steps
    from .training import floors

    t0, threads = time.perf_counter(), torch.get_num_threads()
    mp.spawn(_ddp_rank, args=(job, _free_port()), nprocs=WORLD, join=True)
    info = {"engine": "torch-ddp", "backend": "gloo", "world_size": WORLD, "seconds_ddp": time.perf_counter() - t0,
            "bn": "per-device (torch.nn.SyncBatchNorm refuses CPU tensors)"}
    ranks = []
    for r in range(WORLD):
        path = os.path.join(job["out_dir"], f"rank{r}.npz")
        ranks.append(dict(np.load(path)))
        os.remove(path)  # ~0.4 GB each
    info["syncbn_cpu"] = str(ranks[0].pop("syncbn"))
    ranks[1].pop("syncbn")

    # The expectation: each shard's single-device step (one thread, as each rank), gradients averaged.
    torch.set_num_threads(1)
    model = _torch_model(job)
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    no_opt = {**hp, "optimizers": {}}  # the optimizers run once, on the averaged gradient
    shards = [_torch_procedure(copy.deepcopy(model), torch.from_numpy(_shard(x, r)),
                               torch.from_numpy(_shard(y, r)).long(), no_opt) for r in range(WORLD)]
    expect = {"loss": np.float32(sum(s["loss"] for s in shards) / WORLD)}
    grads = {k[5:]: torch.from_numpy(sum(s[k] for s in shards) / WORLD) for k in shards[0] if k.startswith("grad:")}
    expect.update({f"grad:{k}": g.numpy() for k, g in grads.items()})
    params = dict(model.named_parameters())
    torch.set_num_threads(threads)  # elementwise from here on: the thread count changes no result
    expect.update({k: v.numpy() for k, v in _torch_steps(params, w0, grads, hp).items()})
    info["seconds_expectation"] = time.perf_counter() - t0 - info["seconds_ddp"]

    w0np = {k: v.numpy() for k, v in w0.items()}
    rows = []
    for r, out in enumerate(ranks):
        exp_r = {**expect, **{k: v for k, v in shards[r].items() if k.startswith("stat:")}}
        rows += _compare(f"ddp-rank{r}", "torch-per-shard", out, exp_r, w0np, {}, arch)

    # The single-device step on the whole batch: what per-device BN departs from; with
    # job["measure_floor"] also its float64 twin, the reference every engine's fp32 floor is
    # measured from.
    model.load_state_dict(w0)  # _torch_steps left the expectation's last update in it
    floor, measure = {}, job.get("measure_floor")
    single = _torch_procedure(copy.deepcopy(model), torch.from_numpy(x), torch.from_numpy(y).long(),
                              hp if measure else no_opt)
    if measure:
        ref = _torch_procedure(model.double(), torch.from_numpy(x).double(), torch.from_numpy(y).long(), hp)
        # float32-rounded: 6e-8 relative, far below every bound it raises (those start at 1e-5)
        np.savez(os.path.join(job["out_dir"], "fp64.npz"), **{k: v.astype(np.float32) for k, v in ref.items()})
        entries = _floor_entries(single, ref, w0np)
        np.savez(os.path.join(job["out_dir"], "floor.npz"), **entries)
        floor = floors(entries)
    contrast = _compare("ddp-rank0", "torch-1dev", {k: v for k, v in ranks[0].items() if k in single}, single,
                        w0np, floor, arch)
    info["rank_weights_identical"] = all(
        np.array_equal(ranks[0][k], ranks[1][k]) for k in ranks[0] if not k.startswith("stat:"))
    info["contrast_grad_median_rel"] = _median_rel(ranks[0], single, "grad:")
    info["seconds"] = time.perf_counter() - t0
    return rows, contrast, info


def _floor_entries(out, ref, w0):
    """conformance.train_worker's ``floor:`` entries ([max|fp32 - fp64|, max|fp64|, max|fp64 - w0|])
    for every key but the BN statistics (compared at the stated bound, and in the JAX engines in
    the biased-variance convention)."""
    res = {}
    for k, r in ref.items():
        if k.startswith("stat:") or k not in out:
            continue
        r = r.astype(np.float64)
        base = w0.get(k.split(":", 1)[1]) if ":" in k and not k.startswith("grad:") else None
        res[f"floor:{k}"] = np.array([np.abs(out[k].astype(np.float64) - r).max(), np.abs(r).max(),
                                      np.abs(r - base).max() if base is not None else np.abs(r).max()])
    return res


def _median_rel(a, b, prefix):
    rel = [float(np.abs(a[k].astype(np.float64) - b[k]).max() / (np.abs(b[k]).max() or 1.0))
           for k in b if k.startswith(prefix)]
    return float(np.median(rel))


# ------------------------------------------------------------------------------ jax engines
def _mesh():
    import jax
    from jax.sharding import Mesh

    if jax.device_count() < WORLD:
        raise RuntimeError(f"data-parallel worker sees {jax.device_count()} jax devices, needs {WORLD}: "
                           f"XLA_FLAGS={os.environ.get('XLA_FLAGS')!r} must be set before jax is imported")
    return Mesh(np.array(jax.devices()[:WORLD]), ("data",))


def _floor(job, single, w0):
    """Per key, the larger of torch's fp32 floor and this engine's own (its single-device step
    against torch's fp64 twin): measured, one fp32 implementation can sit 18x farther from fp64
    than torch on an ill-conditioned trunk gradient (docs/training.md, "Data parallel")."""
    from .training import floors

    if not job.get("floor"):  # no torch fp64 twin: the stated bounds
        return {}
    torch_floor = floors(dict(np.load(job["floor"])))
    with np.load(job["fp64"]) as ref:
        own = floors(_floor_entries(single, {k: ref[k] for k in ref.files}, w0))
    return {k: max(torch_floor.get(k, (0.0, 0.0)), own.get(k, (0.0, 0.0)), key=lambda f: f[1])
            for k in torch_floor.keys() | own.keys()}


def run_flax_dp(job, x, y, hp, arch):
    from .train_worker import _initial_params, run_flax

    t0 = time.perf_counter()
    mesh = _mesh()
    single, _ = run_flax(job, x, y, hp)
    t1 = time.perf_counter()
    dp, info = run_flax(job, x, y, hp, mesh=mesh)
    info.update(engine="flax", world_size=WORLD, bn="synchronised (global batch statistics under jit)",
                seconds_single=t1 - t0, seconds_dp=time.perf_counter() - t1)
    w0 = _initial_params(job)
    rows = _compare(f"flax-{WORLD}dev", "flax", dp, single, w0, _floor(job, single, w0), arch)
    return rows, [], info


def run_keras_dp(job, x, y, hp, arch):
    import keras

    from .train_worker import _initial_params, run_keras

    t0 = time.perf_counter()
    mesh = _mesh()
    single, _ = run_keras(job, x, y, hp, "jax")
    t1 = time.perf_counter()
    dist = keras.distribution.DataParallel(devices=list(mesh.devices.flat))
    keras.distribution.set_distribution(dist)
    try:
        spread = []

        def place(a):
            a = keras.distribution.distribute_tensor(a, dist.get_data_layout(a.shape))
            spread.append(len(a.sharding.device_set))
            return a

        dp, info = run_keras(job, x, y, hp, "jax", place=place)
        info["input_devices"] = min(spread)
    finally:
        keras.distribution.set_distribution(None)
    info.update(engine="keras-jax", world_size=WORLD, distribution="keras.distribution.DataParallel",
                bn="synchronised (global batch statistics under jit)", seconds_single=t1 - t0,
                seconds_dp=time.perf_counter() - t1)
    w0 = _initial_params(job)
    rows = _compare(f"keras-jax-{WORLD}dev", "keras-jax", dp, single, w0, _floor(job, single, w0), arch)
    return rows, [], info


def main(job_path):
    from dataclasses import asdict

    with open(job_path) as f:
        job = json.load(f)
    engine, hp, arch = job["engine"], job["hyper"], job["arch"]
    x, y = np.load(job["input"]), np.load(job["labels"])
    if len(x) % WORLD:
        raise ValueError(f"{job['input']}: batch of {len(x)} does not split over {WORLD} devices")
    run = {"torch-ddp": run_torch_ddp, "flax": run_flax_dp, "keras-jax": run_keras_dp}[engine]
    rows, contrast, info = run(job, x, y, hp, arch)
    with open(os.path.join(job["out_dir"], "dp.json"), "w") as f:
        json.dump({"engine": engine, "rows": [asdict(r) for r in rows],
                   "contrast": [asdict(r) for r in contrast], "info": info}, f, indent=1, default=str)


if __name__ == "__main__":
    os.environ["XLA_FLAGS"] = _xla_flags()  # before anything imports jax
    from conformance.worker import run_job

    run_job(main, sys.argv[1])
