"""The flax worker's adapter: our Flax NNX models. Requests: see ``conformance.frameworks.base``.
Float64 steps run in a worker started with ``JAX_ENABLE_X64=1`` (jax reads it at import)."""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from ..base import Adapter, merged, nhwc, read_neutral, save, write_chunks
from . import model as M


class FlaxAdapter(Adapter):
    OPS = Adapter.OPS + ("data_parallel",)

    def precision(self):
        from ...precision import jax_full_precision

        return jax_full_precision()

    def clear_framework_caches(self):
        import jax

        jax.clear_caches()

    def outputs(self, impl, arch, weights, config, mode, input, out, layers=False):
        x, train = np.load(input), mode == "train"
        model = self.models.get(weights["neutral"], lambda: M.load(weights["neutral"]), consume=train)
        res = M.run(model, x, train)
        if layers:
            res.update({f"layer:{k}": v for k, v in M.blocks(model, x, train).items()})
        save(out, res)
        return {"precision": self.info}

    def train(self, impl, arch, weights, config, input, labels, hyper, dtype, out):
        from .train import step

        t0 = time.perf_counter()
        model = M.load(weights["neutral"], dtype)
        load = time.perf_counter() - t0
        times = write_chunks(step(model, np.load(input), np.load(labels), hyper), out)
        return {"precision": {**self.info, "dtype": dtype}, "times": {"load": round(load, 3), **times}}

    def data_parallel(self, job):
        from ...compare.steps import compare_pair
        from ..data_parallel import WORLD, engine_floor, mesh
        from .train import step

        x, y, hp = np.load(job["input"]), np.load(job["labels"]), job["hyper"]
        t0 = time.perf_counter()
        single = merged(step(M.load(job["weights"]["neutral"]), x, y, hp))
        t1 = time.perf_counter()
        info = {}
        dp = merged(step(M.load(job["weights"]["neutral"]), x, y, hp, mesh=mesh(), info=info))
        info.update(engine="flax", world_size=WORLD, bn="synchronised (global batch statistics under jit)",
                    seconds_single=t1 - t0, seconds_dp=time.perf_counter() - t1)
        w0 = read_neutral(job["weights"]["neutral"]).tensors
        rows = compare_pair(f"flax-{WORLD}dev", "flax", dp, single, w0, engine_floor(job, single, w0), job["arch"], hp)
        return {"rows": [asdict(r) for r in rows], "contrast": [], "info": info}

    def fast(self, impl, arch, weights, input, out):
        """Plain and fast-path logits of ``weights_bridge.inference``'s model, built once."""
        from weights_bridge.inference import inference_model, optimized

        xh = nhwc(np.load(input))
        plain = inference_model(read_neutral(weights["neutral"]), "flax", fast=False)
        save(out, {"plain": np.asarray(M.JIT["forward"](plain, xh)), "fast": np.asarray(optimized(plain, "flax")(xh))})

    def bench(self, **job):
        from .bench import rows

        return {"rows": rows(job)}
