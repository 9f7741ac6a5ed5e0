"""GoogLeNet, written down once: the paper's channel table, block order and the two architectures.

``googlenet`` is torchvision's GoogLeNet-BN (its state_dict keys and shapes are torchvision's);
``googlenet_paper`` is the 2014 paper (Szegedy et al., Table 1) as seed 000 builds it: biased convs
without BN, LRN after the first pool and after conv3, real 5x5 convs.
"""
from __future__ import annotations

from dataclasses import dataclass

from .blocks import Branches, Sequential
from .config import CheckpointConfig
from .layers import LRN, AdaptiveAvgPool, AvgPool, ConvBlock, Dropout, Flatten, GlobalAvgPool, Linear, MaxPool, ReLU
from .model import ModelSpec

# name: (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) -- the paper's Table 1.
INCEPTION_TABLE = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


@dataclass(frozen=True)
class GoogLeNetConfig(CheckpointConfig):
    batch_norm: bool = True
    lrn: LRN = None
    branch3_kernel: int = 3
    maxpool4: MaxPool = MaxPool(2, 2, 0, ceil_mode=True)
    aux_pool: object = AdaptiveAvgPool(4)
    dropout_aux: float = 0.7


CONFIGS = {
    "googlenet": GoogLeNetConfig(
        name="googlenet", dropout=0.2, has_aux=True,
        padding_convention="torch symmetric; max pools ceil_mode=True",
        notes="torchvision googlenet; its pretrained weights expect transform_input=True"),
    "googlenet_paper": GoogLeNetConfig(
        name="googlenet_paper", batch_norm=False, lrn=LRN(size=5, alpha=1e-4, beta=0.75, k=1.0),  # Caffe's values
        branch3_kernel=5, maxpool4=MaxPool(3, 2, 0, ceil_mode=True),
        aux_pool=AvgPool(5, 3),  # 14x14 -> 4x4 at 224 input: the aux heads need 224x224
        dropout=0.4, has_aux=True, padding_convention="torch symmetric; max pools ceil_mode=True",
        notes="Szegedy et al. 2014, Table 1 and Fig. 3"),
}


def inception_v1(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, branch3_kernel=5, batch_norm=True,
                 bn_eps=1e-3, pool_ceil_mode=True) -> Branches:
    """GoogLeNet's four-branch module, in torchvision's order and nesting (branch1 a bare block):
    1x1 | 1x1 -> 3x3 | 1x1 -> kxk | 3x3 max pool -> 1x1. ``branch3_kernel`` is 5 in the paper;
    torchvision uses 3 (a known slip of its port of the Caffe model that its weights depend on)."""
    conv = lambda cin, cout, k=1: ConvBlock(cin, cout, k, 1, k // 2, batch_norm, bn_eps)
    c, k = in_channels, branch3_kernel
    return Branches(c, (
        (("branch1", conv(c, ch1x1)),),
        (("branch2", Sequential((("0", conv(c, ch3x3red)), ("1", conv(ch3x3red, ch3x3, 3))))),),
        (("branch3", Sequential((("0", conv(c, ch5x5red)), ("1", conv(ch5x5red, ch5x5, k))))),),
        (("branch4", Sequential((("0", MaxPool(3, 1, 1, pool_ceil_mode)), ("1", conv(c, pool_proj))))),),
    ), "Inception")


def aux_head_v1(in_channels, num_classes, pool, dropout=0.7, batch_norm=True, bn_eps=1e-3) -> Sequential:
    """GoogLeNet's auxiliary classifier (torchvision ``InceptionAux``): pool to 4x4, 1x1 conv to
    128, flatten in (C, H, W) order, FC 2048 -> 1024, ReLU, dropout, FC -> classes."""
    return Sequential((
        ("pool", pool),
        ("conv", ConvBlock(in_channels, 128, 1, 1, 0, batch_norm, bn_eps)),  # N,128,4,4
        ("flatten", Flatten()),
        ("fc1", Linear(2048, 1024)),
        ("relu", ReLU()),
        ("dropout", Dropout(dropout)),
        ("fc2", Linear(1024, num_classes)),
    ))


def googlenet_stages(cfg: GoogLeNetConfig, num_classes: int, dropout: float):
    """The trunk in forward order as (name, node). Names are torchvision's attributes."""
    conv = lambda cin, cout, k, s=1, p=0: ConvBlock(cin, cout, k, s, p, cfg.batch_norm, cfg.bn_eps)
    pool = MaxPool(3, 2, 0, ceil_mode=True)
    inception = lambda name: (name, inception_v1(*INCEPTION_TABLE[name], branch3_kernel=cfg.branch3_kernel,
                                                 batch_norm=cfg.batch_norm, bn_eps=cfg.bn_eps))
    stages = [("conv1", conv(3, 64, 7, 2, 3)), ("maxpool1", pool)]  # N,64,112,112 -> N,64,56,56
    if cfg.lrn:
        stages.append(("lrn1", cfg.lrn))
    stages += [("conv2", conv(64, 64, 1)), ("conv3", conv(64, 192, 3, 1, 1))]  # N,192,56,56
    if cfg.lrn:
        stages.append(("lrn2", cfg.lrn))
    stages.append(("maxpool2", pool))  # N,192,28,28
    stages += [inception(n) for n in ("inception3a", "inception3b")]  # N,480,28,28
    stages.append(("maxpool3", pool))  # N,480,14,14
    stages += [inception(n) for n in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e")]
    stages.append(("maxpool4", cfg.maxpool4))  # N,832,7,7
    stages += [inception(n) for n in ("inception5a", "inception5b")]  # N,1024,7,7
    return stages + [
        ("avgpool", GlobalAvgPool()),  # N,1024
        ("dropout", Dropout(dropout)),
        ("fc", Linear(1024, num_classes)),  # N,num_classes
    ]


def _spec(arch, variant, num_classes, aux_logits, transform_input, dropout, dropout_aux):
    if variant not in (None, "default"):
        raise ValueError(f"{arch} has no variant {variant!r} (only 'default')")
    cfg = CONFIGS[arch]
    head = lambda cin: aux_head_v1(cin, num_classes, cfg.aux_pool, cfg.dropout_aux if dropout_aux is None
                                   else dropout_aux, cfg.batch_norm, cfg.bn_eps)
    return ModelSpec(
        arch=arch, variant="default",
        stages=tuple(googlenet_stages(cfg, num_classes, cfg.dropout if dropout is None else dropout)),
        aux_heads={"aux1": ("inception4a", head(512)), "aux2": ("inception4d", head(528))} if aux_logits else {},
        # torchvision's GoogLeNetOutputs order: main, then the deeper aux head first.
        output_fields=(("logits", None), ("aux_logits2", "aux2"), ("aux_logits1", "aux1")),
        transform_input=cfg.transform_input if transform_input is None else transform_input,
        num_classes=num_classes, config=cfg, output_name="GoogLeNetOutputs")


def googlenet_spec(variant="default", num_classes=1000, aux_logits=True, transform_input=None, dropout=None,
                   dropout_aux=None) -> ModelSpec:
    return _spec("googlenet", variant, num_classes, aux_logits, transform_input, dropout, dropout_aux)


def googlenet_paper_spec(variant="default", num_classes=1000, aux_logits=True, transform_input=None, dropout=None,
                         dropout_aux=None) -> ModelSpec:
    return _spec("googlenet_paper", variant, num_classes, aux_logits, transform_input, dropout, dropout_aux)

