"""Transfer learning in PyTorch: new classifiers for ``num_classes``, the backbone frozen.

    model = create_model("googlenet"); model.load_state_dict(...)
    model = for_transfer(model, num_classes=5)
    opt = torch.optim.SGD(trainable(model), lr=0.01)
    model.train()   # dropout and aux heads on; frozen BatchNorm stays in eval mode

Frozen means ``requires_grad=False`` and, for BatchNorm, eval mode for good: a frozen BN
normalises with its running statistics and never updates them, whatever ``model.train()``
says (Keras's rule for ``trainable=False`` BN; the common fine-tuning practice).
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec.transfer import classifier_layers, head_init, is_head, with_num_classes


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that ignores ``train()``: same state_dict, always uses running statistics."""

    def train(self, mode: bool = True):
        return super().train(False)


def for_transfer(model: nn.Module, num_classes: int, freeze_backbone: bool = True, seed: int = 0) -> nn.Module:
    """Replaces the main and aux classifiers of ``model`` (in place; returned) by fresh
    ``num_classes``-way Linear layers (``impls.spec.transfer.head_init``) and freezes the rest."""
    spec = model.spec
    fresh = head_init(spec, num_classes, seed)
    for path, in_features in classifier_layers(spec).items():
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        fc = nn.Linear(in_features, num_classes)
        with torch.no_grad():
            fc.weight.copy_(torch.from_numpy(fresh[path]["weight"]))
            fc.bias.copy_(torch.from_numpy(fresh[path]["bias"]))
        setattr(parent, attr, fc)
    model.spec = with_num_classes(spec, num_classes)
    if freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad_(is_head(name, model.spec))
        for m in model.modules():
            if type(m) is nn.BatchNorm2d:
                m.__class__ = FrozenBatchNorm2d
                m.eval()
    return model


def trainable(model: nn.Module):
    """The parameters to optimise: ``torch.optim.SGD(trainable(model), lr=...)``."""
    return [p for p in model.parameters() if p.requires_grad]
