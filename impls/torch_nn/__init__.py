"""PyTorch (torch.nn) implementations."""
from .googlenet import GoogLeNet, googlenet, googlenet_paper
from .inception_v3 import InceptionV3, inception_v3
from .layers import (AuxHeadV1, AuxHeadV3, BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE,
                     InceptionV1Block)

from .bn_inception import BNInception, bn_inception
from .inception_v4 import InceptionResNetV2, InceptionV4, inception_resnet_v2, inception_v4

MODELS = {"googlenet": googlenet, "googlenet_paper": googlenet_paper, "inception_v3": inception_v3,
          "inception_v4": inception_v4, "inception_resnet_v2": inception_resnet_v2, "bn_inception": bn_inception}


def create_model(arch: str, **kwargs):
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(MODELS)}")
    return MODELS[arch](**kwargs)


__all__ = ["GoogLeNet", "googlenet", "googlenet_paper", "BasicConv2d", "InceptionV1Block", "AuxHeadV1", "create_model",
           "InceptionV3", "inception_v3", "InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE",
           "AuxHeadV3", "InceptionV4", "inception_v4", "InceptionResNetV2", "inception_resnet_v2",
           "BNInception", "bn_inception"]
