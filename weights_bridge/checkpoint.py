"""A checkpoint in canonical form: the checkpoint's facts plus canonical tensors, checked against
the spec."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from impls.spec import ARCHITECTURES, model_spec
from impls.spec.registry import tensor_variants
from impls.spec.tensors import canonical_shapes

from .errors import WeightsMismatchError

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """``facts`` (``impls.spec.config.FACTS``: input size, normalisation, label offset, padding
    convention) are the variant's own unless a file says otherwise; ``extra`` keeps any other
    config.json field as it was read."""

    architecture: str
    tensors: Dict[str, np.ndarray]
    num_classes: int = 1000
    aux_logits: bool = True
    variant: str = "default"
    transform_input: bool = False
    facts: Optional[dict] = None
    extra: dict = field(default_factory=dict)

    def checkpoint_facts(self) -> dict:
        return dict(self.facts) if self.facts is not None else self.spec().config.facts()

    def all_facts(self) -> dict:
        """``transform_input`` and the checkpoint facts: what a user of these weights must know to
        feed them, as config.json states it."""
        return {"transform_input": self.transform_input, **self.checkpoint_facts()}

    def facts_beyond_tensors(self) -> dict:
        """The facts a file of tensors alone (.pth, .msgpack, .weights.h5) loses: those that differ
        from what reading such a file gives back (the variant's own, ``transform_input`` off)."""
        bare = Checkpoint(self.architecture, {}, self.num_classes, self.aux_logits, self.variant).all_facts()
        return {k: v for k, v in self.all_facts().items() if bare.get(k) != v}

    def config(self) -> dict:
        """The neutral config.json."""
        return {"format_version": FORMAT_VERSION, "architecture": self.architecture, "variant": self.variant,
                "num_classes": self.num_classes, "aux_logits": self.aux_logits,
                "transform_input": self.transform_input, **self.checkpoint_facts(), **self.extra}

    def spec(self):
        """The model these tensors belong to; ``variant`` selects the checkpoint facts (e.g.
        Inception v3's "keras": avg pools that leave the padding out of the divisor)."""
        try:
            return model_spec(self.architecture, num_classes=self.num_classes, aux_logits=self.aux_logits,
                              transform_input=self.transform_input, variant=self.variant)
        except ValueError as e:
            raise WeightsMismatchError(f"{self.architecture}: {e}") from None

    def expected_shapes(self):
        return canonical_shapes(self.spec())

    def model_kwargs(self, **overrides) -> dict:
        """The keywords every framework's ``create_model`` takes for this checkpoint."""
        return {"num_classes": self.num_classes, "aux_logits": self.aux_logits,
                "transform_input": self.transform_input, "variant": self.variant, **overrides}


def check_architecture(arch: str, where: str):
    if arch not in ARCHITECTURES:
        raise WeightsMismatchError(f"{where}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def infer_variant(arch: str, names, aux_logits: bool) -> str:
    """The variant whose canonical tensor names are exactly ``names``; "default" otherwise (so
    that a wrong tensor set is reported against the default model)."""
    names = set(names)
    for variant in tensor_variants(arch, aux_logits):
        if set(canonical_shapes(model_spec(arch, aux_logits=aux_logits, variant=variant))) == names:
            return variant
    return "default"


def infer_head(arch: str, shapes: Dict[str, tuple], where: str):
    """(num_classes, aux_logits) from canonical tensor shapes: the last classifier's rows and
    whether aux-head tensors are present."""
    check_architecture(arch, where)
    spec = model_spec(arch)
    fc = f"{spec.stages[-1][0]}.weight"
    if fc not in shapes or len(shapes[fc]) != 2:
        raise WeightsMismatchError(f"{where}: classifier tensor {fc!r} missing or not 2-D; is this a {arch} checkpoint?")
    aux = any(k.split(".")[0] in spec.aux_heads for k in shapes)
    return int(shapes[fc][0]), aux
