"""Inception-v4 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning"), written down once as timm's ``inception_v4`` (ported from the TF-slim
release by Cadene's ``pretrainedmodels``).

State_dict keys and shapes are timm's, so timm checkpoints load with ``strict=True``: the trunk is
one ``features`` Sequential of the stem convs and the blocks, each block nests its branches in
Sequentials (``features.3.branch1.0.conv.weight``). All convs are conv (no bias) + BN (eps 1e-3) +
ReLU with explicit torch padding; the 3x3 avg pools in front of a pool projection leave the
padding out of the divisor (``count_include_pad=False``, as TF); max pools are 3x3/2 valid. No aux
head; the head is global average pool, dropout (timm's ``drop_rate``, 0 by default) and a linear
classifier (``last_linear``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .blocks import Branches, Split, seq
from .config import INCEPTION_MEAN, INCEPTION_STD, CheckpointConfig
from .layers import AvgPool, ConvBlock, Dropout, GlobalAvgPool, Linear, MaxPool
from .model import ModelSpec


@dataclass(frozen=True)
class InceptionV4Config(CheckpointConfig):
    """timm's TF-slim family (v4 and Inception-ResNet-v2): input in [-1, 1], 1536 features."""

    input_size: tuple = (3, 299, 299)
    mean: tuple = INCEPTION_MEAN
    std: tuple = INCEPTION_STD
    num_features: int = 1536
    classifier: str = "last_linear"
    padding_convention: str = "torch symmetric; max pools 3x3/2 floor mode; avg pools count_include_pad=False"
    notes: str = field(default="timm inception_v4.tf_in1k (TF-slim weights, input in [-1, 1])", compare=False)


CONFIGS = {"default": InceptionV4Config(name="inception_v4")}
ALIASES = {"timm": "default"}


def conv_factory(eps):
    return lambda cin, cout, k=1, s=1, p=0: ConvBlock(cin, cout, k, s, p, True, eps)


MAXPOOL = MaxPool(3, 2, 0, ceil_mode=False)
AVGPOOL = AvgPool(3, 1, 1, ceil_mode=False, count_include_pad=False)


def v4_blocks(eps):
    """name -> block factory; names are timm's classes (``features.<i>`` in the state_dict)."""
    c = conv_factory(eps)

    def mixed3a():  # 64 -> 64 (pool) + 96 = 160
        return Branches(64, ((("maxpool", MAXPOOL),), (("conv", c(64, 96, 3, 2)),)), "Mixed3a")

    def mixed4a():  # 160 -> 96 + 96 = 192
        return Branches(160, (
            (("branch0", seq(c(160, 64), c(64, 96, 3))),),
            (("branch1", seq(c(160, 64), c(64, 64, (1, 7), 1, (0, 3)), c(64, 64, (7, 1), 1, (3, 0)), c(64, 96, 3))),),
        ), "Mixed4a")

    def mixed5a():  # 192 -> 192 + 192 (pool) = 384
        return Branches(192, ((("conv", c(192, 192, 3, 2)),), (("maxpool", MAXPOOL),)), "Mixed5a")

    def inception_a():  # 384 -> 4 x 96
        return Branches(384, (
            (("branch0", c(384, 96)),),
            (("branch1", seq(c(384, 64), c(64, 96, 3, 1, 1))),),
            (("branch2", seq(c(384, 64), c(64, 96, 3, 1, 1), c(96, 96, 3, 1, 1))),),
            (("branch3", seq(AVGPOOL, c(384, 96))),),
        ), "InceptionA")

    def reduction_a():  # 384 -> 384 + 256 + 384 (pool) = 1024, 35 -> 17
        return Branches(384, (
            (("branch0", c(384, 384, 3, 2)),),
            (("branch1", seq(c(384, 192), c(192, 224, 3, 1, 1), c(224, 256, 3, 2))),),
            (("branch2", MAXPOOL),),
        ), "ReductionA")

    def inception_b():  # 1024 -> 384 + 256 + 256 + 128
        return Branches(1024, (
            (("branch0", c(1024, 384)),),
            (("branch1", seq(c(1024, 192), c(192, 224, (1, 7), 1, (0, 3)), c(224, 256, (7, 1), 1, (3, 0)))),),
            (("branch2", seq(c(1024, 192), c(192, 192, (7, 1), 1, (3, 0)), c(192, 224, (1, 7), 1, (0, 3)),
                             c(224, 224, (7, 1), 1, (3, 0)), c(224, 256, (1, 7), 1, (0, 3)))),),
            (("branch3", seq(AVGPOOL, c(1024, 128))),),
        ), "InceptionB")

    def reduction_b():  # 1024 -> 192 + 320 + 1024 (pool) = 1536, 17 -> 8
        return Branches(1024, (
            (("branch0", seq(c(1024, 192), c(192, 192, 3, 2))),),
            (("branch1", seq(c(1024, 256), c(256, 256, (1, 7), 1, (0, 3)), c(256, 320, (7, 1), 1, (3, 0)),
                             c(320, 320, 3, 2))),),
            (("branch2", MAXPOOL),),
        ), "ReductionB")

    def inception_c():  # 1536 -> 256 + 512 + 512 + 256, flat attributes as timm's
        split = lambda a, b, cin: Split(((a, c(cin, 256, (1, 3), 1, (0, 1))), (b, c(cin, 256, (3, 1), 1, (1, 0)))))
        return Branches(1536, (
            (("branch0", c(1536, 256)),),
            (("branch1_0", c(1536, 384)), split("branch1_1a", "branch1_1b", 384)),
            (("branch2_0", c(1536, 384)), ("branch2_1", c(384, 448, (3, 1), 1, (1, 0))),
             ("branch2_2", c(448, 512, (1, 3), 1, (0, 1))), split("branch2_3a", "branch2_3b", 512)),
            (("branch3", seq(AVGPOOL, c(1536, 256))),),
        ), "InceptionC")

    return dict(Mixed3a=mixed3a, Mixed4a=mixed4a, Mixed5a=mixed5a, InceptionA=inception_a, ReductionA=reduction_a,
                InceptionB=inception_b, ReductionB=reduction_b, InceptionC=inception_c)


