"""Canonical tensor names and shapes of a model, derived from its spec alone.

Canonical names are the PyTorch module paths (torchvision/timm ``state_dict`` keys, minus BN's
``num_batches_tracked``); canonical layouts are PyTorch's: conv (O, I, H, W), dense (out, in).
Every framework's importer and exporter is checked against this table.
"""
from __future__ import annotations

from typing import Dict, Tuple

from .model import ModelSpec


def node_tensors(node, prefix: str, out: Dict[str, Tuple[int, ...]]):
    """Adds every tensor of ``node`` and its children under ``prefix`` to ``out``."""
    for leaf, shape in node.tensors().items():
        out[f"{prefix}.{leaf}"] = shape
    for name, child in node.children():
        node_tensors(child, f"{prefix}.{name}", out)
    return out


def canonical_shapes(spec: ModelSpec) -> Dict[str, Tuple[int, ...]]:
    """Every tensor of the model: canonical name -> shape (PyTorch layout)."""
    out: Dict[str, Tuple[int, ...]] = {}
    for name, node in spec.stages:
        node_tensors(node, name, out)
    for name, (_, head) in spec.aux_heads.items():
        node_tensors(head, name, out)
    return out


def is_parameter(name: str) -> bool:
    """Trainable parameters, as opposed to BN running statistics."""
    return not name.endswith(("running_mean", "running_var"))
