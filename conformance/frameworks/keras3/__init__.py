"""A Keras worker's adapter (one process per backend, ``KERAS_BACKEND`` fixed at its start):
our Keras 3 models, and on TensorFlow the keras.applications peer. Requests: see
``conformance.frameworks.base``. Float64 steps on jax run in a worker started with
``JAX_ENABLE_X64=1``."""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from ..base import Adapter, merged, nhwc, read_neutral, save, write_chunks
from . import applications as A
from . import model as M


class KerasAdapter(Adapter):
    OPS = Adapter.OPS + ("data_parallel", "onnx_export", "seed_applications", "count_params")

    def __init__(self, process, started):
        import keras

        self.backend = keras.backend.backend()
        super().__init__(process, started)

    def precision(self):
        from ...precision import keras_full_precision

        return keras_full_precision(self.backend)

    def clear_framework_caches(self):
        import keras

        keras.backend.clear_session()
        if self.backend == "jax":
            import jax

            jax.clear_caches()

    def outputs(self, impl, arch, weights, config, mode, input, out, layers=False):
        x, train = np.load(input), mode == "train"
        if impl == "keras-applications":  # a functional model: its input size is fixed when built
            model = self.models.get((impl, weights["neutral"], x.shape[-1]),
                                    lambda: A.load(weights["peer"], arch, x.shape[-1]), consume=train)
            res = A.run(model, arch, x, train)
            if layers:  # after the statistics: a train-mode capture updates them again
                res.update({f"layer:{k}": v for k, v in A.blocks(model, arch, x, train).items()})
        else:
            # Built at the architecture's own size (every aux head fits there), called at any size:
            # the explicit pads follow the input's shape.
            model = self.models.get((impl, weights["neutral"]), lambda: M.load(weights["neutral"], None),
                                    consume=train)
            res = M.run(model, self.backend, x, train)
            if layers:
                res.update({f"layer:{k}": v for k, v in M.blocks(model, x, self.backend, train).items()})
        save(out, res)
        return {"precision": self.info}

    def train(self, impl, arch, weights, config, input, labels, hyper, dtype, out):
        from .train import step

        x = np.load(input).astype(dtype)
        with M.floatx(dtype):
            t0 = time.perf_counter()
            model = M.load(weights["neutral"], x.shape[-1], dtype)
            load = time.perf_counter() - t0
            times = write_chunks(step(model, self.backend, x, np.load(labels), hyper, dtype), out)
        return {"precision": {**self.info, "dtype": dtype}, "times": {"load": round(load, 3), **times}}

    def data_parallel(self, job):
        """keras.distribution.DataParallel on the jax backend's host devices against one device."""
        import jax
        import keras

        from ...compare.steps import compare_pair
        from ..data_parallel import WORLD, engine_floor, mesh
        from .train import step

        x, y, hp, neutral = np.load(job["input"]), np.load(job["labels"]), job["hyper"], job["weights"]["neutral"]
        t0 = time.perf_counter()
        devices = list(mesh().devices.flat)
        single = merged(step(M.load(neutral, x.shape[-1]), self.backend, x, y, hp))
        # The sharded step compiles programs of its own; the one-device step's serve it nothing:
        # dropped in between, the request's peak is one step's.
        jax.clear_caches()
        t1 = time.perf_counter()
        dist = keras.distribution.DataParallel(devices=devices)
        keras.distribution.set_distribution(dist)
        spread = []

        def place(a):
            a = keras.distribution.distribute_tensor(a, dist.get_data_layout(a.shape))
            spread.append(len(a.sharding.device_set))
            return a

        try:
            dp = merged(step(M.load(neutral, x.shape[-1]), self.backend, x, y, hp, place=place))
        finally:
            keras.distribution.set_distribution(None)
        info = {"engine": "keras-jax", "world_size": WORLD, "distribution": "keras.distribution.DataParallel",
                "bn": "synchronised (global batch statistics under jit)", "input_devices": min(spread),
                "seconds_single": t1 - t0, "seconds_dp": time.perf_counter() - t1}
        w0 = read_neutral(neutral).tensors
        rows = compare_pair(f"keras-jax-{WORLD}dev", "keras-jax", dp, single, w0, engine_floor(job, single, w0),
                            job["arch"], hp)
        return {"rows": [asdict(r) for r in rows], "contrast": [], "info": info}

    def fast(self, impl, arch, weights, input, out):
        """Plain and fast-path logits of ``weights_bridge.inference``'s model, built once."""
        from keras import ops

        from weights_bridge.inference import inference_model, optimized

        x = np.load(input)
        plain = inference_model(read_neutral(weights["neutral"]), "keras", fast=False, input_size=x.shape[-1])
        xh = nhwc(x)
        save(out, {"plain": np.asarray(ops.convert_to_numpy(plain(xh, training=False))),
                   "fast": np.asarray(ops.convert_to_numpy(optimized(plain, "keras").predict_on_batch(xh)))})

    def onnx_export(self, **job):
        from .onnx import export

        return export(**job)

    def seed_applications(self, out, seed=0, num_classes=1000, size=299, architecture="inception_v3"):
        A.seeded_file(out, seed, num_classes, size, architecture)

    def count_params(self, architecture):
        return {"count": A.count_params(architecture)}

    def bench(self, **job):
        from .bench import rows

        return {"rows": rows(job, self.backend)}
