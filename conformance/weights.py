"""Seeded test weights that keep activations O(1), saved as a real PyTorch state_dict.

Default inits hide bugs: torchvision's googlenet gives logits near 0.03 and inception_v3 near
1e12. Here convolutions are He-scaled, biases and BN affine parameters random, and BN running
statistics calibrated on a batch and then perturbed, so eval-mode BN is neither an identity
nor a blow-up. Run as ``python -m conformance.weights ARCH OUT.pth [--seed N] [--num-classes N]
[--no-aux]`` (torch only; no other framework is imported).
"""
from __future__ import annotations

import argparse
import math


def randomize_(model, seed: int = 0, calibration_size: int = 224, bn_scale: bool = True):
    """Seeded He-scaled weights and calibrated-then-perturbed BN statistics, in place.
    ``calibration_size`` must let every aux head run (299 for Inception v3). ``bn_scale=False``
    keeps every BN gamma at 1 (checkpoints whose BN has none: keras.applications')."""
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
            model(torch.randn(4, 3, calibration_size, calibration_size, generator=g))
            for m, mom in zip(bns, saved):
                m.momentum = mom
                m.num_batches_tracked.zero_()
                m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.45 + 0.8)
                m.running_mean.add_(torch.randn(m.running_mean.shape, generator=g) * 0.1 * m.running_var.sqrt())
    model.eval()
    return model


def main(argv=None):
    import torch

    from impls.torch_nn import create_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arch")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--no-aux", action="store_true")
    p.add_argument("--variant", default="default", help="checkpoint variant (inception_v3: default or keras)")
    a = p.parse_args(argv)
    from impls.spec import model_spec

    kw = {} if a.variant == "default" else {"variant": a.variant}
    model = create_model(a.arch, num_classes=a.num_classes, aux_logits=not a.no_aux, **kw)
    cfg = model_spec(a.arch, **kw).config
    randomize_(model, a.seed, calibration_size=cfg.input_size[-1], bn_scale=getattr(cfg, "bn_scale", True))
    torch.save(model.state_dict(), a.out)


if __name__ == "__main__":
    main()
