"""Canonical tensor names and each framework's layout, declared once as data.

Canonical names and layouts are PyTorch's (see ``impls.spec.tensors``). A framework's tensor is
named by a native key; each framework declares rules ``native pattern -> canonical template`` plus
the layout transform between them. ``weights_bridge.mapping`` applies the rules strictly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np


@dataclass(frozen=True)
class Layout:
    """A lossless axis permutation between canonical and native layout (by tensor rank)."""

    name: str
    perms: Tuple[Tuple[int, Tuple[int, ...]], ...] = ()

    def _perm(self, rank):
        return dict(self.perms).get(rank)

    def to_native(self, a: np.ndarray) -> np.ndarray:
        p = self._perm(a.ndim)
        return a if p is None else np.ascontiguousarray(np.transpose(a, p))

    def to_canonical(self, a: np.ndarray) -> np.ndarray:
        p = self._perm(a.ndim)
        return a if p is None else np.ascontiguousarray(np.transpose(a, np.argsort(p)))

    def native_shape(self, shape):
        p = self._perm(len(shape))
        return tuple(shape) if p is None else tuple(shape[i] for i in p)

    def canonical_shape(self, shape):
        p = self._perm(len(shape))
        return tuple(shape) if p is None else tuple(shape[i] for i in np.argsort(p))


IDENTITY = Layout("identity")
# conv (O, I, H, W) -> (H, W, I, O); dense (out, in) -> (in, out)
CHANNELS_LAST_KERNEL = Layout("OIHW->HWIO | (out,in)->(in,out)", ((4, (2, 3, 1, 0)), (2, (1, 0))))


@dataclass(frozen=True)
class Rule:
    native: str  # regex over the native key
    canonical: str  # template using the native pattern's groups
    layout: Layout = IDENTITY

    def apply(self, native_key: str):
        m = re.fullmatch(self.native, native_key)
        return None if m is None else m.expand(self.canonical)


def _keras_module(path: str) -> str:
    return path.replace("-", ".")


# Native keys: torch ``state_dict`` keys; NNX state paths joined by '.'; Keras
# ``<layer name>/<variable name>`` (layer names are canonical module paths with '-' for '.').
RULES = {
    "torch": (Rule(r"(.+)", r"\1"),),
    "flax": (
        Rule(r"(.+)\.kernel", r"\1.weight", CHANNELS_LAST_KERNEL),
        Rule(r"(.+)\.bias", r"\1.bias"),
        Rule(r"(.+)\.scale", r"\1.weight"),
        Rule(r"(.+)\.mean", r"\1.running_mean"),
        Rule(r"(.+)\.var", r"\1.running_var"),
    ),
    "keras": (
        Rule(r"(.+)/kernel", r"\1.weight", CHANNELS_LAST_KERNEL),
        Rule(r"(.+)/bias", r"\1.bias"),
        Rule(r"(.+)/gamma", r"\1.weight"),
        Rule(r"(.+)/beta", r"\1.bias"),
        Rule(r"(.+)/moving_mean", r"\1.running_mean"),
        Rule(r"(.+)/moving_variance", r"\1.running_var"),
    ),
}

# How a rule's module part is spelled natively, where it differs from canonical.
MODULE_SPELLING: dict[str, Callable[[str], str]] = {"keras": _keras_module}


def canonical_key(framework: str, native_key: str):
    """(canonical key, layout) for every rule matching ``native_key`` (strict callers want one)."""
    fix = MODULE_SPELLING.get(framework, lambda s: s)
    hits = []
    for rule in RULES[framework]:
        key = rule.apply(native_key)
        if key is not None:
            hits.append((fix(key), rule.layout))
    return hits
