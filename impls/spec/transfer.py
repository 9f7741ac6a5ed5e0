"""Transfer learning, framework-free: which layers are the classifiers, the spec with a new
number of classes, and the new classifiers' initial values (shared so that ``for_transfer``
gives the same fresh heads in PyTorch, Flax NNX and Keras for the same seed).

The classifiers are the last stage (``spec.stages[-1]``, a ``Linear``) and the last ``Linear``
step of each aux head (``fc2`` in GoogLeNet's, ``fc`` in Inception v3's).
Everything else is the backbone.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import numpy as np

from .blocks import Sequential
from .layers import Linear

HEAD_INIT_STD = 0.01  # torchvision's Inception/GoogLeNet classifier init (normal, std 0.01, bias 0)


def _aux_classifier(head: Sequential) -> Tuple[str, int]:
    """(step name, in_features) of an aux head's final Linear."""
    name, fc = [(n, step) for n, step in head.steps if isinstance(step, Linear)][-1]
    return name, fc.in_features


def classifier_layers(spec) -> Dict[str, int]:
    """Canonical module path -> in_features of every classifier, main first:
    ``{"fc": 1024, "aux1.fc2": 1024, "aux2.fc2": 1024}`` for GoogLeNet."""
    name, fc = spec.stages[-1]
    if not isinstance(fc, Linear):
        raise TypeError(f"{spec.arch}: the last stage {name!r} is not a Linear classifier")
    out = {name: fc.in_features}
    for head_name, (_, head) in spec.aux_heads.items():
        attr, in_features = _aux_classifier(head)
        out[f"{head_name}.{attr}"] = in_features
    return out


def is_head(canonical_name: str, spec) -> bool:
    """Whether a canonical tensor name (``aux1.fc2.weight``) belongs to a classifier."""
    return any(canonical_name.startswith(path + ".") for path in classifier_layers(spec))


def with_num_classes(spec, num_classes: int):
    """The same spec (dropouts, transform_input, aux heads kept) with ``num_classes`` outputs."""
    name, fc = spec.stages[-1]
    stages = spec.stages[:-1] + ((name, Linear(fc.in_features, num_classes)),)
    aux = {}
    for head_name, (tap, head) in spec.aux_heads.items():
        attr, in_features = _aux_classifier(head)
        steps = tuple((n, Linear(in_features, num_classes) if n == attr else s) for n, s in head.steps)
        aux[head_name] = (tap, dataclasses.replace(head, steps=steps))
    return dataclasses.replace(spec, stages=stages, aux_heads=aux, num_classes=num_classes)


def head_init(spec, num_classes: int, seed: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
    """Fresh classifier tensors in canonical (PyTorch) layout: path -> {"weight": (out, in),
    "bias": (out,)}, weights normal with std 0.01, biases zero; one seeded stream, so every
    framework gets the same values."""
    rng = np.random.default_rng(seed)
    return {path: {"weight": (rng.standard_normal((num_classes, n)) * HEAD_INIT_STD).astype(np.float32),
                   "bias": np.zeros(num_classes, np.float32)}
            for path, n in classifier_layers(spec).items()}
