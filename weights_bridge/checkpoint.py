"""A checkpoint in canonical form: config facts plus canonical tensors, checked against the spec."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

import numpy as np

from impls.spec import ARCHITECTURES, model_spec
from impls.spec.tensors import canonical_shapes

from .errors import WeightsMismatchError

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    architecture: str
    tensors: Dict[str, np.ndarray]
    num_classes: int = 1000
    aux_logits: bool = True
    variant: str = "default"
    transform_input: bool = False
    extra: dict = field(default_factory=dict)

    def config(self) -> dict:
        return {"format_version": FORMAT_VERSION, "architecture": self.architecture, "variant": self.variant,
                "num_classes": self.num_classes, "aux_logits": self.aux_logits,
                "transform_input": self.transform_input, **self.extra}

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


def check_architecture(arch: str, where: str):
    if arch not in ARCHITECTURES:
        raise WeightsMismatchError(f"{where}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


def tensor_variants(arch: str):
    """Variants of ``arch`` whose tensor set differs from the default's, so that the tensors alone
    name them (bn_inception's "caffe" has conv biases). Variants that change only the computation
    (inception_v3's "keras") read as "default" from a native file: name them with ``--variant``."""
    if arch == "bn_inception":
        from impls.spec.bn_inception import VARIANTS

        return tuple(v for v in VARIANTS if v != "default")
    return ()


def infer_variant(arch: str, names, aux_logits: bool) -> str:
    """The variant whose canonical tensor names are exactly ``names``; "default" otherwise (so
    that a wrong tensor set is reported against the default model)."""
    names = set(names)
    for variant in tensor_variants(arch):
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
