"""BN-Inception ("Inception v2" of Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep
Network Training by Reducing Internal Covariate Shift", Figure 5), written down once.

GoogLeNet with: BN after every convolution (conv without bias, BN eps 1e-3 as seed article 001's
v2 block), the 5x5 convolutions replaced by two 3x3 (the "double 3x3" branch), stride-2 reduction
modules (3c, 4e: no 1x1 branch, the last 3x3 of both conv branches at stride 2, max pool
pass-through), average pooling in the pool branches except 5b's max, no LRN and no dropout (the
paper removes both), no aux heads. Names follow seed 001's module (branch1..branch4 Sequentials)
and torchvision's GoogLeNet stages. Pools are Caffe's (ceil mode) so 224 -> 112 -> 56 -> 28 ->
14 -> 7; the pool branches' 3x3/1 avg pools leave the padding out of the divisor (seed 001).

Variant ``caffe`` is the network of ``pretrainedmodels``' ``bninception`` (Cadene's port of
yjxiong's Caffe model, whose weights it loads): every conv keeps its bias in front of BN, BN eps
1e-5, the pool branches' avg pools count the padding (torch's default), and the stride-2 modules'
pass-through max pools are unpadded and ceil-mode (Caffe's), which lines their windows up one
pixel differently from the padded 3x3/2 convs beside them and makes the branches disagree in size
when the module's input is odd: the peer runs at 223..230 only (224 the native size). Its input is
BGR in 0..255 minus the mean (104, 117, 128): preprocessing, recorded in the config, not built in.
Its head is ``AvgPool2d(7)``, the global average at those sizes. Tensor names are ours
(``weights_bridge.peers.pretrainedmodels`` maps its flat ``inception_3a_1x1_bn.weight`` ones).
"""
from __future__ import annotations

from dataclasses import dataclass

from .blocks import Branches, seq
from .config import CheckpointConfig
from .layers import AvgPool, ConvBlock, Dropout, GlobalAvgPool, Linear, MaxPool
from .model import ModelSpec

# Figure 5 (its printed output sizes for 4c, 4d and 4e, 576/576/1024, disagree with its own columns,
# which sum to 608/608/1056 as in the Caffe model): name -> (in, #1x1, #3x3 reduce, #3x3, double #3x3
# reduce, double #3x3, pool, pool proj, stride). #1x1 0 and pool proj 0 (pass-through) in the stride-2 modules.
TABLE = {
    "inception3a": (192, 64, 64, 64, 64, 96, "avg", 32, 1),  # 256
    "inception3b": (256, 64, 64, 96, 64, 96, "avg", 64, 1),  # 320
    "inception3c": (320, 0, 128, 160, 64, 96, "max", 0, 2),  # 576
    "inception4a": (576, 224, 64, 96, 96, 128, "avg", 128, 1),  # 576
    "inception4b": (576, 192, 96, 128, 96, 128, "avg", 128, 1),  # 576
    "inception4c": (576, 160, 128, 160, 128, 160, "avg", 128, 1),  # 608
    "inception4d": (608, 96, 128, 192, 160, 192, "avg", 128, 1),  # 608
    "inception4e": (608, 0, 128, 192, 192, 256, "max", 0, 2),  # 1056
    "inception5a": (1056, 352, 192, 320, 160, 224, "avg", 128, 1),  # 1024
    "inception5b": (1024, 352, 192, 320, 192, 224, "max", 128, 1),  # 1024
}


@dataclass(frozen=True)
class BNInceptionConfig(CheckpointConfig):
    conv_bias: bool = False  # a bias on every conv, in front of BN (Caffe)
    avg_pool_count_include_pad: bool = False
    reduction_pool_padded: bool = True  # stride-2 modules: padded floor-mode pool, or Caffe's unpadded ceil mode


