"""PyTorch leaf layers of the spec (torchvision-compatible attribute names)."""
from __future__ import annotations

import torch
from torch import nn


class ReLU(nn.Module):
    """``torch.relu`` as a module (torchvision calls it functionally: same numbers, no state)."""

    def forward(self, x):
        return torch.relu(x)


class BasicConv2d(nn.Module):
    """Conv (+ BN) + ReLU. Attribute names ``conv``/``bn`` are torchvision's; the ReLU is a
    module too (no state), so hooks see every activation."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, batch_norm=True, eps=1e-3,
                 bias=None):
        super().__init__()
        bias = not batch_norm if bias is None else bias
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps) if batch_norm else None
        self.relu = ReLU()

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


