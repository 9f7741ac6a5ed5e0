"""GoogLeNet, written down once: the paper's channel table, block order and the two variants.

``googlenet`` is torchvision's GoogLeNet-BN (its state_dict keys and shapes are
torchvision's); ``googlenet_paper`` is the 2014 paper (Szegedy et al., Table 1) as seed 000
builds it: biased convs without BN, LRN after the first pool and after conv3, real 5x5 convs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from .blocks import AuxHeadV1, InceptionV1
from .layers import LRN, AdaptiveAvgPool, AvgPool, ConvBlock, Dropout, GlobalAvgPool, Linear, MaxPool

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

# torchvision's ``transform_input``: re-normalise ImageNet-normalised input to the [-1, 1]
# range the original (Caffe/TF) weights were trained on, per channel: x * scale + shift.
TRANSFORM_INPUT_SCALE = (0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5)
TRANSFORM_INPUT_SHIFT = ((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5)


@dataclass(frozen=True)
class GoogLeNetConfig:
    """Checkpoint and architecture facts of one GoogLeNet variant, as data (cf. timm ``_cfg``)."""

    name: str
    batch_norm: bool
    bn_eps: float
    lrn: Optional[LRN]
    branch3_kernel: int
    maxpool4: MaxPool
    aux_pool: object
    dropout: float
    dropout_aux: float = 0.7
    transform_input: bool = False
    transform_scale: Tuple[float, float, float] = TRANSFORM_INPUT_SCALE
    transform_shift: Tuple[float, float, float] = TRANSFORM_INPUT_SHIFT
    # Facts a converted checkpoint carries (documentation and ``diagnose``): not used in forward.
    input_size: Tuple[int, int, int] = (3, 224, 224)
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)
    label_offset: int = 0
    padding_convention: str = "torch symmetric; max pools ceil_mode=True"
    notes: str = field(default="", compare=False)


CONFIGS = {
    "googlenet": GoogLeNetConfig(
        name="googlenet",
        batch_norm=True,
        bn_eps=1e-3,
        lrn=None,
        branch3_kernel=3,
        maxpool4=MaxPool(2, 2, 0, ceil_mode=True),
        aux_pool=AdaptiveAvgPool(4),
        dropout=0.2,
        notes="torchvision googlenet; its pretrained weights expect transform_input=True",
    ),
    "googlenet_paper": GoogLeNetConfig(
        name="googlenet_paper",
        batch_norm=False,
        bn_eps=1e-3,
        lrn=LRN(size=5, alpha=1e-4, beta=0.75, k=1.0),  # Caffe bvlc_googlenet's values
        branch3_kernel=5,
        maxpool4=MaxPool(3, 2, 0, ceil_mode=True),
        aux_pool=AvgPool(5, 3),  # 14x14 -> 4x4 at 224 input: the aux heads need 224x224
        dropout=0.4,
        notes="Szegedy et al. 2014, Table 1 and Fig. 3",
    ),
}


def googlenet_stages(cfg: GoogLeNetConfig, num_classes: int, dropout: float):
    """The trunk in forward order as (name, layer spec). Names are torchvision's attributes."""
    conv = lambda cin, cout, k, s=1, p=0: ConvBlock(cin, cout, k, s, p, cfg.batch_norm, cfg.bn_eps)
    pool = MaxPool(3, 2, 0, ceil_mode=True)
    inception = lambda name: InceptionV1(
        *INCEPTION_TABLE[name], branch3_kernel=cfg.branch3_kernel, batch_norm=cfg.batch_norm, bn_eps=cfg.bn_eps
    )
    stages = [("conv1", conv(3, 64, 7, 2, 3)), ("maxpool1", pool)]  # N,64,112,112 -> N,64,56,56
    if cfg.lrn:
        stages.append(("lrn1", cfg.lrn))
    stages += [("conv2", conv(64, 64, 1)), ("conv3", conv(64, 192, 3, 1, 1))]
    if cfg.lrn:
        stages.append(("lrn2", cfg.lrn))
    stages.append(("maxpool2", pool))  # N,192,28,28
    stages += [(n, inception(n)) for n in ("inception3a", "inception3b")]  # N,480,28,28
    stages.append(("maxpool3", pool))  # N,480,14,14
    stages += [(n, inception(n)) for n in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e")]
    stages.append(("maxpool4", cfg.maxpool4))  # N,832,7,7
    stages += [(n, inception(n)) for n in ("inception5a", "inception5b")]  # N,1024,7,7
    stages += [
        ("avgpool", GlobalAvgPool()),  # N,1024
        ("dropout", Dropout(dropout)),
        ("fc", Linear(1024, num_classes)),  # N,num_classes
    ]
    return stages


def googlenet_aux_heads(cfg: GoogLeNetConfig, num_classes: int, dropout_aux: float):
    """Auxiliary classifiers as name -> (stage whose output feeds it, head spec)."""
    head = lambda cin: AuxHeadV1(cin, num_classes, cfg.aux_pool, dropout_aux, cfg.batch_norm, cfg.bn_eps)
    return {"aux1": ("inception4a", head(512)), "aux2": ("inception4d", head(528))}


def googlenet_spec(variant: str, num_classes=1000, aux_logits=True, transform_input=None, dropout=None, dropout_aux=None):
    from . import ModelSpec

    cfg = CONFIGS[variant]
    aux = googlenet_aux_heads(cfg, num_classes, cfg.dropout_aux if dropout_aux is None else dropout_aux)
    return ModelSpec(
        arch=variant,
        stages=tuple(googlenet_stages(cfg, num_classes, cfg.dropout if dropout is None else dropout)),
        aux_heads=aux if aux_logits else {},
        # torchvision's GoogLeNetOutputs order: main, then the deeper aux head first.
        output_fields=(("logits", None), ("aux_logits2", "aux2"), ("aux_logits1", "aux1")),
        transform_input=cfg.transform_input if transform_input is None else transform_input,
        num_classes=num_classes,
        config=cfg,
        output_name="GoogLeNetOutputs",
    )
