"""Inception v3, written down once: torchvision's ``inception_v3`` (Szegedy et al. 2015,
"Rethinking the Inception Architecture for Computer Vision"), as ported from the TF release.

State_dict keys and shapes are torchvision's (and timm's ``inception_v3.tv_in1k``). torchvision
registers every layer of a block flat on the block (``branch7x7_2``) and applies the pools
functionally; here the pools get names too (``avgpool``/``maxpool``, absent from torchvision) so
every framework holds them as layers. They own no tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

from .blocks import Branches, Sequential, Split
from .config import CheckpointConfig
from .layers import AdaptiveAvgPool, AvgPool, ConvBlock, Dropout, Flatten, GlobalAvgPool, Linear, MaxPool
from .model import ModelSpec

# The stem: name -> (in, out, kernel, stride, padding). No padding but Conv2d_2b's: 299 -> 35
# through valid convs and pools, as in the TF graph.
STEM_TABLE = {
    "Conv2d_1a_3x3": (3, 32, 3, 2, 0),
    "Conv2d_2a_3x3": (32, 32, 3, 1, 0),
    "Conv2d_2b_3x3": (32, 64, 3, 1, 1),
    "Conv2d_3b_1x1": (64, 80, 1, 1, 0),
    "Conv2d_4a_3x3": (80, 192, 3, 1, 0),
}


@dataclass(frozen=True)
class InceptionV3Config(CheckpointConfig):
    # The avg pool in front of every ``branch_pool``: does the divisor count the zero padding?
    # torch's default (torchvision, timm) yes; Keras/TF AveragePooling2D(padding='same') no.
    avg_pool_count_include_pad: bool = True
    # Mixed_7c's pool branch: "avg" as everywhere else, or "max" (the 2015-12-05 TF graph that
    # FID uses: pytorch-fid's FIDInceptionE_2 / torch-fidelity's InceptionE_2).
    last_block_pool: str = "avg"
    num_classes: int = 1000
    aux_head: bool = True  # whether the network has the aux classifier at all
    # A feature extractor's outputs: (field, stage), see ModelSpec.features.
    features: tuple = ()


# Variant name (the neutral config.json's ``variant``) -> checkpoint facts. "default" is
# torchvision's and timm's network (timm's tf_/adv_/gluon_ weights included: same architecture,
# same padding). "keras" is keras.applications.InceptionV3: the same layers, but its
# AveragePooling2D(padding='same') leaves the padding out of the divisor, its BN has no gamma,
# it has no aux head and its weights expect input in [-1, 1] (``preprocess_input``: x/127.5 - 1).
# Its other paddings equal torch's: stride-2 convs and pools 'valid', stride-1 convs 'same'
# (symmetric for the odd kernels used), max pools 'valid'.
CONFIGS = {
    "default": InceptionV3Config(
        name="inception_v3", dropout=0.5, input_size=(3, 299, 299), has_aux=True,
        padding_convention="torch symmetric; max pools floor mode; avg pools count_include_pad=True",
        notes="torchvision inception_v3; its pretrained weights expect transform_input=True with ImageNet mean/std "
              "(equivalently timm tv_in1k's mean=std=0.5 without the transform)"),
    "keras": InceptionV3Config(
        name="inception_v3_keras", dropout=0.5, input_size=(3, 299, 299), avg_pool_count_include_pad=False,
        bn_scale=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        padding_convention="torch symmetric (= Keras 'same' at stride 1, 'valid' at stride 2); max pools floor "
                           "mode; avg pools count_include_pad=False",
        notes="keras.applications.InceptionV3 (classifier_activation=None: logits, no softmax); no aux head, "
              "BN gamma fixed at 1 (scale=False); input in [-1, 1] (keras' preprocess_input)"),
    # The FID Inception: TF's 2015-12-05 Inception v3 graph as pytorch-fid 0.3.0 (fid_inception_v3)
    # and torch-fidelity 0.4.0 (FeatureExtractorInceptionV3) port it: 1008 classes, no aux head,
    # no dropout, every branch avg pool leaving the padding out of the divisor, Mixed_7c's pool
    # branch a 3x3/1 max pool. Its outputs are features: the 64/192/768-channel blocks averaged
    # over space (pytorch-fid's dims), pool3 (2048), logits_unbiased (pool3 W^T, for the
    # Inception Score) and logits. Input in [-1, 1] at 299 (the input pipelines: impls.spec.pipelines).
    "fid": InceptionV3Config(
        name="inception_v3_fid", dropout=0.0, input_size=(3, 299, 299), avg_pool_count_include_pad=False,
        last_block_pool="max", num_classes=1008, aux_head=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        verify_sizes=(299,),  # every input pipeline resizes to 299: the network sees no other size
        features=(("pool_64", "maxpool1"), ("pool_192", "maxpool2"), ("pool_768", "Mixed_6e"), ("pool3", "avgpool")),
        padding_convention="torch symmetric; max pools floor mode; branch avg pools count_include_pad=False; "
                           "Mixed_7c's pool branch a 3x3/1 max pool",
        notes="the FID Inception (TF 2015-12-05 graph; pytorch-fid pt_inception-2015-12-05, torch-fidelity "
              "weights-inception-2015-12-05): 1008 classes, outputs pool_64, pool_192, pool_768, pool3, "
              "logits_unbiased, logits"),
}
ALIASES = {"torchvision": "default", "timm": "default", "pytorch-fid": "fid", "torch-fidelity": "fid"}


def config_for(variant: str = "default") -> InceptionV3Config:
    variant = ALIASES.get(variant or "default", variant or "default")
    if variant not in CONFIGS:
        raise ValueError(f"unknown inception_v3 variant {variant!r}; known: {', '.join([*CONFIGS, *ALIASES])}")
    return CONFIGS[variant]


def _conv(eps):
    return lambda cin, cout, k=1, s=1, p=0: ConvBlock(cin, cout, k, s, p, True, eps)


def _avgpool(count_include_pad):
    """The 3x3/1 avg pool in front of ``branch_pool``: torch counts the padding in the divisor
    (border windows divide by 9 though they hold 4 or 6 pixels); Keras/TF leave it out."""
    return AvgPool(3, 1, 1, ceil_mode=False, count_include_pad=count_include_pad)


MAXPOOL = MaxPool(3, 2, 0, ceil_mode=False)


def inception_a(in_channels, pool_features, bn_eps=1e-3, count_include_pad=True) -> Branches:
    """35x35 block (Fig. 5 of the paper, its 5x5 kept as in the TF release): 64 + 64 + 96 + pool."""
    c, conv = in_channels, _conv(bn_eps)
    return Branches(c, (
        (("branch1x1", conv(c, 64)),),
        (("branch5x5_1", conv(c, 48)), ("branch5x5_2", conv(48, 64, 5, 1, 2))),
        (("branch3x3dbl_1", conv(c, 64)), ("branch3x3dbl_2", conv(64, 96, 3, 1, 1)),
         ("branch3x3dbl_3", conv(96, 96, 3, 1, 1))),
        (("avgpool", _avgpool(count_include_pad)), ("branch_pool", conv(c, pool_features))),
    ), "InceptionA")


def inception_b(in_channels, bn_eps=1e-3) -> Branches:
    """Grid reduction 35 -> 17: stride-2 3x3 | 1x1 -> 3x3 -> stride-2 3x3 | stride-2 max pool."""
    c, conv = in_channels, _conv(bn_eps)
    return Branches(c, (
        (("branch3x3", conv(c, 384, 3, 2)),),
        (("branch3x3dbl_1", conv(c, 64)), ("branch3x3dbl_2", conv(64, 96, 3, 1, 1)),
         ("branch3x3dbl_3", conv(96, 96, 3, 2))),
        (("maxpool", MAXPOOL),),
    ), "InceptionB")


def inception_c(in_channels, channels_7x7, bn_eps=1e-3, count_include_pad=True) -> Branches:
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1), 4 x 192 channels out."""
    c, c7, conv = in_channels, channels_7x7, _conv(bn_eps)
    return Branches(c, (
        (("branch1x1", conv(c, 192)),),
        (("branch7x7_1", conv(c, c7)), ("branch7x7_2", conv(c7, c7, (1, 7), 1, (0, 3))),
         ("branch7x7_3", conv(c7, 192, (7, 1), 1, (3, 0)))),
        (("branch7x7dbl_1", conv(c, c7)), ("branch7x7dbl_2", conv(c7, c7, (7, 1), 1, (3, 0))),
         ("branch7x7dbl_3", conv(c7, c7, (1, 7), 1, (0, 3))), ("branch7x7dbl_4", conv(c7, c7, (7, 1), 1, (3, 0))),
         ("branch7x7dbl_5", conv(c7, 192, (1, 7), 1, (0, 3)))),
        (("avgpool", _avgpool(count_include_pad)), ("branch_pool", conv(c, 192))),
    ), "InceptionC")


