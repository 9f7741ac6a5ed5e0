"""Feature-extraction throughput of the FID Inception (``inception-bridge bench inception_v3
--variant fid``), in any worker: ours through ``fid.Extractor`` (the framework's fast path and its
own input pipeline, uint8 NHWC in, pool3 features out as numpy), pytorch-fid's and
torch-fidelity's models in the torch worker (``torch_nn.fid_peers``). Every row takes the same
seeded uint8 images and ends with the features in numpy, as FID's statistics need them."""
from __future__ import annotations

import json

import numpy as np

from .timing import images_per_second

PEERS = ("pytorch-fid", "torch-fidelity")
READY = {}  # built calls of this worker, by job and config


def images(job) -> np.ndarray:
    """The benchmark's batch: seeded uint8 (batch, size, size, 3) images."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (job["batch"], job["size"], job["size"], 3), dtype=np.uint8)


def timed_call(job, config, x):
    """The call one row times: ``fid.Extractor`` for ours, the peer's model for a peer."""
    if job["impl"] in PEERS:
        from .torch_nn.fid_peers import bench_call

        return bench_call(job, config, x)
    from fid import Extractor

    framework = job["impl"] if job["impl"] in ("torch", "flax") else "keras"
    extractor = Extractor(framework, job["mode"], job["weights"]["neutral"])
    return lambda: extractor(x)


def rows(job):
    """One row per config: images/s of ``repeats`` timed calls after ``warmup``. Models stay built in
    this worker between requests, so ``bench`` can time every implementation in turn, round by round."""
    x = images(job)
    out = []
    for config in job["configs"]:
        key = json.dumps([job[k] for k in ("impl", "mode", "batch", "size", "weights")] + [config])
        if key not in READY:
            READY[key] = timed_call(job, config, x)
        ips = images_per_second(READY[key], job["warmup"], job["repeats"], job["batch"])
        label = config if job["impl"] in PEERS else f"{config}, {job['mode']} pipeline"
        row = {"impl": job["impl"], "config": label, "images_per_s": ips}
        if job["impl"] in PEERS or job["impl"] == "torch":
            import torch

            row["threads"] = torch.get_num_threads()
        out.append(row)
    return out
