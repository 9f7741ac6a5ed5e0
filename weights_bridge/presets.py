"""The peers' published weight sets by name, with the checkpoint facts each states, and applying
facts to a checkpoint.

A native file (.pth, .msgpack, .weights.h5) holds tensors only. Nothing in torchvision's
pretrained GoogLeNet ``state_dict`` says that ``googlenet(weights=...)`` turns ``transform_input``
on, so a conversion that only reads the file gives a Flax or Keras model that normalises its input
differently from the model the user had. ``convert --preset NAME`` (or the single facts) writes
them into the neutral config.json, where every framework's loader reads them back.

Names are ``<library>:<weight set>``, the library as ``--from`` names it, the weight set as the
library does (torchvision's ``*_Weights`` enum members, timm's pretrained tags,
keras.applications' ``weights="imagenet"``, pretrainedmodels' ``pretrained="imagenet"``). Every
number is the library's own, copied from where ``source`` says;
``conformance/tests/test_presets.py`` checks each against the installed library.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Tuple

from impls.spec import model_spec
from impls.spec.config import fact_type_error

from .checkpoint import Checkpoint
from .errors import BridgeError, WeightsMismatchError


@dataclass(frozen=True)
class Preset:
    """The facts a weight set is published with: what its users feed it."""

    variant: str  # the checkpoint variant these weights are (keras.applications': "keras")
    transform_input: bool
    input_size: Tuple[int, int, int]  # C, H, W of the evaluation crop
    mean: Tuple[float, float, float]  # on input scaled to [0, 1] (pretrainedmodels' Caffe port: 0..255)
    std: Tuple[float, float, float]
    label_offset: int = 0
    input_space: str = "RGB"
    source: str = ""

    def facts(self) -> dict:
        """transform_input and the checkpoint facts it fixes, as JSON values."""
        return {"transform_input": self.transform_input, "input_size": list(self.input_size),
                "input_space": self.input_space, "mean": list(self.mean), "std": list(self.std),
                "label_offset": self.label_offset}


def _timm(arch: str, tag: str, imagenet: bool = False) -> Preset:
    """timm's pretrained_cfg of ``arch.tag``: 299 pixels; TF-slim's mean = std = 0.5
    (IMAGENET_INCEPTION_MEAN/STD: input in [-1, 1]) unless ``imagenet`` (IMAGENET_DEFAULT_MEAN/STD)."""
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if imagenet else ((0.5,) * 3, (0.5,) * 3)
    stated = "IMAGENET_DEFAULT_MEAN/STD" if imagenet else "mean = std = 0.5 (IMAGENET_INCEPTION_MEAN/STD: input in [-1, 1])"
    return Preset("default", False, (3, 299, 299), mean, std,
                  source=f"timm {arch}.{tag} pretrained_cfg: input_size (3, 299, 299), {stated}")


# (name, architecture) -> Preset. Data: the numbers as each library publishes them.
PRESETS = {
    ("torchvision:IMAGENET1K_V1", "googlenet"): Preset(
        "default", True, (3, 224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        source="torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1: transforms ImageClassification(crop_size=224) "
               "with its default mean/std; googlenet(weights=...) sets transform_input=True"),
    ("torchvision:IMAGENET1K_V1", "inception_v3"): Preset(
        "default", True, (3, 299, 299), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        source="torchvision.models.Inception_V3_Weights.IMAGENET1K_V1: transforms ImageClassification("
               "crop_size=299, resize_size=342) with its default mean/std; inception_v3(weights=...) sets "
               "transform_input=True"),
    # timm's inception_v3 has no transform_input: tv_in1k (torchvision's weights) takes the [-1, 1]
    # input directly, which is what torchvision's transform_input computes from ImageNet-normalised input.
    **{("timm:" + tag, arch): _timm(arch, tag) for arch, tag in (
        ("inception_v3", "tv_in1k"), ("inception_v3", "tf_in1k"), ("inception_v3", "tf_adv_in1k"),
        ("inception_v4", "tf_in1k"), ("inception_resnet_v2", "tf_in1k"), ("inception_resnet_v2", "tf_ens_adv_in1k"))},
    ("timm:gluon_in1k", "inception_v3"): _timm("inception_v3", "gluon_in1k", imagenet=True),
    # preprocess_input(mode="tf"): x / 127.5 - 1 on 0..255 pixels, i.e. (x/255 - 0.5) / 0.5.
    ("keras-applications:imagenet", "inception_v3"): Preset(
        "keras", False, (3, 299, 299), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        source="keras.applications.InceptionV3(weights='imagenet'): default input 299x299; "
               "inception_v3.preprocess_input is imagenet_utils mode 'tf' (x / 127.5 - 1)"),
    ("keras-applications:imagenet", "inception_resnet_v2"): Preset(
        "keras", False, (3, 299, 299), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        source="keras.applications.InceptionResNetV2(weights='imagenet'): default input 299x299; "
               "inception_resnet_v2.preprocess_input is imagenet_utils mode 'tf' (x / 127.5 - 1)"),
    ("pretrainedmodels:imagenet", "bn_inception"): Preset(
        "caffe", False, (3, 224, 224), (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), input_space="BGR",
        source="pretrainedmodels.pretrained_settings['bninception']['imagenet']: input_space BGR, "
               "input_size [3, 224, 224], input_range [0, 255], mean [104, 117, 128], std [1, 1, 1]"),
}
# The facts a caller may set one by one (the rest are the variant's own: its padding, above all).
SETTABLE = ("transform_input", "input_size", "input_space", "mean", "std", "label_offset")


def names(architecture=None):
    return sorted({n for n, arch in PRESETS if architecture in (None, arch)})


def check_name(name: str):
    """Refuses (exit 2) a name no library publishes, before any file is read."""
    if name not in names():
        raise BridgeError(f"unknown preset {name!r}; known: {', '.join(names())}")


def find(name: str, architecture: str) -> Preset:
    check_name(name)
    if (name, architecture) not in PRESETS:
        archs = ", ".join(arch for n, arch in PRESETS if n == name)
        raise BridgeError(f"preset {name!r} is published for {archs}, not {architecture}")
    return PRESETS[(name, architecture)]


def variant_for(name: str, architecture: str, variant=None) -> str:
    """The variant a preset's weights are; a different ``variant`` asked for is refused (exit 2)."""
    own = find(name, architecture).variant
    if variant and variant != own:
        raise BridgeError(f"preset {name!r} is {architecture} variant {own!r}, not {variant!r}")
    return own


