"""Graph rewrites behind ``optimize_for_inference``, applied to a BN-folded, eval-only copy.

* ``ConvAct``: a biased convolution with its ReLU fused, through oneDNN's post-op
  (``torch.ops.mkldnn._convolution_pointwise``, what Inductor itself emits for conv + ReLU on
  CPU): the activation is applied while the output tile is still in cache instead of in a second
  pass over memory.
* ``MergedBranches``: an Inception block whose branches open with a 1x1 stride-1 convolution of
  the same input (GoogLeNet's and v3's three 1x1 reductions, v4's and IRv2's two or three) runs
  them as one convolution with the output channels stacked, then splits: one GEMM that is N
  times wider instead of N thin ones, and the block input is read once. Each output channel is
  the same dot product as before; only oneDNN's blocking of the sum may differ (rounding level).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..spec import blocks as B
from .blocks import BranchBlock, Residual
from .layers import BasicConv2d


def _mkldnn_ok(weight: torch.Tensor) -> bool:
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()


class ConvAct(nn.Module):
    """``act(conv2d(x, weight, bias))`` with ``act`` ReLU or none."""

    def __init__(self, weight, bias, stride, padding, dilation=(1, 1), groups=1, relu=True):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self.groups, self.relu = groups, relu
        # oneDNN's availability decided once: asking torch.backends per call breaks torch.compile's graph.
        self.onednn = _mkldnn_ok(self.weight)
        self.prepack = True
        self._packed = {}  # input shape -> weight in oneDNN's blocked layout (not state)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, relu=True) -> "ConvAct":
        bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, dtype=conv.weight.dtype)
        return cls(conv.weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups, relu)

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def _weight(self, x):
        """The weight pre-packed once per input shape, as Inductor's freezing does: oneDNN would
        otherwise reorder it to its blocked layout on every call."""
        if not self.prepack or torch.compiler.is_compiling():  # compiled: Inductor's freezing packs
            return self.weight
        packed = self._packed.get(x.shape)
        if packed is None:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(self.weight.to_mkldnn(), self.padding, self.stride,
                                                              self.dilation, self.groups, list(x.shape))
            self._packed[x.shape] = packed
        return packed

    def forward(self, x, residual=None):
        """``act(conv(x) + residual)``; the sum is oneDNN's post-op too."""
        act = "relu" if self.relu else "none"
        if self.onednn and x.is_cpu and x.dtype == torch.float32:
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(x, self._weight(x), self.bias, self.padding, self.stride,
                                                               self.dilation, self.groups, act, [], "")
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual.contiguous(memory_format=torch.channels_last if x.is_contiguous(
                    memory_format=torch.channels_last) else torch.contiguous_format),
                self._weight(x), self.bias, self.padding, self.stride, self.dilation, self.groups, "add", 1.0,
                "relu" if self.relu else None, [], "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        y = y if residual is None else y + residual
        return torch.relu(y) if self.relu else y


class SplitStep(nn.Module):
    """A v3 ``Split``: parallel steps on one input, concatenated on channels."""

    def __init__(self, parts):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x):
        return torch.cat([p(x) for p in self.parts], 1)


def _is_pointwise_head(m) -> bool:
    return (isinstance(m, ConvAct) and m.weight.shape[-2:] == (1, 1) and m.stride == [1, 1]
            and m.padding == [0, 0] and m.dilation == [1, 1] and m.groups == 1)


class MergedBranches(nn.Module):
    """A block's paths, with their leading pointwise convolutions merged into ``head``. A
    ``Residual`` block's ``act(conv2d(cat) * scale + x)`` becomes one convolution with the scale
    folded into its weights (in float64) and the sum and ReLU as post-ops."""

    def __init__(self, paths, project=None, scale=1.0, relu=True):
        super().__init__()
        heads = [i for i, p in enumerate(paths) if p and _is_pointwise_head(p[0])]
        if len(heads) < 2:
            heads = []
        self.merged = heads
        self.head = (ConvAct(torch.cat([paths[i][0].weight for i in heads]), torch.cat([paths[i][0].bias for i in heads]),
                             (1, 1), (0, 0)) if heads else None)
        self.sizes = [paths[i][0].out_channels for i in heads]
        self.paths = nn.ModuleList(nn.Sequential(*(p[1:] if i in heads else p)) for i, p in enumerate(paths))
        self.project = None
        if project is not None:
            w, b = project.weight.double() * scale, project.bias.double() * scale
            self.project = ConvAct(w.float(), b.float(), project.stride, project.padding, project.dilation,
                                   project.groups, relu=relu)

    def forward(self, x):
        parts = dict(zip(self.merged, torch.split(self.head(x), self.sizes, 1))) if self.head is not None else {}
        out = torch.cat([path(parts[i]) if i in parts else path(x) for i, path in enumerate(self.paths)], 1)
        return out if self.project is None else self.project(out, residual=x)


def _steps(module):
    """A step as a flat list of modules (an ``nn.Sequential`` path step is a chain)."""
    return list(module) if isinstance(module, nn.Sequential) else [module]


def _block_paths(block: BranchBlock):
    paths = []
    for path in block.paths:
        steps = []
        for step in path:
            if isinstance(step, B.Split):
                steps.append(SplitStep([getattr(block, name) for name, _ in step.parts]))
            else:
                steps += _steps(getattr(block, step[0]))
        paths.append(steps)
    return paths


def fuse_(model: nn.Module) -> nn.Module:
    """In place, on a model whose BNs are already folded: ``BasicConv2d`` -> ``ConvAct``, then
    each Inception block -> ``MergedBranches``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BasicConv2d) and child.bn is None:
                setattr(parent, name, ConvAct.from_conv(child.conv))
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Residual):
                setattr(parent, name, MergedBranches(_block_paths(child), child.conv2d, child.scale, child.relu))
            elif isinstance(child, BranchBlock):
                setattr(parent, name, MergedBranches(_block_paths(child)))
    return model
