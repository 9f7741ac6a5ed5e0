"""Inception-v4 and Inception-ResNet-v2 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and
the Impact of Residual Connections on Learning"), written down once, as timm's ``inception_v4`` and
``inception_resnet_v2`` (ported from the TF-slim release by Cadene's ``pretrainedmodels``).

State_dict keys and shapes are timm's, so timm checkpoints load with ``strict=True``. All convs
are conv (no bias) + BN (eps 1e-3) + ReLU with explicit torch padding; the 3x3 avg pools in front
of a pool projection leave the padding out of the divisor (``count_include_pad=False``, as TF);
max pools are 3x3/2 valid. No aux heads; the head is global average pool, dropout (timm's
``drop_rate``, 0 by default) and a linear classifier (``last_linear`` / ``classif``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

from .blocks import Split
from .blocks_v4 import Branches, Conv2d, Residual
from .layers import AvgPool, ConvBlock, Dropout, GlobalAvgPool, Linear, MaxPool

INCEPTION_MEAN = (0.5, 0.5, 0.5)  # timm IMAGENET_INCEPTION_MEAN / STD: input in [-1, 1]
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class InceptionV4Config:
    """Checkpoint and architecture facts (cf. timm ``default_cfgs``)."""

    name: str = "inception_v4"
    bn_eps: float = 1e-3
    dropout: float = 0.0  # timm's drop_rate default
    transform_input: bool = False
    input_size: Tuple[int, int, int] = (3, 299, 299)
    mean: Tuple[float, float, float] = INCEPTION_MEAN
    std: Tuple[float, float, float] = INCEPTION_STD
    label_offset: int = 0
    bn_scale: bool = True
    has_aux: bool = False
    num_features: int = 1536
    classifier: str = "last_linear"
    padding_convention: str = "torch symmetric; max pools 3x3/2 floor mode; avg pools count_include_pad=False"
    notes: str = field(default="timm inception_v4.tf_in1k (TF-slim weights, input in [-1, 1])", compare=False)


CONFIGS = {
    "inception_v4": InceptionV4Config(),
    "inception_resnet_v2": InceptionV4Config(
        name="inception_resnet_v2", classifier="classif",
        notes="timm inception_resnet_v2.tf_in1k (TF-slim weights, input in [-1, 1])"),
    # keras.applications.InceptionResNetV2: timm's layers, branch order and residual scales, and its
    # paddings are torch's (stride-2 convs and pools 'valid', stride-1 convs 'same' with odd kernels,
    # the 3x3/1 avg pool 'same' = count_include_pad=False); only its BN has no gamma (scale=False).
    "inception_resnet_v2_keras": InceptionV4Config(
        name="inception_resnet_v2_keras", classifier="classif", bn_scale=False,
        padding_convention="torch symmetric (= Keras 'same' at stride 1, 'valid' at stride 2); max pools 3x3/2 "
                           "floor mode; avg pools count_include_pad=False",
        notes="keras.applications.InceptionResNetV2 (classifier_activation=None: logits); BN gamma fixed at 1 "
              "(scale=False); input in [-1, 1] (keras' preprocess_input)"),
}
# Variant name (the neutral config.json's ``variant``) -> CONFIGS key, per architecture.
VARIANTS = {
    "inception_v4": {"default": "inception_v4", "timm": "inception_v4"},
    "inception_resnet_v2": {"default": "inception_resnet_v2", "timm": "inception_resnet_v2",
                            "keras": "inception_resnet_v2_keras"},
}


def _conv(eps):
    def conv(cin, cout, k=1, s=1, p=0):
        return ConvBlock(cin, cout, k, s, p, True, eps)
    return conv


_MAXPOOL = MaxPool(3, 2, 0, ceil_mode=False)
_AVGPOOL = AvgPool(3, 1, 1, ceil_mode=False, count_include_pad=False)


# --- Inception-v4 (timm inception_v4.py) ----------------------------------------------------

def v4_blocks(eps):
    """name -> block factory; names are timm's classes (``features.<i>`` in the state_dict)."""
    c = _conv(eps)

    def mixed3a():  # 64 -> 64 (pool) + 96 = 160
        return Branches(64, ((("maxpool", _MAXPOOL),), (("conv", c(64, 96, 3, 2)),)), eps)

    def mixed4a():  # 160 -> 96 + 96 = 192
        return Branches(160, (
            (("branch0", (c(160, 64), c(64, 96, 3))),),
            (("branch1", (c(160, 64), c(64, 64, (1, 7), 1, (0, 3)), c(64, 64, (7, 1), 1, (3, 0)), c(64, 96, 3))),),
        ), eps)

    def mixed5a():  # 192 -> 192 + 192 (pool) = 384
        return Branches(192, ((("conv", c(192, 192, 3, 2)),), (("maxpool", _MAXPOOL),)), eps)

    def inception_a():  # 384 -> 4 x 96
        return Branches(384, (
            (("branch0", c(384, 96)),),
            (("branch1", (c(384, 64), c(64, 96, 3, 1, 1))),),
            (("branch2", (c(384, 64), c(64, 96, 3, 1, 1), c(96, 96, 3, 1, 1))),),
            (("branch3", (_AVGPOOL, c(384, 96))),),
        ), eps)

    def reduction_a():  # 384 -> 384 + 256 + 384 (pool) = 1024, 35 -> 17
        return Branches(384, (
            (("branch0", c(384, 384, 3, 2)),),
            (("branch1", (c(384, 192), c(192, 224, 3, 1, 1), c(224, 256, 3, 2))),),
            (("branch2", _MAXPOOL),),
        ), eps)

    def inception_b():  # 1024 -> 384 + 256 + 256 + 128
        return Branches(1024, (
            (("branch0", c(1024, 384)),),
            (("branch1", (c(1024, 192), c(192, 224, (1, 7), 1, (0, 3)), c(224, 256, (7, 1), 1, (3, 0)))),),
            (("branch2", (c(1024, 192), c(192, 192, (7, 1), 1, (3, 0)), c(192, 224, (1, 7), 1, (0, 3)),
                          c(224, 224, (7, 1), 1, (3, 0)), c(224, 256, (1, 7), 1, (0, 3)))),),
            (("branch3", (_AVGPOOL, c(1024, 128))),),
        ), eps)

    def reduction_b():  # 1024 -> 192 + 320 + 1024 (pool) = 1536, 17 -> 8
        return Branches(1024, (
            (("branch0", (c(1024, 192), c(192, 192, 3, 2))),),
            (("branch1", (c(1024, 256), c(256, 256, (1, 7), 1, (0, 3)), c(256, 320, (7, 1), 1, (3, 0)),
                          c(320, 320, 3, 2))),),
            (("branch2", _MAXPOOL),),
        ), eps)

    def inception_c():  # 1536 -> 256 + 512 + 512 + 256, flat attributes as timm's
        split = lambda a, b, cin: Split(((a, c(cin, 256, (1, 3), 1, (0, 1))), (b, c(cin, 256, (3, 1), 1, (1, 0)))))
        return Branches(1536, (
            (("branch0", c(1536, 256)),),
            (("branch1_0", c(1536, 384)), split("branch1_1a", "branch1_1b", 384)),
            (("branch2_0", c(1536, 384)), ("branch2_1", c(384, 448, (3, 1), 1, (1, 0))),
             ("branch2_2", c(448, 512, (1, 3), 1, (0, 1))), split("branch2_3a", "branch2_3b", 512)),
            (("branch3", (_AVGPOOL, c(1536, 256))),),
        ), eps)

    return dict(Mixed3a=mixed3a, Mixed4a=mixed4a, Mixed5a=mixed5a, InceptionA=inception_a, ReductionA=reduction_a,
                InceptionB=inception_b, ReductionB=reduction_b, InceptionC=inception_c)


