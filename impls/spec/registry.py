"""Every architecture by name: its spec builder and its checkpoint variants. Adding an
architecture is one entry here (docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Tuple

from . import bn_inception, googlenet, inception_resnet_v2, inception_v3, inception_v4
from .model import ModelSpec
from .tensors import canonical_shapes



@dataclass(frozen=True)
class Registered:
    """``build`` takes (variant, num_classes, aux_logits, transform_input, dropout, dropout_aux) as
    keywords, each with its architecture's own default; ``class_name`` names every framework's
    model class (torchvision's ``GoogLeNet``, timm's ``InceptionV4``)."""

    build: Callable[..., ModelSpec]
    variants: Tuple[str, ...]
    class_name: str


ARCHITECTURES = {
    "googlenet": Registered(googlenet.googlenet_spec, ("default",), "GoogLeNet"),
    "googlenet_paper": Registered(googlenet.googlenet_paper_spec, ("default",), "GoogLeNetPaper"),
    "inception_v3": Registered(inception_v3.inception_v3_spec, tuple(inception_v3.CONFIGS), "InceptionV3"),
    "inception_v4": Registered(inception_v4.inception_v4_spec, tuple(inception_v4.CONFIGS), "InceptionV4"),
    "inception_resnet_v2": Registered(inception_resnet_v2.inception_resnet_v2_spec,
                                      tuple(inception_resnet_v2.CONFIGS), "InceptionResNetV2"),
    "bn_inception": Registered(bn_inception.bn_inception_spec, tuple(bn_inception.CONFIGS), "BNInception"),
}


def check(arch: str) -> str:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return arch


def model_spec(arch: str, **kwargs) -> ModelSpec:
    """The spec of ``arch``; keywords left out or None take the architecture's defaults."""
    return ARCHITECTURES[check(arch)].build(**{k: v for k, v in kwargs.items() if v is not None})


def model_classes(base: type, module: str) -> dict:
    """{arch: subclass of ``base`` with ``arch`` set, named as registered}: a framework's model
    classes, so adding an architecture here adds it to every framework."""
    return {arch: type(entry.class_name, (base,), {"arch": arch, "__module__": module, "__qualname__": entry.class_name})
            for arch, entry in ARCHITECTURES.items()}


def variants(arch: str):
    return ARCHITECTURES[check(arch)].variants


@lru_cache(maxsize=None)
def tensor_variants(arch: str, aux_logits: bool = False):
    """Variants of ``arch`` whose tensor set differs from the default's, so that the tensors alone
    name them (bn_inception's "caffe" has conv biases). Variants that change only the computation
    (inception_v3's "keras") read as "default" from a native file that does not record it."""
    base = canonical_shapes(model_spec(arch, aux_logits=aux_logits)).keys()
    return tuple(v for v in variants(arch) if v != "default"
                 and canonical_shapes(model_spec(arch, variant=v, aux_logits=aux_logits)).keys() != base)
