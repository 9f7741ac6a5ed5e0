"""Architectures written down once, framework-free. Frameworks build from ``model_spec``."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Tuple

from . import blocks, layers  # noqa: F401


@dataclass(frozen=True)
class ModelSpec:
    """Everything a framework needs to build one model instance.

    ``stages`` run in order; ``aux_heads`` maps a head's name to (the stage whose output feeds
    it, its spec); ``output_fields`` gives the train-mode named tuple: (field, aux head name or
    None for the main logits), in the peer library's order. ``capture_children`` names Sequential
    stages (tuples) whose items per-block capture reports one by one as ``<stage>.<index>``
    (Inception-v4's whole trunk is timm's one ``features`` Sequential).
    """

    arch: str
    stages: Tuple[Tuple[str, Any], ...]
    aux_heads: Dict[str, Tuple[str, Any]]
    output_fields: Tuple[Tuple[str, Any], ...]
    transform_input: bool
    num_classes: int
    config: Any

    output_name: str = "Outputs"
    capture_children: Tuple[str, ...] = ()

    def block_names(self):
        """What per-block capture reports, in forward order: each stage (or, for a stage in
        ``capture_children``, each of its items), each aux head after the stage feeding it."""
        taps = {tap: head for head, (tap, _) in self.aux_heads.items()}
        names = []
        for name, layer in self.stages:
            if name in self.capture_children:
                names += [f"{name}.{i}" for i in range(len(layer))]
            else:
                names.append(name)
            if name in taps:
                names.append(taps[name])
        return names

    @property
    def outputs_type(self):
        """The train-mode named tuple (one type per architecture, shared by all frameworks)."""
        return _outputs_type(self.output_name, tuple(f for f, _ in self.output_fields))

    def pack_outputs(self, logits, aux: Dict[str, Any]):
        """Train-mode outputs as the peer returns them: the named tuple when aux heads exist,
        the bare logits otherwise (torchvision's ``eager_outputs``)."""
        if not self.aux_heads:
            return logits
        return self.outputs_type(*[logits if head is None else aux[head] for _, head in self.output_fields])


@lru_cache(maxsize=None)
def _outputs_type(name, fields):
    return collections.namedtuple(name, fields)


def _builders():
    from .googlenet import googlenet_spec
    from .inception_v3 import inception_v3_spec

    def one_variant(name):
        def build(variant="default", **kw):
            if variant not in (None, "default"):
                raise ValueError(f"{name} has no variant {variant!r} (only 'default')")
            return googlenet_spec(name, **kw)
        return build

    return {"googlenet": one_variant("googlenet"), "googlenet_paper": one_variant("googlenet_paper"),
            "inception_v3": inception_v3_spec, **_v4_builders()}


def _v4_builders():
    from .inception_v4 import STAGES, spec_builder

    from .bn_inception import bn_inception_spec

    return {**{arch: spec_builder(arch) for arch in STAGES}, "bn_inception": bn_inception_spec}


ARCHITECTURES = ("googlenet", "googlenet_paper", "inception_v3", "inception_v4", "inception_resnet_v2",
                 "bn_inception")


def model_spec(arch: str, **kwargs) -> ModelSpec:
    builders = _builders()
    if arch not in builders:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return builders[arch](**kwargs)
