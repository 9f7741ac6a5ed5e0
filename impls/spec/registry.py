"""Every architecture by name: its spec builder and its checkpoint variants. Adding an
architecture is one entry here (docs/architecture.md)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Tuple

from . import bn_inception, googlenet, inception_resnet_v2, inception_v3, inception_v4
from .layers import Dropout
from .model import ModelSpec
from .tensors import canonical_shapes

# The package our classes are registered under where a framework saves them by name (Keras's
# ``register_keras_serializable``: "inception_bridge>GoogLeNet"); readers check names against it.
SERIALIZATION_PACKAGE = "inception_bridge"


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


def spec_arguments(spec: ModelSpec) -> dict:
    """The ``model_spec`` keywords that rebuild ``spec`` (one ``model_spec`` made, or
    ``transfer.with_num_classes`` of one): what a saved model records so that loading it builds
    the same network. Dropout rates are read off the nodes. ValueError if none rebuild it."""
    def rates(nodes):
        found, stack = set(), list(nodes)
        while stack:
            node = stack.pop()
            if isinstance(node, Dropout):
                found.add(node.rate)
            stack += [child for _, child in node.children()]
        return found

    args = {"variant": spec.variant, "num_classes": spec.num_classes, "aux_logits": bool(spec.aux_heads),
            "transform_input": spec.transform_input}
    for key, found in (("dropout", rates(node for _, node in spec.stages)),
                       ("dropout_aux", rates(head for _, head in spec.aux_heads.values()))):
        if len(found) == 1:
            args[key] = found.pop()
    if model_spec(spec.arch, **args) != spec:
        raise ValueError(f"{spec.arch}: this spec is not one model_spec builds from keywords ({args}); "
                         f"it cannot be saved as a configuration")
    return args


def variants(arch: str):
    return ARCHITECTURES[check(arch)].variants


@lru_cache(maxsize=None)
def tensor_variants(arch: str, aux_logits: bool = False):
    """Variants of ``arch`` whose tensor set differs from the default's, so that the tensors alone
    name them (bn_inception's "caffe" has conv biases). Variants that change only the computation
    (inception_v3's "keras") read as "default" from a native file that does not record it."""
    base = canonical_shapes(model_spec(arch, aux_logits=aux_logits)).keys()

    def names(variant):
        try:
            return canonical_shapes(model_spec(arch, variant=variant, aux_logits=aux_logits)).keys()
        except ValueError:  # a variant without this head (inception_v3's "fid" has no aux head)
            return base

    return tuple(v for v in variants(arch) if v != "default" and names(v) != base)