# timm's ``features`` Sequential after the three stem convs: (block, repeats).
V4_LAYOUT = (("Mixed3a", 1), ("Mixed4a", 1), ("Mixed5a", 1), ("InceptionA", 4), ("ReductionA", 1),
             ("InceptionB", 7), ("ReductionB", 1), ("InceptionC", 3))
# The stem convs: (in, out, kernel, stride, padding); 299 -> 147.
V4_STEM = ((3, 32, 3, 2, 0), (32, 32, 3, 1, 0), (32, 64, 3, 1, 1))


def inception_v4_stages(cfg: InceptionV4Config, num_classes: int, dropout: float):
    c, blocks = conv_factory(cfg.bn_eps), v4_blocks(cfg.bn_eps)
    features = [c(*row) for row in V4_STEM]  # N,64,147,147
    for name, n in V4_LAYOUT:  # 73 (160) -> 71 (192) -> 35 (384) -> 17 (1024) -> 8 (1536)
        features += [blocks[name]() for _ in range(n)]
    return [
        ("features", seq(*features)),  # N,1536,8,8
        ("global_pool", GlobalAvgPool()),  # N,1536
        ("head_drop", Dropout(dropout)),
        (cfg.classifier, Linear(cfg.num_features, num_classes)),
    ]


def resolve(arch, configs, aliases, variant, transform_input):
    """The variant's config, refusing unknown variants and ``transform_input`` (the TF-slim
    family's weights expect input in [-1, 1]: normalise with mean = std = 0.5 instead)."""
    name = aliases.get(variant or "default", variant or "default")
    if name not in configs:
        raise ValueError(f"unknown {arch} variant {variant!r}; known: {', '.join([*configs, *aliases])}")
    if transform_input:
        raise ValueError(f"{arch} has no transform_input (its weights expect input in [-1, 1])")
    return name, configs[name]


def inception_v4_spec(variant="default", num_classes=1000, aux_logits=False, transform_input=None, dropout=None,
                      dropout_aux=None) -> ModelSpec:
    """``aux_logits`` and ``dropout_aux`` are accepted for a uniform factory signature and ignored:
    this network has no auxiliary classifier."""
    name, cfg = resolve("inception_v4", CONFIGS, ALIASES, variant, transform_input)
    return ModelSpec(
        arch="inception_v4", variant=name,
        stages=tuple(inception_v4_stages(cfg, num_classes, cfg.dropout if dropout is None else dropout)),
        aux_heads={}, output_fields=(("logits", None),), transform_input=False, num_classes=num_classes,
        config=cfg,
        # Capture reports each stem conv and Inception/Reduction block, not the one Sequential.
        capture_children=("features",))
