"""Seeded test weights that keep activations O(1), as a real PyTorch model's state.

Default inits hide bugs: torchvision's googlenet gives logits near 0.03 and inception_v3 near
1e12, and activations shrinking to denormals distort speed figures. Here convolutions are
He-scaled, biases and BN affine parameters random, and BN running statistics calibrated on a
batch and then perturbed, so eval-mode BN is neither an identity nor a blow-up.
"""
from __future__ import annotations

import math


def randomize_(model, seed: int = 0, calibration_size: int = 224, bn_scale: bool = True, pixels: bool = False):
    """Seeded He-scaled weights and calibrated-then-perturbed BN statistics, in place.
    ``calibration_size`` must let every aux head run (299 for Inception v3). ``bn_scale=False``
    keeps every BN gamma at 1 (checkpoints whose BN has none: keras.applications'). ``pixels``:
    calibrate on what a feature extractor is fed, images in [-1, 1], not standard normal input
    (statistics of the wrong input compound over 94 BNs: FID pool3 features near 300, not O(1))."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    uniform = lambda t, lo, hi: t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                gain = 2.0 if isinstance(m, nn.Conv2d) else 1.0
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(gain / fan_in))
                if m.bias is not None:
                    uniform(m.bias, -0.1, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                uniform(m.weight, 0.5, 1.5) if bn_scale else m.weight.fill_(1.0)
                uniform(m.bias, -0.2, 0.2)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if bns:
            saved = [m.momentum for m in bns]
            for m in bns:  # momentum None: a cumulative average, i.e. this batch's statistics
                m.reset_running_stats()
                m.momentum = None
            model.train()
            shape = (4, 3, calibration_size, calibration_size)
            model(torch.rand(shape, generator=g) * 2 - 1 if pixels else torch.randn(shape, generator=g))
            for m, mom in zip(bns, saved):
                m.momentum = mom
                m.num_batches_tracked.zero_()
                m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.45 + 0.8)
                m.running_mean.add_(torch.randn(m.running_mean.shape, generator=g) * 0.1 * m.running_var.sqrt())
    model.eval()
    return model


def seeded_model(arch: str, seed: int = 0, num_classes: int = None, aux_logits: bool = True,
                 variant: str = "default"):
    """Our torch model of ``arch`` with seeded trained-like weights; aux heads only where the
    variant's checkpoints have them, gamma 1 where its BN has none."""
    from impls.spec import model_spec
    from impls.torch_nn import create_model

    cfg = model_spec(arch, variant=variant).config
    model = create_model(arch, num_classes=num_classes, aux_logits=aux_logits and cfg.has_aux, variant=variant)
    return randomize_(model, seed, calibration_size=cfg.input_size[-1], bn_scale=cfg.bn_scale,
                      pixels=bool(getattr(cfg, "features", ())))


def save_seeded(arch: str, out, seed: int = 0, num_classes: int = None, aux_logits: bool = True,
                variant: str = "default", fmt=None, overwrite=False):
    """Writes seeded weights to ``out`` in any bridge format (a neutral folder by default)."""
    from weights_bridge import write
    from weights_bridge.torch_io import read_state_dict

    model = seeded_model(arch, seed, num_classes, aux_logits, variant)
    ckpt = read_state_dict(model.state_dict(), arch, where=f"seeded {arch}")
    ckpt.variant = variant
    write(ckpt, out, fmt, overwrite=overwrite)
