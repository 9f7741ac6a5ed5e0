"""Running the training step in every implementation's worker and comparing every pair, tensor
by tensor, from the workers' output files (two tensors in memory at a time, whatever the model)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from weights_bridge import neutral

from .. import registry
from ..agreement.checkpoints import checkpoint_config, prepare
from ..compare.steps import compare_all, eps_placement, floors
from ..compare.tolerances import TOLERANCES
from ..memory import parameter_count
from .hyper import BATCH, PROVENANCE, SHAPE, hyper, make_batch

X64 = {"JAX_ENABLE_X64": "1"}  # jax reads it at import: float64 steps on jax get a worker of their own
# TensorFlow's oneDNN kernels have no float64; with them on, an Inception v3 float64 step on
# Keras-on-TensorFlow took 48-56 s and left 2.2 GB in the worker after its release (TF's oneDNN
# primitive caches, which nothing clears), against 30 s and 0.5 GB with TF's own kernels (read
# at import, so a worker of its own). Float32 keeps oneDNN: twice as fast there (19 s vs 44 s).
TF_OWN_KERNELS = {"TF_ENABLE_ONEDNN_OPTS": "0"}
# What a worker grows by while serving a training step, in multiples of the model's parameter
# bytes: with the optimizers (their buffers and six results) 15, without 9. Measured on
# Inception-ResNet-v2 (55.8M parameters, 107 px, batch 2): float64 with the optimizers, up to
# 6.0 GB (keras-jax; 13.5x); float32 without, 2.0 GB (8.9x). The torch worker's float32 step
# also runs its float64 twin (the floor) after it, in the memory the first freed: 2.7 GB for
# both (measured alone), against 3.7x of float64 bytes for a float64 step alone.
# The pool runs steps together only while these fit.
STEP_MEMORY_FACTOR = {True: 15, False: 9}
# A small model's step is mostly activations: GoogLeNet's float64 step (batch 4 at 224) grew the
# keras-jax worker by 1.6 GiB, twice what its parameters predict (measured, slow tier, where two
# such steps beside idle workers took the run to 8.16 GiB). No step needs less than this.
STEP_MEMORY_FLOOR = 2 * 10**9


def implementations():
    return [i for i in registry.OURS if registry.available(i)]


def worker_env(impl, dtype):
    """The worker environment a step in ``dtype`` needs (float64 on jax: ``JAX_ENABLE_X64``; on
    TensorFlow: its own kernels, not oneDNN's)."""
    if dtype != "float64":
        return None
    return {"flax": X64, "keras-jax": X64, "keras-tensorflow": TF_OWN_KERNELS}.get(registry.get(impl).process)


def step_memory(impl, parameters: int, dtype: str, optimizers: bool) -> int:
    """Bytes a worker may grow by serving one training step of a model with ``parameters``."""
    itemsize = 8 if impl == "torch" else np.dtype(dtype).itemsize  # torch: its float64 twin, the larger
    return max(STEP_MEMORY_FACTOR[bool(optimizers)] * itemsize * parameters, STEP_MEMORY_FLOOR)


def input_size(arch):
    from impls.spec import model_spec

    return model_spec(arch).config.input_size[-1]


def train_agreement(arch, workdir, pool, impls=None, seed=0, files=None, dtype="float32", variant=None,
                    optimizers=True, shape=None):
    """Runs every implementation's training step and compares all pairs. Returns a dict with
    rows (list of Row), errors ({impl: message}), floors, eps placement effect, precision and the
    output files. ``dtype="float64"``: every worker in float64, compared at the tight float64
    bounds with no floor: the conventions alone. ``optimizers=False``: loss, gradients and BN
    statistics only (the optimizers' updates are most of a big model's step). ``shape``: (input
    size, batch), default ``hyper.SHAPE``'s."""
    workdir = Path(workdir)
    files = files or prepare(arch, workdir / "weights", pool, seed=seed, variant=variant)
    impls = list(impls or implementations())
    if dtype == "float32" and "torch" not in impls and registry.available("torch"):
        impls = ["torch"] + impls  # its fp64 twin measures the floor every bound uses
    cfg, hp = checkpoint_config(files), hyper(arch, optimizers)
    size, batch = shape or SHAPE.get(arch, (input_size(arch), BATCH))
    x, y = make_batch(workdir, size, cfg["num_classes"], batch=batch)
    outs = {i: str(workdir / f"train-{dtype}-{i}.npz") for i in impls}
    calls = [(registry.get(i).process, "train", dict(impl=i, arch=arch, weights={"neutral": files["neutral"]},
                                                    config=cfg, input=x, labels=y, hyper=hp, dtype=dtype, out=outs[i]),
              worker_env(i, dtype)) for i in impls]
    parameters = parameter_count(files["neutral"])
    need = [step_memory(i, parameters, dtype, optimizers) for i in impls]
    replies = dict(zip(impls, pool.map(calls, need=need)))
    errors = {i: str(r) for i, r in replies.items() if isinstance(r, Exception)}
    opened = {i: np.load(outs[i]) for i in impls if i not in errors}
    try:
        w0 = neutral.read(files["neutral"]).tensors
        floor = floors(opened["torch"]) if dtype == "float32" and "torch" in opened else {}
        unbiased = {i: registry.get(i).bn_variance == registry.UNBIASED for i in opened}
        rows = compare_all(opened, w0, floor, arch, hp, dtype, unbiased)
        eps = {i: eps_placement(o) for i, o in opened.items()}
    finally:
        for f in opened.values():
            f.close()
    summary = {}
    for q in {k.split(":", 1)[0] if ":" in k else k for k in floor}:
        vals = [v[1] for k, v in floor.items() if (k.split(":", 1)[0] if ":" in k else k) == q]
        summary[q] = {"max_rel": max(vals), "median_rel": float(np.median(vals))}
    return {"architecture": arch, "dtype": dtype, "impls": [i for i in impls if i not in errors], "rows": rows,
            "errors": errors, "floor": summary, "eps_placement": eps,
            "precision": {i: r["precision"] for i, r in replies.items() if i not in errors},
            "times": {i: {**r["times"], "request": r["seconds"]} for i, r in replies.items() if i not in errors},
            "provenance": {i: PROVENANCE[i] for i in impls if i not in errors},
            "outputs": {i: outs[i] for i in impls if i not in errors}}


def to_json(result):
    out = dict(result)
    out["rows"] = [asdict(r) for r in result["rows"]]
    out["tolerances"] = {k: v for (d, k), v in TOLERANCES.items() if d == result.get("dtype", "float32")
                         and k in ("train_loss", "grad", "update", "bn_running_stats")}
    out["ok"] = not result["errors"] and all(r.ok for r in result["rows"])
    return out
