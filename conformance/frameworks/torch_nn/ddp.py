"""The training step under torch DistributedDataParallel (gloo backend, WORLD CPU processes,
``torch.multiprocessing.spawn``, TCP rendezvous on a free localhost port, one thread each), and
the single-device steps it must equal, compared here (the tensors are ~0.4 GB a run).

torch.nn.SyncBatchNorm refuses CPU tensors, so BN normalises each rank's own shard: the
expectation is the per-shard single-device steps (same thread count), gradients averaged as DDP
does, the optimizers applied to that mean, and rank r's running statistics = shard r's (DDP's
broadcast_buffers copies rank 0's buffers at the next forward, not after this one). Contrast: the
single-device step on the whole batch (per-device BN departs from it). With ``measure_floor`` that
step is rerun in float64 and its fp32 floor written (``floor.npz``, ``fp64.npz``), for the JAX
engines' bounds.
"""
from __future__ import annotations

import copy
import os
import socket
import time
from dataclasses import asdict

import numpy as np

from ...compare.steps import compare_pair, floor_entries, floors
from ..base import merged
from ..data_parallel import WORLD, median_rel, shard
from .model import load_ours
from .train import procedure, steps


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, job, port):
    """One DDP process: its shard through DistributedDataParallel, results to rank<r>.npz."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        x, y = np.load(job["input"]), np.load(job["labels"])
        ddp = DDP(load_ours(job["weights"]["neutral"]))  # broadcast_buffers=True: rank 0's buffers at each forward
        res = merged(procedure(ddp, torch.from_numpy(shard(x, rank)), torch.from_numpy(shard(y, rank)).long(),
                               job["hyper"]))
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


def run_ddp(job):
    """{"rows", "contrast", "info"} for ``job`` (conformance.training.data_parallel)."""
    import torch
    import torch.multiprocessing as mp

    arch, hp = job["arch"], job["hyper"]
    x, y = np.load(job["input"]), np.load(job["labels"])
    t0, threads = time.perf_counter(), torch.get_num_threads()
    mp.spawn(_rank, args=(job, _free_port()), nprocs=WORLD, join=True)
    info = {"engine": "torch-ddp", "backend": "gloo", "world_size": WORLD, "seconds_ddp": time.perf_counter() - t0,
            "bn": "per-device (torch.nn.SyncBatchNorm refuses CPU tensors)"}
    ranks = []
    for r in range(WORLD):
        path = os.path.join(job["out_dir"], f"rank{r}.npz")
        with np.load(path) as f:
            ranks.append({k: f[k] for k in f.files})
        os.remove(path)  # ~0.4 GB each
    info["syncbn_cpu"] = str(ranks[0].pop("syncbn"))
    ranks[1].pop("syncbn")

    # The expectation: each shard's single-device step (one thread, as each rank), gradients averaged.
    torch.set_num_threads(1)
    model = load_ours(job["weights"]["neutral"])
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    no_opt = {**hp, "optimizers": {}}  # the optimizers run once, on the averaged gradient
    shards = [merged(procedure(copy.deepcopy(model), torch.from_numpy(shard(x, r)),
                               torch.from_numpy(shard(y, r)).long(), no_opt)) for r in range(WORLD)]
    expect = {"loss": np.float32(sum(s["loss"] for s in shards) / WORLD)}
    grads = {k[5:]: torch.from_numpy(sum(s[k] for s in shards) / WORLD) for k in shards[0] if k.startswith("grad:")}
    expect.update({f"grad:{k}": g.numpy() for k, g in grads.items()})
    params = dict(model.named_parameters())
    torch.set_num_threads(threads)  # elementwise from here on: the thread count changes no result
    expect.update({k: v.numpy() for k, v in merged(steps(params, w0, grads, hp)).items()})
    info["seconds_expectation"] = time.perf_counter() - t0 - info["seconds_ddp"]

    w0np = {k: v.numpy() for k, v in w0.items()}
    rows = []
    for r, out in enumerate(ranks):  # one framework's convention on both sides: statistics as recorded
        exp_r = {**expect, **{k: v for k, v in shards[r].items() if k.startswith("stat:")}}
        rows += compare_pair(f"ddp-rank{r}", "torch-per-shard", out, exp_r, w0np, {}, arch, hp)

    # The single-device step on the whole batch: what per-device BN departs from; with
    # ``measure_floor`` also its float64 twin, the reference every engine's fp32 floor comes from.
    model.load_state_dict(w0)  # steps() left the expectation's last update in it
    floor, measure = {}, job.get("measure_floor")
    single = merged(procedure(copy.deepcopy(model), torch.from_numpy(x), torch.from_numpy(y).long(),
                              hp if measure else no_opt))
    if measure:
        ref = merged(procedure(model.double(), torch.from_numpy(x).double(), torch.from_numpy(y).long(), hp))
        # float32-rounded: 6e-8 relative, far below every bound it raises (those start at 1e-5)
        np.savez(os.path.join(job["out_dir"], "fp64.npz"), **{k: v.astype(np.float32) for k, v in ref.items()})
        entries = floor_entries(single, ref, w0np, skip=("stat:",))
        np.savez(os.path.join(job["out_dir"], "floor.npz"), **entries)
        floor = floors(entries)
    contrast = compare_pair("ddp-rank0", "torch-1dev", {k: v for k, v in ranks[0].items() if k in single}, single,
                            w0np, floor, arch, hp)
    info["rank_weights_identical"] = all(
        np.array_equal(ranks[0][k], ranks[1][k]) for k in ranks[0] if not k.startswith("stat:"))
    info["contrast_grad_median_rel"] = median_rel(ranks[0], single, "grad:")
    info["seconds"] = time.perf_counter() - t0
    return {"rows": [asdict(r) for r in rows], "contrast": [asdict(r) for r in contrast], "info": info}
