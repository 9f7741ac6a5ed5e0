"""Keras 3 implementations (NHWC), one code path for the tensorflow, jax and torch backends."""
from .blocks import BranchBlock, Residual, Sequence, build
from .layers import ConvBlock
from .models import MODELS, NATIVE, SpecModel, create_model

# Every architecture's class (GoogLeNet, InceptionV3, ...) and its lower-case factory as torchvision
# and timm name it (googlenet, inception_v3, ...), both from impls.spec's registry.
globals().update({**{cls.__name__: cls for cls in MODELS.values()}, **MODELS})

__all__ = ["MODELS", "NATIVE", "create_model", "SpecModel", "build", "ConvBlock", "BranchBlock", "Residual",
           "Sequence", *(cls.__name__ for cls in MODELS.values()), *MODELS]
