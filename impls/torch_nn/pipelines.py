"""FID Inception's input pipelines in PyTorch: ``preprocess(images, mode)``, NHWC in, NCHW out.

The steps, their order and every weight come from ``impls.spec.pipelines`` / ``impls.spec.resize``;
this module only applies them with torch ops (a gather and a multiply-add per tap), on the
images' device.
"""
from __future__ import annotations

import torch

from ..spec.pipelines import SIZE, pipeline, uint8_levels
from ..spec.resize import taps


def resize_axis(x: torch.Tensor, axis: int, rule: str, size: int = SIZE) -> torch.Tensor:
    """``x`` resized along ``axis`` to ``size`` by ``rule``; float32 taps summed in index order."""
    indices, weights = taps(rule, x.shape[axis], size)
    indices = torch.from_numpy(indices.astype("int64")).to(x.device)
    weights = torch.from_numpy(weights.copy()).to(x.device)
    shape = [1] * x.dim()
    shape[axis] = size
    out = None
    for k in range(indices.shape[1]):
        term = x.index_select(axis, indices[:, k]) * weights[:, k].reshape(shape)
        out = term if out is None else out + term
    return out


def preprocess(images, mode: str) -> torch.Tensor:
    """A batch of NHWC images (uint8, or float in the mode's [0, full_scale]) as FID Inception's
    input: float32 NCHW 299x299 in [-1, 1], equal to ``mode``'s origin (``impls.spec.pipelines``)."""
    p = pipeline(mode)
    x = torch.as_tensor(images)
    if x.dim() != 4:
        raise ValueError(f"expected a batch of NHWC images, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = torch.from_numpy(uint8_levels(mode).copy()).to(x.device)[x.long()]
    else:
        x = x.to(torch.float32)
    x = resize_axis(x, 2, p.rule)  # width first, as every origin does
    x = resize_axis(x, 1, p.rule)
    if p.clip is not None:
        x = x.clamp(*p.clip)
    x = (x - p.centre) * (1.0 / p.half_range)
    return x.permute(0, 3, 1, 2).contiguous()
