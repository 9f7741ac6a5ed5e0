"""Data-parallel training steps compared with the one-device step (conformance/dp_worker.py).

The step is conformance.training's (weights, a batch of training.BATCH split WORLD ways, loss,
SGD and both RMSProp conventions). Each engine runs data parallel and the single-device step in
one worker process and compares them there:

* ``torch-ddp``: DistributedDataParallel, gloo, WORLD CPU processes. BN is per device (SyncBN is
  GPU-only), so DDP equals the per-shard single-device steps averaged, compared at the stated
  bounds; its distance from the whole-batch step is reported as a contrast (expected beyond).
* ``flax`` and ``keras-jax`` (keras.distribution.DataParallel): WORLD host devices, one jit over a
  sharded batch, which keeps BN's statistics global; compared with the single-device step on the
  whole batch at the training suite's floor-raised bounds (a different reduction order is a
  different rounding), the floor measured by the torch-ddp worker's fp64 twin (or given).
"""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .dp_worker import ENGINES, WORLD, _xla_flags
from .matrix import _run, available
from .training import Row, _input_size, hyper, make_batch


def engines():
    return [e for e, impl in ENGINES.items() if available(impl)]


def _config(weights, cfg):
    if cfg is not None:
        return cfg
    from weights_bridge.neutral import read_config

    return read_config(Path(weights["safetensors"]))


def run_engines(arch, workdir, weights, which=None, cfg=None, size=None, optimizers=None, jobs=2):
    """Runs each engine's worker; returns {"rows", "contrast": [Row], "info": {engine: facts},
    "errors": {engine: message}}. ``weights``: prepare_weights' files (torch-ddp needs only
    "torch" when ``cfg`` is given); ``size``: input size (default the model's); ``optimizers``: a
    subset of training.OPTIMIZERS (default all). With a JAX engine
    in ``which``, torch-ddp runs first and measures the fp32 floor (its fp64 twin) they need."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    which = [e for e in (engines() if which is None else which) if e in ENGINES]
    cfg = _config(weights, cfg)
    x, y = make_batch(workdir, size or _input_size(arch), cfg["num_classes"])

    jax_engines = [e for e in which if e != "torch-ddp"]
    hp = hyper(arch)
    hp["optimizers"] = {k: v for k, v in hp["optimizers"].items() if optimizers is None or k in optimizers}
    if jax_engines and "torch-ddp" not in which and available("torch"):
        which = ["torch-ddp"] + which
    floor = {}

    def one(engine):
        out_dir = workdir / f"dp-{engine}"
        out_dir.mkdir(parents=True, exist_ok=True)
        job = {"engine": engine, "impl": ENGINES[engine], "out_dir": str(out_dir), "arch": arch, "config": cfg,
               "weights": weights, "input": x, "labels": y, "hyper": hp,
               "measure_floor": bool(jax_engines), **floor}
        (out_dir / "job.json").write_text(json.dumps(job, indent=1))
        try:
            _run([sys.executable, "-m", "conformance.dp_worker", str(out_dir / "job.json")],
                 env={"XLA_FLAGS": _xla_flags()}, what=f"data-parallel worker {engine}")
        except RuntimeError as e:
            return engine, e
        return engine, json.loads((out_dir / "dp.json").read_text())

    done = {}
    if "torch-ddp" in which:  # first: its fp64 twin gives the floor the JAX engines need
        done.update([one("torch-ddp")])
        if jax_engines and not isinstance(done["torch-ddp"], Exception):
            floor = {k: str(workdir / "dp-torch-ddp" / f"{k}.npz") for k in ("floor", "fp64")}
    with ThreadPoolExecutor(jobs) as pool:
        done.update(pool.map(one, [e for e in which if e not in done]))
    result = {"rows": [], "contrast": [], "info": {}, "errors": {}}
    for engine, out in done.items():
        if isinstance(out, Exception):
            result["errors"][f"{engine} (data parallel)"] = str(out)
            continue
        result["rows"] += [Row(**r) for r in out["rows"]]
        result["contrast"] += [Row(**r) for r in out["contrast"]]
        result["info"][engine] = out["info"]
    return result


def add_to_training(res, arch, workdir, weights, impls=None):
    """``verify --train --data-parallel``: the engines' rows joined to a train_agreement result,
    the contrast and run facts under "data_parallel"."""
    from dataclasses import asdict

    which = [e for e in engines() if impls is None or ENGINES[e] in impls]
    dp = run_engines(arch, workdir, weights, which)
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
