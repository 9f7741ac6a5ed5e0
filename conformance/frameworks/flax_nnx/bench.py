"""Eval throughput of our Flax NNX model: plain under ``nnx.jit`` and the fast form."""
from __future__ import annotations

import numpy as np

from ..base import read_neutral
from ..timing import images_per_second


def rows(job):
    import jax

    from weights_bridge.inference import inference_model, optimized

    from .model import JIT

    model = inference_model(read_neutral(job["weights"]["neutral"]), "flax", fast=False)
    x = np.random.default_rng(0).standard_normal((job["batch"], job["size"], job["size"], 3), dtype=np.float32)
    out = []
    for config in job["configs"]:
        f = optimized(model, "flax") if config == "fast" else (lambda v: JIT["forward"](model, v))
        ips = images_per_second(lambda: jax.block_until_ready(f(x)), job["warmup"], job["repeats"], job["batch"])
        out.append({"impl": job["impl"], "config": config, "images_per_s": ips})
    return out