def inception_d(in_channels, bn_eps=1e-3) -> Branches:
    """Grid reduction 17 -> 8: 1x1 -> stride-2 3x3 | 1x1 -> 1x7 -> 7x1 -> stride-2 3x3 | max pool."""
    c, conv = in_channels, _conv(bn_eps)
    return Branches(c, (
        (("branch3x3_1", conv(c, 192)), ("branch3x3_2", conv(192, 320, 3, 2))),
        (("branch7x7x3_1", conv(c, 192)), ("branch7x7x3_2", conv(192, 192, (1, 7), 1, (0, 3))),
         ("branch7x7x3_3", conv(192, 192, (7, 1), 1, (3, 0))), ("branch7x7x3_4", conv(192, 192, 3, 2))),
        (("maxpool", MAXPOOL),),
    ), "InceptionD")


def inception_e(in_channels, bn_eps=1e-3, count_include_pad=True, pool="avg") -> Branches:
    """8x8 block with expanded filter banks: the 3x3 branches end in a 1x3 / 3x1 split whose two
    outputs are concatenated (Fig. 7 of the paper). 320 + 768 + 768 + 192 channels out.
    ``pool="max"``: the pool branch starts with a 3x3/1 max pool (the FID graph's Mixed_7c)."""
    c, conv = in_channels, _conv(bn_eps)
    pooling = ("avgpool", _avgpool(count_include_pad)) if pool == "avg" else ("maxpool", MaxPool(3, 1, 1))
    split = lambda a, b: Split(((a, conv(384, 384, (1, 3), 1, (0, 1))), (b, conv(384, 384, (3, 1), 1, (1, 0)))))
    return Branches(c, (
        (("branch1x1", conv(c, 320)),),
        (("branch3x3_1", conv(c, 384)), split("branch3x3_2a", "branch3x3_2b")),
        (("branch3x3dbl_1", conv(c, 448)), ("branch3x3dbl_2", conv(448, 384, 3, 1, 1)),
         split("branch3x3dbl_3a", "branch3x3dbl_3b")),
        (pooling, ("branch_pool", conv(c, 192))),
    ), "InceptionE")