def check_facts(facts: dict, where="checkpoint"):
    """Refuses (exit 2) a value no checkpoint could have (a std of 0, a two-number mean), before
    any file is read."""
    for name, value in (facts or {}).items():
        problem = _value_problem(name, value)
        if problem:
            raise BridgeError(f"{where}: {name} {value!r}: {problem}")


def apply(ckpt: Checkpoint, preset=None, facts=None, where="checkpoint") -> Checkpoint:
    """A copy of ``ckpt`` (tensors shared) with the preset's facts, then ``facts`` (``SETTABLE``
    name -> JSON value) over them. A value that cannot describe this checkpoint is refused: exit 2
    (it came from the caller), or exit 5 where the preset is for another variant of the weights."""
    settings = {}
    if preset:
        own = find(preset, ckpt.architecture)
        if ckpt.variant != own.variant:
            raise WeightsMismatchError(f"{where}: is a {ckpt.variant!r}-variant {ckpt.architecture} checkpoint; "
                                       f"preset {preset!r} is for variant {own.variant!r}")
        settings = own.facts()
    settings.update(facts or {})
    if not settings:
        return ckpt
    check_facts(settings, where)
    for name, value in settings.items():
        problem = _fit_problem(ckpt, name, value)
        if problem:
            raise BridgeError(f"{where}: {name} {value!r}: {problem}")
    out = replace(ckpt, transform_input=settings.pop("transform_input", ckpt.transform_input),
                  facts={**ckpt.checkpoint_facts(), **settings}, extra=dict(ckpt.extra))
    # config.json names a preset only while every fact it states holds: a file that says
    # "torchvision:IMAGENET1K_V1" with another mean would be a file that lies.
    named = preset or out.extra.pop("preset", None)
    if named and (named, out.architecture) in PRESETS and \
            all(out.all_facts()[k] == v for k, v in PRESETS[(named, out.architecture)].facts().items()):
        out.extra["preset"] = named
    return out


def _value_problem(name: str, value):
    """What makes ``value`` wrong for fact ``name`` whatever the checkpoint, or None."""
    if name not in SETTABLE:
        return f"not a fact that can be set (settable: {', '.join(SETTABLE)})"
    if name == "transform_input":
        return None if isinstance(value, bool) else "expected true or false"
    expected = fact_type_error(name, value)
    if expected:
        return f"expected {expected}"
    if name == "input_size" and (value[0] != 3 or min(value) < 1):
        return "expected [3, height, width] with positive sizes"
    if name == "input_space" and value not in ("RGB", "BGR"):
        return "expected RGB or BGR"
    if name in ("mean", "std") and not all(map(math.isfinite, value)):
        return "expected finite numbers"
    if name == "std" and min(value) <= 0:
        return "expected positive numbers (inputs are divided by them)"
    if name == "label_offset" and value < 0:
        return "expected 0 or more"
    return None


def _fit_problem(ckpt: Checkpoint, name: str, value):
    """What makes a valid ``value`` of fact ``name`` wrong for this checkpoint, or None."""
    if name == "transform_input" and value:
        try:
            model_spec(ckpt.architecture, variant=ckpt.variant, transform_input=True)
        except ValueError as e:
            return str(e)
    if name == "label_offset" and value >= ckpt.num_classes:
        return f"expected an offset below num_classes ({ckpt.num_classes})"
    return None