# Variant name (the neutral config.json's ``variant``) -> checkpoint facts.
CONFIGS = {
    "default": BNInceptionConfig(
        name="bn_inception", verify_sizes=(224, 199),
        padding_convention="torch symmetric; max pools ceil mode (Caffe); avg pools count_include_pad=False",
        notes="BN-Inception (Ioffe & Szegedy 2015, Fig. 5); no pretrained weights"),
    "caffe": BNInceptionConfig(
        name="bn_inception_caffe", bn_eps=1e-5, conv_bias=True, avg_pool_count_include_pad=True,
        reduction_pool_padded=False, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), input_space="BGR",
        verify_sizes=(224, 227),
        padding_convention="torch symmetric; max pools ceil mode, the stride-2 modules' unpadded (Caffe); "
                           "avg pools count_include_pad=True",
        notes="pretrainedmodels bninception (yjxiong's Caffe BN-Inception): BGR 0..255 input minus "
              "(104, 117, 128); runs at 223..230 only"),
}


def v2_module(cin, c1, r3, c3, rd, cd, pool, proj, stride=1, cfg: BNInceptionConfig = CONFIGS["default"]) -> Branches:
    """One Figure-5 module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | pool (-> 1x1 proj); at stride 2
    the 1x1 branch is absent and the pool passes its input through."""
    conv = lambda i, o, k=1, s=1: ConvBlock(i, o, k, s, k // 2, True, cfg.bn_eps, cfg.conv_bias)
    paths = []
    if c1:
        paths.append((("branch1", conv(cin, c1)),))
    paths.append((("branch2", seq(conv(cin, r3), conv(r3, c3, 3, stride))),))
    paths.append((("branch3", seq(conv(cin, rd), conv(rd, cd, 3), conv(cd, cd, 3, stride))),))
    if stride == 2:
        # Padded like the 3x3/2 convs beside it, so the branches agree at every input size (Caffe's
        # unpadded ceil-mode pool gives one pixel fewer when the module's input is odd).
        p = MaxPool(3, 2, 1, ceil_mode=False) if cfg.reduction_pool_padded else MaxPool(3, 2, 0, ceil_mode=True)
        paths.append((("branch4", p),))
    else:
        p = (AvgPool(3, 1, 1, count_include_pad=cfg.avg_pool_count_include_pad) if pool == "avg"
             else MaxPool(3, 1, 1, ceil_mode=True))
        paths.append((("branch4", seq(p, conv(cin, proj))),))
    return Branches(cin, tuple(paths), "InceptionV2")


def bn_inception_stages(cfg: BNInceptionConfig, num_classes: int, dropout: float):
    eps, bias = cfg.bn_eps, cfg.conv_bias
    pool = MaxPool(3, 2, 0, ceil_mode=True)
    stages = [
        ("conv1", ConvBlock(3, 64, 7, 2, 3, True, eps, bias)),  # N,64,112,112
        ("maxpool1", pool),  # N,64,56,56
        ("conv2", ConvBlock(64, 64, 1, 1, 0, True, eps, bias)),
        ("conv3", ConvBlock(64, 192, 3, 1, 1, True, eps, bias)),  # N,192,56,56
        ("maxpool2", pool),  # N,192,28,28
    ]
    stages += [(name, v2_module(*row, cfg=cfg)) for name, row in TABLE.items()]  # N,1024,7,7
    return stages + [("avgpool", GlobalAvgPool()), ("dropout", Dropout(dropout)), ("fc", Linear(1024, num_classes))]


def bn_inception_spec(variant="default", num_classes=1000, aux_logits=False, transform_input=None, dropout=None,
                      dropout_aux=None) -> ModelSpec:
    """``aux_logits`` and ``dropout_aux`` are accepted for a uniform factory signature and ignored
    (no aux heads). The paper removes dropout: 0 unless given."""
    if (variant or "default") not in CONFIGS:
        raise ValueError(f"bn_inception has no variant {variant!r}; known: {', '.join(CONFIGS)}")
    if transform_input:
        raise ValueError("bn_inception has no transform_input")
    cfg = CONFIGS[variant or "default"]
    return ModelSpec(arch="bn_inception", variant=variant or "default",
                     stages=tuple(bn_inception_stages(cfg, num_classes, cfg.dropout if dropout is None else dropout)),
                     aux_heads={}, output_fields=(("logits", None),), transform_input=False,
                     num_classes=num_classes, config=cfg)
