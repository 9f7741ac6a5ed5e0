"""Inception-ResNet-v2 (Szegedy et al. 2016), written down once as timm's ``inception_resnet_v2``.

timm's layers and names: the stem, ``mixed_5b``, ten Block35 in ``repeat``, ``mixed_6a``, twenty
Block17 in ``repeat_1``, ``mixed_7a``, nine Block8 in ``repeat_2``, a last Block8 with scale 1 and
no ReLU, ``conv2d_7b`` and the ``classif`` head. Conventions as Inception-v4's
(``impls.spec.inception_v4``): BN eps 1e-3, explicit torch padding, avg pools without the padding
in the divisor, input in [-1, 1].
"""
from __future__ import annotations

from .blocks import Branches, Residual, seq
from .inception_v4 import AVGPOOL, MAXPOOL, InceptionV4Config, conv_factory, resolve
from .layers import Conv2d, Dropout, GlobalAvgPool, Linear
from .model import ModelSpec

CONFIGS = {
    "default": InceptionV4Config(
        name="inception_resnet_v2", classifier="classif",
        notes="timm inception_resnet_v2.tf_in1k (TF-slim weights, input in [-1, 1])"),
    # keras.applications.InceptionResNetV2: timm's layers, branch order and residual scales, and its
    # paddings are torch's (stride-2 convs and pools 'valid', stride-1 convs 'same' with odd kernels,
    # the 3x3/1 avg pool 'same' = count_include_pad=False); only its BN has no gamma (scale=False).
    "keras": InceptionV4Config(
        name="inception_resnet_v2_keras", classifier="classif", bn_scale=False,
        padding_convention="torch symmetric (= Keras 'same' at stride 1, 'valid' at stride 2); max pools 3x3/2 "
                           "floor mode; avg pools count_include_pad=False",
        notes="keras.applications.InceptionResNetV2 (classifier_activation=None: logits); BN gamma fixed at 1 "
        "(scale=False); input in [-1, 1] (keras' preprocess_input)"),
}
ALIASES = {"timm": "default"}

# Residual scales (Section 3.3 of the paper: scaling the residuals by 0.1-0.3 stabilises training).
SCALES = {"block35": 0.17, "block17": 0.10, "block8": 0.20}
REPEATS = {"repeat": 10, "repeat_1": 20, "repeat_2": 9}


def irv2_blocks(eps):
    c = conv_factory(eps)

    def mixed_5b():  # 192 -> 96 + 64 + 96 + 64 = 320
        return Branches(192, (
            (("branch0", c(192, 96)),),
            (("branch1", seq(c(192, 48), c(48, 64, 5, 1, 2))),),
            (("branch2", seq(c(192, 64), c(64, 96, 3, 1, 1), c(96, 96, 3, 1, 1))),),
            (("branch3", seq(AVGPOOL, c(192, 64))),),
        ), "Mixed_5b")

    def block35(scale=SCALES["block35"]):  # 320 -> 32 + 32 + 64 = 128 -> 1x1 -> 320
        return Residual(320, (
            (("branch0", c(320, 32)),),
            (("branch1", seq(c(320, 32), c(32, 32, 3, 1, 1))),),
            (("branch2", seq(c(320, 32), c(32, 48, 3, 1, 1), c(48, 64, 3, 1, 1))),),
        ), "Block35", Conv2d(128, 320), scale)

    def mixed_6a():  # 320 -> 384 + 384 + 320 (pool) = 1088, 35 -> 17
        return Branches(320, (
            (("branch0", c(320, 384, 3, 2)),),
            (("branch1", seq(c(320, 256), c(256, 256, 3, 1, 1), c(256, 384, 3, 2))),),
            (("branch2", MAXPOOL),),
        ), "Mixed_6a")

    def block17(scale=SCALES["block17"]):  # 1088 -> 192 + 192 = 384 -> 1x1 -> 1088
        return Residual(1088, (
            (("branch0", c(1088, 192)),),
            (("branch1", seq(c(1088, 128), c(128, 160, (1, 7), 1, (0, 3)), c(160, 192, (7, 1), 1, (3, 0)))),),
        ), "Block17", Conv2d(384, 1088), scale)

    def mixed_7a():  # 1088 -> 384 + 288 + 320 + 1088 (pool) = 2080, 17 -> 8
        return Branches(1088, (
            (("branch0", seq(c(1088, 256), c(256, 384, 3, 2))),),
            (("branch1", seq(c(1088, 256), c(256, 288, 3, 2))),),
            (("branch2", seq(c(1088, 256), c(256, 288, 3, 1, 1), c(288, 320, 3, 2))),),
            (("branch3", MAXPOOL),),
        ), "Mixed_7a")

    def block8(scale=SCALES["block8"], relu=True):  # 2080 -> 192 + 256 = 448 -> 1x1 -> 2080
        return Residual(2080, (
            (("branch0", c(2080, 192)),),
            (("branch1", seq(c(2080, 192), c(192, 224, (1, 3), 1, (0, 1)), c(224, 256, (3, 1), 1, (1, 0)))),),
        ), "Block8", Conv2d(448, 2080), scale, relu)

    return dict(mixed_5b=mixed_5b, block35=block35, mixed_6a=mixed_6a, block17=block17, mixed_7a=mixed_7a,
                block8=block8)


