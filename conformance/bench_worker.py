"""One framework's benchmark process: ``python -m conformance.bench_worker JOB.json``.

Eval-mode fp32 throughput (images/s, median of timed repetitions after warm-up) of each
configuration in the job, written to ``<out>``. Weights: the job's seeded checkpoint (trained-like
activations; see ``bench.run`` for why default inits would distort the timings).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np


def _time(fn, warmup, repeats, batch):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def torch_configs(job):
    import torch

    from impls.torch_nn import create_model

    arch, b, s = job["arch"], job["batch"], job["size"]
    x = torch.randn(b, 3, s, s)
    peer = job["impl"]
    if peer == "torchvision":
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None, aux_logits=False, init_weights=False)
    elif peer == "timm":
        import timm

        model = timm.create_model(arch, pretrained=False)
    else:
        model = create_model(arch, aux_logits=False)
    # Our state_dict keys are torchvision's and timm's: one checkpoint for all three.
    model.load_state_dict(torch.load(job["weights"]["torch"], map_location="cpu", weights_only=True), strict=True)
    model.eval()
    for config in job["configs"]:
        m, xi = model, x
        if config.startswith("fast"):  # ours: BN folded, blocks merged, channels-last (impls/torch_nn/fast.py)
            from impls.torch_nn.fast import optimize_for_inference

            # compile=True compiles the folded model inside; a second torch.compile around it is not ours.
            m = optimize_for_inference(model, compile=config == "fast+compile")
        else:  # the peers' configurations
            if "channels_last" in config:
                m, xi = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
            if "compile" in config:
                m = torch.compile(m)
        with torch.inference_mode():
            yield config, _time(lambda: m(xi), job["warmup"], job["repeats"], b)


def flax_configs(job):
    import flax.serialization
    import jax
    from flax import nnx

    from weights_bridge.flax_io import build_model

    with open(job["weights"]["flax"], "rb") as f:
        state = flax.serialization.msgpack_restore(f.read())
    model = build_model(job["arch"], state, aux_logits=False)
    model.eval()
    x = np.random.default_rng(0).standard_normal((job["batch"], job["size"], job["size"], 3), dtype=np.float32)
    for config in job["configs"]:
        if config == "fast":  # BN folded, blocks merged, one jax.jit (impls/flax_nnx/fast.py)
            from impls.flax_nnx.fast import optimize_for_inference

            f = optimize_for_inference(model)
            fn = lambda: jax.block_until_ready(f(x))  # noqa: E731
        else:
            jitted = nnx.jit(lambda m, x: m(x))
            fn = lambda: jax.block_until_ready(jitted(model, x))  # noqa: E731
        yield config, _time(fn, job["warmup"], job["repeats"], job["batch"])


def keras_configs(job):
    b, s = job["batch"], job["size"]
    if job["impl"] == "keras-applications":
        import tempfile

        from .keras_applications_weights import make

        with tempfile.TemporaryDirectory() as tmp:
            model = make(os.path.join(tmp, "peer.weights.h5"), size=s, architecture=job["arch"])
    else:
        from impls.keras3 import create_model

        model = create_model(job["arch"], aux_logits=False, input_size=s)
        model.load_weights(job["weights"]["keras"])
    x = np.random.default_rng(0).standard_normal((b, s, s, 3), dtype=np.float32)
    for config in job["configs"]:
        m = model
        if config == "fast":  # BN folded, blocks merged (impls/keras3/fast.py)
            from impls.keras3.fast import optimize_for_inference

            m = optimize_for_inference(model)
        # predict_on_batch is Keras's compiled inference path on every backend.
        yield config, _time(lambda: m.predict_on_batch(x), job["warmup"], job["repeats"], b)


def main(path):
    with open(path) as f:
        job = json.load(f)
    impl = job["impl"]
    run = (keras_configs if impl.startswith("keras") else flax_configs if impl == "flax" else torch_configs)
    rows = [{"impl": impl, "config": c, "images_per_s": ips} for c, ips in run(job)]
    with open(job["out"], "w") as f:
        json.dump(rows, f)


if __name__ == "__main__":
    job = json.load(open(sys.argv[1]))
    if job.get("xla_tuned"):  # before JAX (or Keras on jax) is imported
        from impls import xla_cpu

        xla_cpu.configure()
    if job["impl"].startswith("keras"):
        os.environ["KERAS_BACKEND"] = job.get("backend", "tensorflow")
    main(sys.argv[1])
