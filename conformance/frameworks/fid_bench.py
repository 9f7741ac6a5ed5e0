"""Feature-extraction throughput of the FID Inception (``inception-bridge bench inception_v3
--variant fid``), in any worker: ours through ``fid.Extractor`` (the framework's fast path and its
own input pipeline, uint8 NHWC in, pool3 features out as numpy), pytorch-fid's and
torch-fidelity's models in the torch worker (``torch_nn.fid_peers``). Every row takes the same
seeded uint8 images and ends with the features in numpy, as FID's statistics need them."""
from __future__ import annotations

import numpy as np

from .timing import images_per_second

PEERS = ("pytorch-fid", "torch-fidelity")


def images(job) -> np.ndarray:
    """The benchmark's batch: seeded uint8 (batch, size, size, 3) images."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (job["batch"], job["size"], job["size"], 3), dtype=np.uint8)


def rows(job):
    x = images(job)
    if job["impl"] in PEERS:
        from .torch_nn.fid_peers import bench_rows

        return bench_rows(job, x)
    from fid import Extractor

    framework = job["impl"] if job["impl"] in ("torch", "flax") else "keras"
    extractor = Extractor(framework, job["mode"], job["weights"]["neutral"])
    ips = images_per_second(lambda: extractor(x), job["warmup"], job["repeats"], job["batch"])
    row = {"impl": job["impl"], "config": f"fast, {job['mode']} pipeline", "images_per_s": ips}
    if framework == "torch":
        import torch

        row["threads"] = torch.get_num_threads()
    return [row]