# timm's ``features`` Sequential after the three stem convs: (block, repeats).
V4_LAYOUT = (("Mixed3a", 1), ("Mixed4a", 1), ("Mixed5a", 1), ("InceptionA", 4), ("ReductionA", 1),
             ("InceptionB", 7), ("ReductionB", 1), ("InceptionC", 3))
# The stem convs: (in, out, kernel, stride, padding); 299 -> 147.
V4_STEM = ((3, 32, 3, 2, 0), (32, 32, 3, 1, 0), (32, 64, 3, 1, 1))


def inception_v4_stages(cfg: InceptionV4Config, num_classes: int, dropout: float):
    c, blocks = _conv(cfg.bn_eps), v4_blocks(cfg.bn_eps)
    features = [c(*row) for row in V4_STEM]  # N,64,147,147
    for name, n in V4_LAYOUT:  # 73 (160) -> 71 (192) -> 35 (384) -> 17 (1024) -> 8 (1536)
        features += [blocks[name]() for _ in range(n)]
    return [
        ("features", tuple(features)),  # N,1536,8,8
        ("global_pool", GlobalAvgPool()),  # N,1536
        ("head_drop", Dropout(dropout)),
        (cfg.classifier, Linear(cfg.num_features, num_classes)),
    ]


# --- Inception-ResNet-v2 (timm inception_resnet_v2.py) ----------------------------------------

# Residual scales (Section 3.3 of the paper: scaling the residuals by 0.1-0.3 stabilises training).
IRV2_SCALES = {"block35": 0.17, "block17": 0.10, "block8": 0.20}
IRV2_REPEATS = {"repeat": 10, "repeat_1": 20, "repeat_2": 9}


