"""Eval throughput of our Keras model (plain and fast, ``predict_on_batch``) and of
keras.applications' on its own seeded file."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from ..base import read_neutral
from ..timing import images_per_second


def rows(job, backend):
    from weights_bridge.inference import inference_model, optimized

    from .applications import seeded_file

    b, s = job["batch"], job["size"]
    if job["impl"] == "keras-applications":  # its own trained-like file: conformance.frameworks.keras3.applications
        with tempfile.TemporaryDirectory() as tmp:
            model = seeded_file(os.path.join(tmp, "peer.weights.h5"), size=s, architecture=job["arch"])
    else:
        model = inference_model(read_neutral(job["weights"]["neutral"]), "keras", fast=False, input_size=s)
    x = np.random.default_rng(0).standard_normal((b, s, s, 3), dtype=np.float32)
    out = []
    for config in job["configs"]:
        m = optimized(model, "keras") if config == "fast" else model
        # predict_on_batch is Keras's compiled inference path on every backend.
        ips = images_per_second(lambda: m.predict_on_batch(x), job["warmup"], job["repeats"], b)
        out.append({"impl": job["impl"], "config": config, "images_per_s": ips})
    return out