def aux_head_v3(in_channels, num_classes, bn_eps=1e-3) -> Sequential:
    """Inception v3's auxiliary classifier (torchvision ``InceptionAux``): 5x5/3 avg pool
    (17 -> 5), 1x1 conv to 128, 5x5 conv to 768 (5 -> 1), adaptive avg pool to 1x1, flatten,
    FC 768 -> classes."""
    conv = _conv(bn_eps)
    return Sequential((
        ("pool", AvgPool(5, 3)),  # N,768,5,5
        ("conv0", conv(in_channels, 128)),
        ("conv1", conv(128, 768, 5)),  # N,768,1,1
        ("avgpool", AdaptiveAvgPool(1)),
        ("flatten", Flatten()),
        ("fc", Linear(768, num_classes)),
    ))


def inception_v3_stages(cfg: InceptionV3Config, num_classes: int, dropout: float):
    """The trunk in forward order as (name, node). Names are torchvision's attributes."""
    conv = lambda name: (name, ConvBlock(*STEM_TABLE[name], batch_norm=True, bn_eps=cfg.bn_eps))
    eps, pad = cfg.bn_eps, cfg.avg_pool_count_include_pad
    stages = [conv(n) for n in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3")]  # N,64,147,147
    stages.append(("maxpool1", MAXPOOL))  # N,64,73,73
    stages += [conv(n) for n in ("Conv2d_3b_1x1", "Conv2d_4a_3x3")]  # N,192,71,71
    stages.append(("maxpool2", MAXPOOL))  # N,192,35,35
    stages += [("Mixed_5b", inception_a(192, 32, eps, pad)), ("Mixed_5c", inception_a(256, 64, eps, pad)),
               ("Mixed_5d", inception_a(288, 64, eps, pad))]  # N,288,35,35
    stages += [("Mixed_6a", inception_b(288, eps))]  # N,768,17,17
    stages += [(name, inception_c(768, c7, eps, pad)) for name, c7 in
               (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192))]
    stages += [("Mixed_7a", inception_d(768, eps))]  # N,1280,8,8
    stages += [("Mixed_7b", inception_e(1280, eps, pad)),
               ("Mixed_7c", inception_e(2048, eps, pad, cfg.last_block_pool))]  # N,2048,8,8
    stages.append(("avgpool", GlobalAvgPool()))  # N,2048 (torchvision pools to 1x1, drops out, then flattens)
    if not cfg.features:  # the FID graph has no dropout; torchvision has one (identity at p=0)
        stages.append(("dropout", Dropout(dropout)))
    return stages + [("fc", Linear(2048, num_classes))]  # N,num_classes


def inception_v3_spec(variant="default", num_classes=None, aux_logits=None, transform_input=None, dropout=None,
                      dropout_aux=None) -> ModelSpec:
    """``dropout_aux`` is accepted for a uniform factory signature: this aux head has no dropout.
    ``num_classes`` and ``aux_logits`` left out take the variant's (the FID network: 1008, none)."""
    cfg = config_for(variant)
    num_classes = cfg.num_classes if num_classes is None else num_classes
    aux_logits = cfg.aux_head if aux_logits is None else aux_logits
    if aux_logits and not cfg.aux_head:
        raise ValueError(f"inception_v3 variant {variant!r} has no aux head (aux_logits=False)")
    if transform_input and cfg.features:
        raise ValueError(f"inception_v3 variant {variant!r} takes input in [-1, 1] (transform_input=False)")
    return ModelSpec(
        arch="inception_v3", variant=ALIASES.get(variant or "default", variant or "default"),
        stages=tuple(inception_v3_stages(cfg, num_classes, cfg.dropout if dropout is None else dropout)),
        aux_heads={"AuxLogits": ("Mixed_6e", aux_head_v3(768, num_classes, cfg.bn_eps))} if aux_logits else {},
        output_fields=(("logits", None), ("aux_logits", "AuxLogits")),  # torchvision's InceptionOutputs
        transform_input=cfg.transform_input if transform_input is None else transform_input,
        num_classes=num_classes, config=cfg, output_name="InceptionOutputs",
        features=cfg.features, classifier="fc" if cfg.features else "", features_name="FIDOutputs")
