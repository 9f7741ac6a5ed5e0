"""Data-parallel training steps compared with the one-device step.

The step is the training suite's (weights, a batch of BATCH split WORLD ways, loss, SGD and both
RMSProp conventions). Each engine runs data parallel and the single-device step in one worker and
compares them there (the tensors are ~0.4 GB a run):

* ``torch-ddp``: DistributedDataParallel, gloo, WORLD CPU processes
  (``conformance.frameworks.torch_nn.ddp``). BN is per device (SyncBN is GPU-only), so DDP equals
  the per-shard single-device steps averaged, compared at the stated bounds; its distance from
  the whole-batch step is reported as a contrast (expected beyond).
* ``flax`` and ``keras-jax`` (keras.distribution.DataParallel): WORLD host devices, one jit over a
  sharded batch, which keeps BN's statistics global; compared with the single-device step on the
  whole batch at the training suite's floor-raised bounds (a different reduction order is a
  different rounding), the floor measured by the torch-ddp worker's fp64 twin.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from .. import registry
from ..agreement.checkpoints import checkpoint_config
from ..compare.steps import Row
from ..frameworks.data_parallel import WORLD, xla_flags
from ..memory import ALONE
from .hyper import hyper, make_batch
from .run import input_size

# engine -> (implementation, request); the JAX engines get WORLD host devices (XLA_FLAGS at start-up)
ENGINES = {"torch-ddp": ("torch", "ddp"), "flax": ("flax", "data_parallel"), "keras-jax": ("keras-jax", "data_parallel")}


def engines():
    return [e for e, (impl, _) in ENGINES.items() if registry.available(impl)]


def run_engines(arch, workdir, pool, files, which=None, size=None, optimizers=None, needs=None):
    """Runs each engine; returns {"rows", "contrast": [Row], "info": {engine: facts}, "errors":
    {engine: message}}. ``files``: the checkpoint (``agreement.checkpoints.prepare``); ``size``:
    input size (default the model's); ``optimizers``: a subset (default all). With a JAX engine in
    ``which``, torch-ddp runs first and measures the fp32 floor (its fp64 twin) they need.
    ``needs``: {engine: bytes its worker may grow by}, for a caller that measured them at its size;
    an engine not named runs alone (a JAX engine's step grows its worker to 4.9 GB even for
    GoogLeNet: keras-jax, 224 px)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    which = [e for e in (engines() if which is None else which) if e in ENGINES]
    jax_engines = [e for e in which if e != "torch-ddp"]
    if jax_engines and "torch-ddp" not in which and registry.available("torch"):
        which = ["torch-ddp"] + which
    cfg, hp = checkpoint_config(files), hyper(arch)
    hp["optimizers"] = {k: v for k, v in hp["optimizers"].items() if optimizers is None or k in optimizers}
    x, y = make_batch(workdir, size or input_size(arch), cfg["num_classes"])
    result = {"rows": [], "contrast": [], "info": {}, "errors": {}}
    floor = {}
    for engine in which:  # torch-ddp first: its fp64 twin gives the floor the JAX engines need
        impl, op = ENGINES[engine]
        out_dir = workdir / f"dp-{engine}"
        out_dir.mkdir(parents=True, exist_ok=True)
        job = {"engine": engine, "out_dir": str(out_dir), "arch": arch, "config": cfg, "weights": files,
               "input": x, "labels": y, "hyper": hp, "measure_floor": bool(jax_engines), **floor}
        env = {"XLA_FLAGS": xla_flags()} if engine != "torch-ddp" else None
        try:
            out = pool.request(registry.get(impl).process, op, env, need=(needs or {}).get(engine, ALONE), job=job)
        except Exception as e:  # one engine's failure is reported; the others still run
            result["errors"][f"{engine} (data parallel)"] = str(e)
            continue
        if engine == "torch-ddp" and jax_engines:
            floor = {k: str(out_dir / f"{k}.npz") for k in ("floor", "fp64")}
        result["rows"] += [Row(**r) for r in out["rows"]]
        result["contrast"] += [Row(**r) for r in out["contrast"]]
        result["info"][engine] = out["info"]
    return result


def add_to_training(res, arch, workdir, pool, files, impls=None):
    """``verify --train --data-parallel``: the engines' rows joined to a train_agreement result,
    the contrast and run facts under "data_parallel"."""
    which = [e for e in engines() if impls is None or ENGINES[e][0] in impls]
    dp = run_engines(arch, workdir, pool, files, which)
    res["rows"] = res["rows"] + dp["rows"]
    res["errors"] = {**res["errors"], **dp["errors"]}
    res["data_parallel"] = {"world_size": WORLD, "info": dp["info"], "contrast": [asdict(r) for r in dp["contrast"]]}
    return res


def contrast_table(res):
    """The per-device-BN contrast: what DDP departs from (not a pass/fail row)."""
    rows = res.get("data_parallel", {}).get("contrast", [])
    if not rows:
        return ""
    lines = ["\nper-device BN (torch DDP rank 0 vs the single-device step on the whole batch; "
             "expected to differ): quantity, max relative diff"]
    lines += [f"  {r['quantity']:<18} {r['max_rel']:9.2e}" for r in rows]
    return "\n".join(lines)
