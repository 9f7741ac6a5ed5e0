"""What the data-parallel engines share (``conformance.training.data_parallel``): the world size,
the batch split, and the bounds they are held to."""
from __future__ import annotations

import os

import numpy as np

from ..compare.steps import floor_entries, floors

WORLD = 2


def xla_flags() -> str:
    """XLA_FLAGS with WORLD host devices; only effective before jax is first imported."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        flags = f"{flags} --xla_force_host_platform_device_count={WORLD}".strip()
    return flags


def shard(a, rank):
    n = len(a) // WORLD
    return a[rank * n:(rank + 1) * n]


def mesh():
    import jax
    from jax.sharding import Mesh

    if jax.device_count() < WORLD:
        raise RuntimeError(f"data-parallel worker sees {jax.device_count()} jax devices, needs {WORLD}: "
                           f"XLA_FLAGS={os.environ.get('XLA_FLAGS')!r} must be set before jax is imported")
    return Mesh(np.array(jax.devices()[:WORLD]), ("data",))


def median_rel(a, b, prefix):
    rel = [float(np.abs(a[k].astype(np.float64) - b[k]).max() / (np.abs(b[k]).max() or 1.0))
           for k in b if k.startswith(prefix)]
    return float(np.median(rel))


def engine_floor(job, single, w0):
    """Per key, the larger of torch's fp32 floor and this engine's own (its single-device step
    against torch's fp64 twin): measured, one fp32 implementation can sit 18x farther from fp64
    than torch on an ill-conditioned trunk gradient (docs/training.md, "Data parallel")."""
    if not job.get("floor"):  # no torch fp64 twin: the stated bounds
        return {}
    with np.load(job["floor"]) as f:
        torch_floor = floors({k: f[k] for k in f.files})
    with np.load(job["fp64"]) as ref:
        own = floors(floor_entries(single, {k: ref[k] for k in ref.files}, w0, skip=("stat:",)))
    return {k: max(torch_floor.get(k, (0.0, 0.0)), own.get(k, (0.0, 0.0)), key=lambda f: f[1])
            for k in torch_floor.keys() | own.keys()}
