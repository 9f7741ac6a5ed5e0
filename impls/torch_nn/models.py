"""The PyTorch models: one forward pass for every spec, one class per architecture.

    model = create_model("inception_v3", num_classes=10)      # or InceptionV3(num_classes=10)
    model.load_state_dict(torch.load("inception_v3.pth", weights_only=True))

Attribute names are the spec's, so ``state_dict()`` keys equal the peer library's (torchvision's
GoogLeNet and Inception v3, timm's Inception-v4 and Inception-ResNet-v2)."""
from __future__ import annotations

import torch
from torch import nn

from ..spec import ModelSpec, model_spec
from ..spec.registry import check, model_classes
from .blocks import build


class SpecModel(nn.Module):
    """NCHW input. Eval mode returns the logits; train mode with aux heads returns the spec's
    named tuple (torchvision's ``GoogLeNetOutputs`` / ``InceptionOutputs``)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.aux_logits = bool(spec.aux_heads)
        self.transform_input = spec.transform_input
        for name, node in spec.stages:
            setattr(self, name, build(node))
        for name, (_, head) in spec.aux_heads.items():
            setattr(self, name, build(head))

    def forward_stages(self, x, capture=None):
        """Runs the trunk; returns (logits, aux outputs). ``capture`` (a dict) receives every
        block's output under its spec name (``spec.block_names()``)."""
        if self.transform_input:
            cfg = self.spec.config
            x = x * torch.tensor(cfg.transform_scale, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) \
                + torch.tensor(cfg.transform_shift, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        call = lambda name, v: getattr(self, name)(v)
        return self.spec.forward(x, call, call, self.training, capture,
                                 step=lambda name, i, v: getattr(self, name)[i](v))

    def forward(self, x):
        if self.spec.features:  # a feature extractor (the FID Inception): its named tuple
            return self.spec.forward_features(x, lambda name, v: getattr(self, name)(v), spatial_mean,
                                              self.linear_parts)
        logits, aux = self.forward_stages(x)
        return self.spec.pack_outputs(logits, aux) if self.training else logits

    def linear_parts(self, name, x):
        """(x W^T, x W^T + b) of the Linear stage ``name``, in torch-fidelity's two operations."""
        fc = getattr(self, name)
        unbiased = x.mm(fc.weight.T)
        return unbiased, unbiased + fc.bias.unsqueeze(0)


def spatial_mean(x):
    """N x C x H x W -> N x C as pytorch-fid and torch-fidelity take it (adaptive_avg_pool2d to
    1x1, flattened); an already pooled N x C as it is."""
    return x if x.dim() == 2 else torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class Architecture(SpecModel):
    """A model of the architecture ``arch`` (a class attribute), from the registry's keywords:
    ``num_classes``, ``aux_logits``, ``transform_input``, ``dropout``, ``dropout_aux``, ``variant``;
    any left out take the architecture's defaults (``impls.spec``)."""

    arch = ""

    def __init__(self, **kwargs):
        super().__init__(model_spec(self.arch, **kwargs))


# Named in the package (impls.torch_nn.GoogLeNet, ...), where pickle finds them too.
MODELS = model_classes(Architecture, __package__)


def create_model(arch: str, **kwargs) -> Architecture:
    return MODELS[check(arch)](**kwargs)
