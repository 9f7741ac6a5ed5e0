"""Canonical tensor names and each framework's names and layouts, declared once, both ways.

Canonical names and layouts are PyTorch's (``impls.spec.tensors``): ``<module path>.<leaf>``,
conv (O, I, H, W), dense (out, in). A framework's tensor is named by a native key: torch
``state_dict`` keys (canonical themselves); NNX state paths joined by '.'; Keras
``<layer name>/<variable name>`` where the layer name is the module path with '-' for '.'.
``LEAVES`` pairs each framework's leaf names with the canonical ones, per kind of module, in the
order the framework creates them; ``weights_bridge.mapping`` applies it strictly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

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

WEIGHTED, BATCH_NORM = "weighted", "batch_norm"  # conv or dense; BN
# framework -> module kind -> ((canonical leaf, native leaf, layout), ...), in creation order.
LEAVES = {
    "flax": {
        WEIGHTED: (("weight", "kernel", CHANNELS_LAST_KERNEL), ("bias", "bias", IDENTITY)),
        BATCH_NORM: (("weight", "scale", IDENTITY), ("bias", "bias", IDENTITY), ("running_mean", "mean", IDENTITY),
                     ("running_var", "var", IDENTITY)),
    },
    "keras": {
        WEIGHTED: (("weight", "kernel", CHANNELS_LAST_KERNEL), ("bias", "bias", IDENTITY)),
        BATCH_NORM: (("weight", "gamma", IDENTITY), ("bias", "beta", IDENTITY),
                     ("running_mean", "moving_mean", IDENTITY), ("running_var", "moving_variance", IDENTITY)),
    },
}
# framework -> (separator before the leaf, module path spelling: native -> canonical, canonical -> native)
SPELLING = {"flax": (".", lambda m: m, lambda m: m), "keras": ("/", lambda m: m.replace("-", "."),
                                                             lambda m: m.replace(".", "-"))}


def canonical_key(framework: str, native_key: str):
    """[(canonical key, layout)] for every reading of ``native_key`` (strict callers want one)."""
    if framework == "torch":
        return [(native_key, IDENTITY)]
    sep, to_canonical, _ = SPELLING[framework]
    module, found, leaf = native_key.rpartition(sep)
    if not found or not module:
        return []
    hits = {(f"{to_canonical(module)}.{ours}", layout) for leaves in LEAVES[framework].values()
            for ours, theirs, layout in leaves if theirs == leaf}
    return sorted(hits, key=lambda h: h[0])


def native_key(framework: str, canonical: str, kind: str):
    """(native key, layout) of a canonical tensor of a module of ``kind`` (WEIGHTED, BATCH_NORM)."""
    if framework == "torch":
        return canonical, IDENTITY
    sep, _, to_native = SPELLING[framework]
    module, leaf = canonical.rsplit(".", 1)
    for ours, theirs, layout in LEAVES[framework][kind]:
        if ours == leaf:
            return f"{to_native(module)}{sep}{theirs}", layout
    raise KeyError(f"{framework} has no {kind} leaf for canonical {canonical!r}")


def module_kind(canonical: str, table) -> str:
    """BATCH_NORM if the canonical tensor's module has running statistics in ``table``, else WEIGHTED."""
    return BATCH_NORM if f"{canonical.rsplit('.', 1)[0]}.running_var" in table else WEIGHTED
