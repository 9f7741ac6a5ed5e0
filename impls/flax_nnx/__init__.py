"""Flax NNX implementations (NHWC)."""
from .blocks import BranchBlock, Residual, Sequential, build
from .layers import ConvBlock
from .models import MODELS, SpecModel, abstract_model, create_model

# Every architecture's class (GoogLeNet, InceptionV3, ...) and its lower-case factory as torchvision
# and timm name it (googlenet, inception_v3, ...), both from impls.spec's registry.
globals().update({**{cls.__name__: cls for cls in MODELS.values()}, **MODELS})

__all__ = ["MODELS", "create_model", "abstract_model", "SpecModel", "build", "ConvBlock", "BranchBlock", "Residual", "Sequential",
           *(cls.__name__ for cls in MODELS.values()), *MODELS]
