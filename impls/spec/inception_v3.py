"""Inception v3, written down once: torchvision's ``inception_v3`` (Szegedy et al. 2015,
"Rethinking the Inception Architecture for Computer Vision"), as ported from the TF release.

State_dict keys and shapes are torchvision's (and timm's ``inception_v3.tv_in1k``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

from .blocks import AuxHeadV3, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE
from .googlenet import TRANSFORM_INPUT_SCALE, TRANSFORM_INPUT_SHIFT
from .layers import ConvBlock, Dropout, GlobalAvgPool, Linear, MaxPool

# The stem: name -> (in, out, kernel, stride, padding). No padding but Conv2d_2b's: 299 -> 35
# through valid convs and pools, as in the TF graph.
STEM_TABLE = {
    "Conv2d_1a_3x3": (3, 32, 3, 2, 0),
    "Conv2d_2a_3x3": (32, 32, 3, 1, 0),
    "Conv2d_2b_3x3": (32, 64, 3, 1, 1),
    "Conv2d_3b_1x1": (64, 80, 1, 1, 0),
    "Conv2d_4a_3x3": (80, 192, 3, 1, 0),
}

# name -> (block type, in_channels, its free argument: pool_features / channels_7x7 / none).
MIXED_TABLE = {
    "Mixed_5b": (InceptionA, 192, 32),
    "Mixed_5c": (InceptionA, 256, 64),
    "Mixed_5d": (InceptionA, 288, 64),
    "Mixed_6a": (InceptionB, 288),
    "Mixed_6b": (InceptionC, 768, 128),
    "Mixed_6c": (InceptionC, 768, 160),
    "Mixed_6d": (InceptionC, 768, 160),
    "Mixed_6e": (InceptionC, 768, 192),
    "Mixed_7a": (InceptionD, 768),
    "Mixed_7b": (InceptionE, 1280),
    "Mixed_7c": (InceptionE, 2048),
}


@dataclass(frozen=True)
class InceptionV3Config:
    """Checkpoint and architecture facts of Inception v3, as data (cf. timm ``_cfg``)."""

    name: str = "inception_v3"
    bn_eps: float = 1e-3
    dropout: float = 0.5
    # torchvision turns this on only when loading its pretrained weights (trained on [-1, 1] input).
    transform_input: bool = False
    transform_scale: Tuple[float, float, float] = TRANSFORM_INPUT_SCALE
    transform_shift: Tuple[float, float, float] = TRANSFORM_INPUT_SHIFT
    # Facts a converted checkpoint carries (documentation and ``diagnose``): not used in forward.
    input_size: Tuple[int, int, int] = (3, 299, 299)
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)
    label_offset: int = 0
    # The avg pool in front of every ``branch_pool``: does the divisor count the zero padding?
    # torch's default (torchvision, timm) yes; Keras/TF AveragePooling2D(padding='same') no.
    avg_pool_count_include_pad: bool = True
    # False where the peer's BN has no gamma (Keras ``scale=False``): gamma is 1 by construction.
    bn_scale: bool = True
    # Whether the peer has the auxiliary classifier at all.
    has_aux: bool = True
    padding_convention: str = "torch symmetric; max pools floor mode; avg pools count_include_pad=True"
    notes: str = field(default=(
        "torchvision inception_v3; its pretrained weights expect transform_input=True with ImageNet mean/std "
        "(equivalently timm tv_in1k's mean=std=0.5 without the transform)"), compare=False)


# Variant name (the neutral config.json's ``variant``) -> checkpoint facts. "default" is
# torchvision's and timm's network (timm's tf_/adv_/gluon_ weights included: same architecture,
# same padding). "keras" is keras.applications.InceptionV3: the same layers, but its
# AveragePooling2D(padding='same') leaves the padding out of the divisor, its BN has no gamma,
# it has no aux head and its weights expect input in [-1, 1] (``preprocess_input``: x/127.5 - 1).
# Its other paddings equal torch's: stride-2 convs and pools 'valid', stride-1 convs 'same'
# (symmetric for the odd kernels used), max pools 'valid'.
CONFIGS = {
    "inception_v3": InceptionV3Config(),
    "keras": InceptionV3Config(
        name="inception_v3_keras", avg_pool_count_include_pad=False, bn_scale=False, has_aux=False,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        padding_convention="torch symmetric (= Keras 'same' at stride 1, 'valid' at stride 2); max pools floor "
                           "mode; avg pools count_include_pad=False",
        notes="keras.applications.InceptionV3 (classifier_activation=None: logits, no softmax); no aux head, "
              "BN gamma fixed at 1 (scale=False); input in [-1, 1] (keras' preprocess_input)"),
}
VARIANTS = {"default": "inception_v3", "torchvision": "inception_v3", "timm": "inception_v3", "keras": "keras"}


def config_for(variant: str = "default") -> InceptionV3Config:
    if variant not in VARIANTS:
        raise ValueError(f"unknown inception_v3 variant {variant!r}; known: {', '.join(VARIANTS)}")
    return CONFIGS[VARIANTS[variant]]


def inception_v3_stages(cfg: InceptionV3Config, num_classes: int, dropout: float):
    """The trunk in forward order as (name, layer spec). Names are torchvision's attributes."""
    conv = lambda name: ConvBlock(*STEM_TABLE[name], batch_norm=True, bn_eps=cfg.bn_eps)
    def mixed(name):
        block, *args = MIXED_TABLE[name]
        kw = {"pool_count_include_pad": cfg.avg_pool_count_include_pad} if block in (InceptionA, InceptionC, InceptionE) else {}
        return name, block(*args, bn_eps=cfg.bn_eps, **kw)

    pool = MaxPool(3, 2, 0, ceil_mode=False)
    stages = [(n, conv(n)) for n in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3")]  # N,64,147,147
    stages.append(("maxpool1", pool))  # N,64,73,73
    stages += [(n, conv(n)) for n in ("Conv2d_3b_1x1", "Conv2d_4a_3x3")]  # N,192,71,71
    stages.append(("maxpool2", pool))  # N,192,35,35
    stages += [mixed(n) for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d")]  # N,288,35,35
    stages += [mixed(n) for n in ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")]  # N,768,17,17
    stages += [mixed(n) for n in ("Mixed_7a", "Mixed_7b", "Mixed_7c")]  # N,2048,8,8
    stages += [
        ("avgpool", GlobalAvgPool()),  # N,2048 (torchvision pools to 1x1, drops out, then flattens)
        ("dropout", Dropout(dropout)),
        ("fc", Linear(2048, num_classes)),  # N,num_classes
    ]
    return stages


def inception_v3_spec(num_classes=1000, aux_logits=True, transform_input=None, dropout=None, variant="default"):
    from . import ModelSpec

    cfg = config_for(variant or "default")
    return ModelSpec(
        arch="inception_v3",
        stages=tuple(inception_v3_stages(cfg, num_classes, cfg.dropout if dropout is None else dropout)),
        aux_heads={"AuxLogits": ("Mixed_6e", AuxHeadV3(768, num_classes, cfg.bn_eps))} if aux_logits else {},
        output_fields=(("logits", None), ("aux_logits", "AuxLogits")),  # torchvision's InceptionOutputs
        transform_input=cfg.transform_input if transform_input is None else transform_input,
        num_classes=num_classes,
        config=cfg,
        output_name="InceptionOutputs",
    )
