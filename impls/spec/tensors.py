"""Canonical tensor names and shapes of a model, derived from its spec alone.

Canonical names are the PyTorch module paths (torchvision/timm ``state_dict`` keys, minus BN's
``num_batches_tracked``); canonical layouts are PyTorch's: conv (O, I, H, W), dense (out, in).
Every framework's importer and exporter is checked against this table.
"""
from __future__ import annotations

from typing import Dict, Tuple

from . import blocks as B
from . import layers as L
from . import ModelSpec
from .blocks_v4 import Conv2d


def children(spec):
    """(name, child spec) pairs of a composite block, in the order the peer library registers them."""
    if isinstance(spec, B.InceptionV1):
        return list(spec.branches.items())
    if isinstance(spec, B.AuxHeadV1):
        return [("pool", spec.pool), ("conv", spec.conv), ("fc1", L.Linear(2048, 1024)),
                ("fc2", L.Linear(1024, spec.num_classes))]
    if isinstance(spec, (B.BranchBlock, B.AuxHeadV3)):
        return list(spec.layers)
    if isinstance(spec, tuple):
        return [(str(i), s) for i, s in enumerate(spec)]
    return []


def _leaves(spec, prefix: str, out: Dict[str, Tuple[int, ...]]):
    if isinstance(spec, L.ConvBlock):
        out[f"{prefix}.conv.weight"] = (spec.out_channels, spec.in_channels, *spec.kernel_size)
        if spec.has_bias:
            out[f"{prefix}.conv.bias"] = (spec.out_channels,)
        if spec.batch_norm:
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                out[f"{prefix}.bn.{leaf}"] = (spec.out_channels,)
    elif isinstance(spec, L.Linear):
        out[f"{prefix}.weight"] = (spec.out_features, spec.in_features)
        out[f"{prefix}.bias"] = (spec.out_features,)
    elif isinstance(spec, Conv2d):  # a bare conv with bias (the residual blocks' up-projection)
        out[f"{prefix}.weight"] = (spec.out_channels, spec.in_channels, *spec.kernel_size)
        out[f"{prefix}.bias"] = (spec.out_channels,)
    for name, child in children(spec):
        _leaves(child, f"{prefix}.{name}", out)


def canonical_shapes(spec: ModelSpec) -> Dict[str, Tuple[int, ...]]:
    """Every tensor of the model: canonical name -> shape (PyTorch layout)."""
    out: Dict[str, Tuple[int, ...]] = {}
    for name, layer in spec.stages:
        _leaves(layer, name, out)
    for name, (_, head) in spec.aux_heads.items():
        _leaves(head, name, out)
    return out


def is_parameter(name: str) -> bool:
    """Trainable parameters, as opposed to BN running statistics."""
    return not name.endswith(("running_mean", "running_var"))
