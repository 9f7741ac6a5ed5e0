"""The fast inference form of a PyTorch model: BatchNorm folded into the convolution before it,
conv + ReLU as one oneDNN call, each Inception block's parallel 1x1 convolutions merged into one
(``fusion.py``), channels-last activations; ``torch.compile`` on request.

    model = create_model("inception_v3"); model.load_state_dict(...)
    fast = optimize_for_inference(model)            # a new, eval-only module; ``model`` untouched
    logits = fast(x)                                # NCHW input as usual, no autograd
    logits = model.eval()(x)                        # the plain path: the model itself

Folding is exact algebra, ``conv(x, W) * s + (beta - mean * s)`` with
``s = gamma / sqrt(var + eps)`` becomes ``conv(x, W * s) + b``; it is done in float64 and cast
once, so the folded weights are the correctly rounded fp32 values and the outputs stay within
the eval tolerance of the unfolded model (``conformance/tests/test_fast.py``). The plain model is the
same object it was: training, ``state_dict()`` and conversion never see a folded module.
``compile`` is off by default: it costs 10-25 s on the first call and pays only on some CPUs and
models (docs/benchmarks.md: GoogLeNet 1.5x on an Intel Xeon, nothing on an AMD EPYC, nothing
for Inception v3 on either).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .fusion import fuse_
from .layers import BasicConv2d


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased ``Conv2d`` computing ``bn(conv(x))`` with ``bn``'s running statistics."""
    w = conv.weight.double()
    scale = bn.weight.double() * torch.rsqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    fused.bias.copy_(((bias - bn.running_mean.double()) * scale + bn.bias.double()).to(conv.weight.dtype))
    return fused.to(conv.weight.device)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Folds every ``BasicConv2d``'s BN into its convolution, in place (a copy is the caller's
    business: ``optimize_for_inference`` makes one). Eval-only afterwards."""
    for m in model.modules():
        if isinstance(m, BasicConv2d) and m.bn is not None:
            m.conv, m.bn = fold_conv_bn(m.conv, m.bn), None
    return model


class InferenceModel(nn.Module):
    """Eval-only wrapper: converts the input to the model's memory format, runs without autograd.
    ``train()`` is refused: the folded weights cannot be trained back into a BN model."""

    def __init__(self, model: nn.Module, channels_last: bool, compiled=None):
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        # Not a submodule: the compiled wrapper holds ``model`` again (state_dict would list it twice).
        self.__dict__["_run"] = model if compiled is None else compiled
        super().train(False)

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("an optimize_for_inference() model is eval-only; train the model it was made from")
        return super().train(False)

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self._run(x)


def optimize_for_inference(model: nn.Module, fold_bn: bool = True, channels_last: bool = True, fuse: bool = True,
                           compile: bool = False) -> InferenceModel:
    """A new eval-only module computing ``model.eval()(x)`` faster; ``model`` is not modified.

    ``fold_bn``: fold BatchNorm into the preceding convolution. ``fuse``: the rewrites of
    ``fusion.py`` (needs ``fold_bn`` to find anything to fuse). ``channels_last``: NHWC memory
    format (oneDNN's native layout on CPU). ``compile``: ``torch.compile`` (Inductor), without
    Inductor's freezing (its own weight pre-packing measured slower on GoogLeNet: 66 against 80
    images/s).
    Compilation happens on the first call and costs tens of seconds on a small CPU.
    """
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(fast)
    if fuse:
        fuse_(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    compiled = None
    if compile:
        compiled = torch.compile(fast, options={"freezing": False})
    return InferenceModel(fast, channels_last, compiled)
