"""PyTorch translations of the spec's layers and blocks (torchvision-compatible names)."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..spec import blocks as B
from ..spec import layers as L


class BasicConv2d(nn.Module):
    """Conv (+ BN) + ReLU. Attribute names ``conv``/``bn`` are torchvision's."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, batch_norm=True, eps=1e-3,
                 bias=None):
        super().__init__()
        bias = not batch_norm if bias is None else bias
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps) if batch_norm else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return torch.relu(x)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class InceptionV1Block(nn.Module):
    """GoogLeNet's Inception module with free channel arguments (torchvision ``Inception``)."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 branch3_kernel=5, batch_norm=True, bn_eps=1e-3, pool_ceil_mode=True):
        super().__init__()
        spec = B.InceptionV1(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                             branch3_kernel, batch_norm, bn_eps, pool_ceil_mode)
        for name, branch in spec.branches.items():
            setattr(self, name, build(branch) if not isinstance(branch, tuple) else nn.Sequential(*map(build, branch)))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxHeadV1(nn.Module):
    """GoogLeNet's auxiliary classifier (torchvision ``InceptionAux``)."""

    def __init__(self, in_channels, num_classes, pool, dropout=0.7, batch_norm=True, bn_eps=1e-3):
        super().__init__()
        self.pool = build(pool)
        self.conv = BasicConv2d(in_channels, 128, 1, batch_norm=batch_norm, eps=bn_eps)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.conv(self.pool(x))  # N,128,4,4
        x = torch.relu(self.fc1(torch.flatten(x, 1)))  # N,1024
        return self.fc2(self.dropout(x))


class BranchBlock(nn.Module):
    """An Inception v3 block from its spec: every step a flat attribute named as torchvision's,
    branches run in order and concatenated on channels."""

    def __init__(self, spec: B.BranchBlock):
        super().__init__()
        self.paths = spec.paths
        for name, layer in spec.layers:
            setattr(self, name, build(layer))

    def _path(self, path, x):
        for step in path:
            if isinstance(step, B.Split):
                x = torch.cat([getattr(self, name)(x) for name, _ in step.parts], 1)
            else:
                x = getattr(self, step[0])(x)
        return x

    def forward(self, x):
        return torch.cat([self._path(p, x) for p in self.paths], 1)


class InceptionA(BranchBlock):
    def __init__(self, in_channels, pool_features, bn_eps=1e-3, pool_count_include_pad=True):
        super().__init__(B.InceptionA(in_channels, pool_features, bn_eps, pool_count_include_pad))


class InceptionB(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3):
        super().__init__(B.InceptionB(in_channels, bn_eps))


class InceptionC(BranchBlock):
    def __init__(self, in_channels, channels_7x7, bn_eps=1e-3, pool_count_include_pad=True):
        super().__init__(B.InceptionC(in_channels, channels_7x7, bn_eps, pool_count_include_pad))


class InceptionD(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3):
        super().__init__(B.InceptionD(in_channels, bn_eps))


class InceptionE(BranchBlock):
    def __init__(self, in_channels, bn_eps=1e-3, pool_count_include_pad=True):
        super().__init__(B.InceptionE(in_channels, bn_eps, pool_count_include_pad))


class AuxHeadV3(nn.Module):
    """Inception v3's auxiliary classifier (torchvision ``InceptionAux``)."""

    def __init__(self, in_channels, num_classes, bn_eps=1e-3):
        super().__init__()
        for name, layer in B.AuxHeadV3(in_channels, num_classes, bn_eps).layers:
            setattr(self, name, build(layer))

    def forward(self, x):
        x = self.conv0(self.pool(x))  # N,128,5,5
        x = self.avgpool(self.conv1(x))  # N,768,1,1
        return self.fc(torch.flatten(x, 1))


V3_BLOCKS = {B.InceptionA: InceptionA, B.InceptionB: InceptionB, B.InceptionC: InceptionC,
             B.InceptionD: InceptionD, B.InceptionE: InceptionE, B.AuxHeadV3: AuxHeadV3}


def build(spec) -> nn.Module:
    """The torch module for one spec entry."""
    if isinstance(spec, L.ConvBlock):
        return BasicConv2d(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                           spec.batch_norm, spec.bn_eps, spec.has_bias)
    if isinstance(spec, L.MaxPool):
        return nn.MaxPool2d(spec.kernel_size, spec.stride, spec.padding, ceil_mode=spec.ceil_mode)
    if isinstance(spec, L.AvgPool):
        return nn.AvgPool2d(spec.kernel_size, spec.stride, spec.padding, spec.ceil_mode, spec.count_include_pad)
    if isinstance(spec, L.AdaptiveAvgPool):
        return nn.AdaptiveAvgPool2d(spec.output_size)
    if isinstance(spec, L.GlobalAvgPool):
        return GlobalAvgPool()
    if isinstance(spec, L.LRN):
        return nn.LocalResponseNorm(spec.size, spec.alpha, spec.beta, spec.k)
    if isinstance(spec, L.Dropout):
        return nn.Dropout(spec.rate)
    if isinstance(spec, L.Linear):
        return nn.Linear(spec.in_features, spec.out_features)
    if isinstance(spec, B.InceptionV1):
        return InceptionV1Block(spec.in_channels, spec.ch1x1, spec.ch3x3red, spec.ch3x3, spec.ch5x5red, spec.ch5x5,
                                spec.pool_proj, spec.branch3_kernel, spec.batch_norm, spec.bn_eps, spec.pool_ceil_mode)
    if isinstance(spec, B.AuxHeadV1):
        return AuxHeadV1(spec.in_channels, spec.num_classes, spec.pool, spec.dropout, spec.batch_norm, spec.bn_eps)
    if type(spec) in V3_BLOCKS:
        return V3_BLOCKS[type(spec)](**{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)})
    from .blocks_v4 import build_v4  # Sequentials, bare convs, data-given branch and residual blocks

    module = build_v4(spec)
    if module is not None:
        return module
    raise TypeError(f"no torch translation for {type(spec).__name__}")
