"""Checkpoint facts and architecture switches of one model variant, as data (cf. timm's
``default_cfg``): one base dataclass here, one subclass per architecture family beside it.

The *facts* (``FACTS``) are what a user of a converted file needs to feed it: input size,
normalisation, label offset and the padding convention. The bridge writes them into the neutral
``config.json`` and reads them back; everything else is the architecture's own switches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# timm's IMAGENET_INCEPTION_MEAN / STD: input scaled to [-1, 1], as the TF-slim weights expect.
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

# torchvision's ``transform_input``: re-normalise ImageNet-normalised input to the [-1, 1] range
# the original (Caffe/TF) weights were trained on, per channel: x * scale + shift.
TRANSFORM_INPUT_SCALE = tuple(s / 0.5 for s in IMAGENET_STD)
TRANSFORM_INPUT_SHIFT = tuple((m - 0.5) / 0.5 for m in IMAGENET_MEAN)

# The facts config.json carries: name -> (JSON type, length for sequences or None).
FACTS = {"input_size": (int, 3), "input_space": (str, None), "mean": (float, 3), "std": (float, 3),
         "label_offset": (int, None), "padding_convention": (str, None)}


def fact_type_error(name: str, value):
    """None if ``value`` has the JSON shape ``FACTS`` gives ``name``; else what was expected
    ("a list of 3 floats"). Shape only: whether the value makes sense is the caller's to say."""
    typ, length = FACTS[name]
    one = lambda v: isinstance(v, typ if typ is not float else (int, float)) and not isinstance(v, bool)  # noqa: E731
    ok = one(value) if length is None else \
        isinstance(value, list) and len(value) == length and all(map(one, value))
    return None if ok else (f"a list of {length} {typ.__name__}s" if length else typ.__name__)


@dataclass(frozen=True)
class CheckpointConfig:
    """What every variant of every architecture states about itself."""

    name: str
    bn_eps: float = 1e-3
    dropout: float = 0.0
    transform_input: bool = False
    transform_scale: Tuple[float, float, float] = TRANSFORM_INPUT_SCALE
    transform_shift: Tuple[float, float, float] = TRANSFORM_INPUT_SHIFT
    input_size: Tuple[int, int, int] = (3, 224, 224)
    input_space: str = "RGB"  # channel order the weights expect ("BGR": Caffe ports)
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    label_offset: int = 0  # 1: a 1001-class TF-slim head whose class 0 is "background"
    padding_convention: str = "torch symmetric"
    # False where the peer's BN has no gamma (Keras ``scale=False``): gamma is 1 by construction.
    bn_scale: bool = True
    has_aux: bool = False  # whether the peer's checkpoints carry the auxiliary classifier
    verify_sizes: Tuple[int, ...] = ()  # eval sizes ``verify`` runs; () = native and native - 25
    notes: str = field(default="", compare=False)

    def facts(self) -> dict:
        """The facts config.json carries, as JSON values."""
        return {name: list(getattr(self, name)) if length else getattr(self, name)
                for name, (_, length) in FACTS.items()}
