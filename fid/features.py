"""The FID Inception's features in one framework, in this process: the weights read by the
bridge as ``inception_v3`` variant ``fid``, the framework's fast inference form
(``weights_bridge.inference``), and the framework's own input pipeline
(``impls.<framework>.pipelines``, the mode's rules from ``impls.spec.pipelines``)."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from weights_bridge.errors import InputFileError
from weights_bridge.formats import read
from weights_bridge.peers.fid_inception import cache_candidates

# --dims (pytorch-fid's names) -> the FID Inception's output field (impls.spec.inception_v3).
DIMS = {64: "pool_64", 192: "pool_192", 768: "pool_768", 2048: "pool3"}
PIPELINES = {"torch": "impls.torch_nn.pipelines", "flax": "impls.flax_nnx.pipelines", "keras": "impls.keras3.pipelines"}


def find_weights(weights=None) -> Path:
    """``weights``, else the file pytorch-fid or torch-fidelity downloaded to torch.hub's cache;
    neither: a one-line error saying which file is needed and where it was looked for."""
    if weights:
        return Path(weights)
    for path in cache_candidates():
        if path.is_file():
            return path
    raise InputFileError("no FID Inception weights: pass --weights FILE (pytorch-fid's "
                         "pt_inception-2015-12-05-6726825d.pth, torch-fidelity's weights-inception-2015-12-05-"
                         "6726825d.pth, or that network in any format the bridge reads); looked for "
                         + " and ".join(str(p) for p in cache_candidates()))


def read_weights(path, fmt=None):
    """The FID Inception's checkpoint: any format the bridge reads, as ``inception_v3`` variant
    ``fid`` (a ``.pth`` cannot say it; a file of another variant is refused)."""
    return read(path, fmt, "inception_v3", variant="fid")


class Extractor:
    """``extractor(images)`` -> {field: float32 (n, d)} for a uint8 NHWC batch: ``fields`` of the
    FID Inception's outputs (pool_64, pool_192, pool_768, pool3, logits_unbiased, logits)."""

    def __init__(self, framework: str = "torch", mode: str = "tf1", weights=None, fmt=None, fast: bool = True):
        from weights_bridge.inference import inference_model

        if framework not in PIPELINES:
            raise ValueError(f"unknown framework {framework!r}; known: {', '.join(PIPELINES)}")
        if framework in ("flax", "keras"):
            from impls.xla_cpu import configure

            configure()  # XLA:CPU's fast convolutions, before JAX starts (no effect on other backends)
        self.framework, self.mode, self.weights = framework, mode, find_weights(weights)
        self.checkpoint = read_weights(self.weights, fmt)
        self.model = inference_model(self.checkpoint, framework, fast=fast)
        self.preprocess = importlib.import_module(PIPELINES[framework]).preprocess
        self.preprocess(np.zeros((1, 8, 8, 3), np.uint8), mode)  # an unknown mode fails here, before any image

    def __call__(self, images, fields=("pool3",)) -> dict:
        x = self.preprocess(images, self.mode)
        out = self.model(x)
        return {f: _numpy(getattr(out, f)) for f in fields}


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    try:
        from keras import ops

        return np.asarray(ops.convert_to_numpy(value))
    except ImportError:
        return np.asarray(value)
