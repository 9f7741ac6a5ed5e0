"""The forward pass every spec-built PyTorch model shares."""
from __future__ import annotations

import torch
from torch import nn

from ..spec import ModelSpec
from .layers import build


class SpecModel(nn.Module):
    """Builds its stages and aux heads from a ``ModelSpec``; attribute names are the spec's,
    so ``state_dict()`` keys equal the peer library's."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.aux_logits = bool(spec.aux_heads)
        self.transform_input = spec.transform_input
        for name, layer in spec.stages:
            setattr(self, name, build(layer))
        for name, (_, head) in spec.aux_heads.items():
            setattr(self, name, build(head))
        self._taps = {tap: name for name, (tap, _) in spec.aux_heads.items()}

    def _transform_input(self, x):
        cfg = self.spec.config
        scale = torch.tensor(cfg.transform_scale, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        shift = torch.tensor(cfg.transform_shift, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x * scale + shift

    def forward_stages(self, x, capture=None):
        """Runs the trunk; returns (logits, aux outputs). ``capture`` (a dict) receives every
        stage's output under its spec name (``spec.block_names()``)."""
        if self.transform_input:
            x = self._transform_input(x)
        aux = {}
        for name, _ in self.spec.stages:
            if capture is not None and name in self.spec.capture_children:
                for i, item in enumerate(getattr(self, name)):  # what nn.Sequential does, item by item
                    x = capture[f"{name}.{i}"] = item(x)
            else:
                x = getattr(self, name)(x)
                if capture is not None:
                    capture[name] = x
            head = self._taps.get(name)
            if head is not None and self.training:
                aux[head] = getattr(self, head)(x)
                if capture is not None:
                    capture[head] = aux[head]
        return x, aux

    def forward(self, x):
        """Eval mode: logits (N, num_classes). Train mode with aux heads: the spec's named tuple."""
        logits, aux = self.forward_stages(x)
        return self.spec.pack_outputs(logits, aux) if self.training else logits