def irv2_blocks(eps):
    c = _conv(eps)

    def mixed_5b():  # 192 -> 96 + 64 + 96 + 64 = 320
        return Branches(192, (
            (("branch0", c(192, 96)),),
            (("branch1", (c(192, 48), c(48, 64, 5, 1, 2))),),
            (("branch2", (c(192, 64), c(64, 96, 3, 1, 1), c(96, 96, 3, 1, 1))),),
            (("branch3", (_AVGPOOL, c(192, 64))),),
        ), eps)

    def block35(scale=IRV2_SCALES["block35"]):  # 320 -> 32 + 32 + 64 = 128 -> 1x1 -> 320
        return Residual(320, (
            (("branch0", c(320, 32)),),
            (("branch1", (c(320, 32), c(32, 32, 3, 1, 1))),),
            (("branch2", (c(320, 32), c(32, 48, 3, 1, 1), c(48, 64, 3, 1, 1))),),
        ), eps, Conv2d(128, 320), scale)

    def mixed_6a():  # 320 -> 384 + 384 + 320 (pool) = 1088, 35 -> 17
        return Branches(320, (
            (("branch0", c(320, 384, 3, 2)),),
            (("branch1", (c(320, 256), c(256, 256, 3, 1, 1), c(256, 384, 3, 2))),),
            (("branch2", _MAXPOOL),),
        ), eps)

    def block17(scale=IRV2_SCALES["block17"]):  # 1088 -> 192 + 192 = 384 -> 1x1 -> 1088
        return Residual(1088, (
            (("branch0", c(1088, 192)),),
            (("branch1", (c(1088, 128), c(128, 160, (1, 7), 1, (0, 3)), c(160, 192, (7, 1), 1, (3, 0)))),),
        ), eps, Conv2d(384, 1088), scale)

    def mixed_7a():  # 1088 -> 384 + 288 + 320 + 1088 (pool) = 2080, 17 -> 8
        return Branches(1088, (
            (("branch0", (c(1088, 256), c(256, 384, 3, 2))),),
            (("branch1", (c(1088, 256), c(256, 288, 3, 2))),),
            (("branch2", (c(1088, 256), c(256, 288, 3, 1, 1), c(288, 320, 3, 2))),),
            (("branch3", _MAXPOOL),),
        ), eps)

    def block8(scale=IRV2_SCALES["block8"], relu=True):  # 2080 -> 192 + 256 = 448 -> 1x1 -> 2080
        return Residual(2080, (
            (("branch0", c(2080, 192)),),
            (("branch1", (c(2080, 192), c(192, 224, (1, 3), 1, (0, 1)), c(224, 256, (3, 1), 1, (1, 0)))),),
        ), eps, Conv2d(448, 2080), scale, relu)

    return dict(mixed_5b=mixed_5b, block35=block35, mixed_6a=mixed_6a, block17=block17, mixed_7a=mixed_7a,
                block8=block8)


def inception_resnet_v2_stages(cfg: InceptionV4Config, num_classes: int, dropout: float):
    c, b = _conv(cfg.bn_eps), irv2_blocks(cfg.bn_eps)
    return [
        ("conv2d_1a", c(3, 32, 3, 2)),  # N,32,149,149
        ("conv2d_2a", c(32, 32, 3)),  # N,32,147,147
        ("conv2d_2b", c(32, 64, 3, 1, 1)),
        ("maxpool_3a", _MAXPOOL),  # N,64,73,73
        ("conv2d_3b", c(64, 80)),
        ("conv2d_4a", c(80, 192, 3)),  # N,192,71,71
        ("maxpool_5a", _MAXPOOL),  # N,192,35,35
        ("mixed_5b", b["mixed_5b"]()),  # N,320,35,35
        ("repeat", tuple(b["block35"]() for _ in range(IRV2_REPEATS["repeat"]))),
        ("mixed_6a", b["mixed_6a"]()),  # N,1088,17,17
        ("repeat_1", tuple(b["block17"]() for _ in range(IRV2_REPEATS["repeat_1"]))),
        ("mixed_7a", b["mixed_7a"]()),  # N,2080,8,8
        ("repeat_2", tuple(b["block8"]() for _ in range(IRV2_REPEATS["repeat_2"]))),
        ("block8", b["block8"](scale=1.0, relu=False)),  # timm Block8(no_relu=True), scale 1
        ("conv2d_7b", c(2080, cfg.num_features)),  # N,1536,8,8
        ("global_pool", GlobalAvgPool()),
        ("head_drop", Dropout(dropout)),
        (cfg.classifier, Linear(cfg.num_features, num_classes)),
    ]


STAGES = {"inception_v4": inception_v4_stages, "inception_resnet_v2": inception_resnet_v2_stages}


def spec_builder(arch):
    """``model_spec`` builder for ``arch``. ``aux_logits`` is accepted for a uniform factory signature
    and ignored: these networks have no auxiliary classifier."""

    def build(num_classes=1000, aux_logits=False, transform_input=None, dropout=None, variant="default"):
        from . import ModelSpec

        if (variant or "default") not in VARIANTS[arch]:
            raise ValueError(f"unknown {arch} variant {variant!r}; known: {', '.join(VARIANTS[arch])}")
        if transform_input:
            raise ValueError(f"{arch} has no transform_input (its weights expect input in [-1, 1])")
        cfg = CONFIGS[VARIANTS[arch][variant or "default"]]
        return ModelSpec(
            arch=arch,
            stages=tuple(STAGES[arch](cfg, num_classes, cfg.dropout if dropout is None else dropout)),
            aux_heads={},
            output_fields=(("logits", None),),
            transform_input=False,
            num_classes=num_classes,
            config=cfg,
            # Capture reports each stem conv and Inception/Reduction block, not the one Sequential.
            capture_children=("features",) if arch == "inception_v4" else (),
        )

    return build