def inception_resnet_v2_stages(cfg: InceptionV4Config, num_classes: int, dropout: float):
    c, b = conv_factory(cfg.bn_eps), irv2_blocks(cfg.bn_eps)
    return [
        ("conv2d_1a", c(3, 32, 3, 2)),  # N,32,149,149
        ("conv2d_2a", c(32, 32, 3)),  # N,32,147,147
        ("conv2d_2b", c(32, 64, 3, 1, 1)),
        ("maxpool_3a", MAXPOOL),  # N,64,73,73
        ("conv2d_3b", c(64, 80)),
        ("conv2d_4a", c(80, 192, 3)),  # N,192,71,71
        ("maxpool_5a", MAXPOOL),  # N,192,35,35
        ("mixed_5b", b["mixed_5b"]()),  # N,320,35,35
        ("repeat", seq(*(b["block35"]() for _ in range(REPEATS["repeat"])))),
        ("mixed_6a", b["mixed_6a"]()),  # N,1088,17,17
        ("repeat_1", seq(*(b["block17"]() for _ in range(REPEATS["repeat_1"])))),
        ("mixed_7a", b["mixed_7a"]()),  # N,2080,8,8
        ("repeat_2", seq(*(b["block8"]() for _ in range(REPEATS["repeat_2"])))),
        ("block8", b["block8"](scale=1.0, relu=False)),  # timm Block8(no_relu=True), scale 1
        ("conv2d_7b", c(2080, cfg.num_features)),  # N,1536,8,8
        ("global_pool", GlobalAvgPool()),
        ("head_drop", Dropout(dropout)),
        (cfg.classifier, Linear(cfg.num_features, num_classes)),
    ]


def inception_resnet_v2_spec(variant="default", num_classes=1000, aux_logits=False, transform_input=None,
                             dropout=None, dropout_aux=None) -> ModelSpec:
    """``aux_logits`` and ``dropout_aux`` are accepted for a uniform factory signature and ignored:
    this network has no auxiliary classifier."""
    name, cfg = resolve("inception_resnet_v2", CONFIGS, ALIASES, variant, transform_input)
    return ModelSpec(
        arch="inception_resnet_v2", variant=name,
        stages=tuple(inception_resnet_v2_stages(cfg, num_classes, cfg.dropout if dropout is None else dropout)),
        aux_heads={}, output_fields=(("logits", None),), transform_input=False, num_classes=num_classes,
        config=cfg)
