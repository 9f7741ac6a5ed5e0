"""The FID input pipelines' resize rules as separable interpolation matrices, framework-free.

Resizing an (H, W) channel is ``matrix(rule, H, out) @ X @ matrix(rule, W, out).T``. The
matrices are float64 but hold each origin's weights exactly, computed in the origin's own
arithmetic: float32 where it computes source positions in float32 (both bilinear rules). Exact
float64 positions would move a weight by 1e-6 from a 32-pixel side and 3e-5 from a 511-pixel
one, up to 6e-5 on the normalised pixel, far past the 1e-6 the conformance suite holds.

Frameworks apply the matrices as ``taps``, the non-zero band of each row: a gather and a
multiply-add per tap is plain float32 arithmetic on every device, where a float32 matmul may run
in TF32 on a recent NVIDIA GPU (TensorFlow enables it by default, JAX's default matmul precision
allows it), and it costs a few taps per pixel rather than a whole input row.

Rules, each read in the installed peer:
- ``tf1-bilinear``: TF 1.x ResizeBilinear, align_corners=False, no half-pixel centres, as
  torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x(method="slow")`` runs it on float32
  input: position ``float32(i) * float32(in / out)``, lower index its truncation, upper index
  ``min(lower + 1, in - 1)``, weight of the upper ``position - lower`` (all float32).
- ``torch-bilinear``: ``F.interpolate(mode="bilinear", align_corners=False)``, no antialias (as
  pytorch-fid calls it); ATen's ``area_pixel_compute_source_index`` and
  ``guard_index_and_lambda`` in float32 (the op math of float32 input).
- ``pil-bicubic``: Pillow's ``Resample.c`` ``precompute_coeffs`` with ``bicubic_filter`` (a=-0.5,
  support 2 scaled by the downscale factor, so antialiased when shrinking), in double, as PIL
  resizes a mode 'F' image.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np

SIZE = 299  # FID Inception's input side


def tf1_bilinear(in_size: int, out_size: int) -> np.ndarray:
    f32 = np.float32
    # torch-fidelity: arange(float32) * torch.tensor(in / out, float32); TF1's
    # CalculateResizeScale is float(in) / out: the same float32 for every in <= 20000, out = 299.
    position = np.arange(out_size, dtype=f32) * f32(in_size / out_size)
    lower = np.minimum(position.astype(np.int64), in_size - 1)  # .long() truncates: positions are >= 0
    upper = np.minimum(lower + 1, in_size - 1)
    upper_weight = (position - lower.astype(f32)).astype(np.float64)
    return _two_taps(in_size, lower, upper, 1.0 - upper_weight, upper_weight)


def torch_bilinear(in_size: int, out_size: int) -> np.ndarray:
    if in_size == out_size:  # ATen copies (compute_source_index_and_lambda): no arithmetic at all
        return np.eye(out_size)
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)  # area_pixel_compute_scale<float>
    # src = scale * (dst + 0.5) - 0.5, contracted to one fused multiply-add, as the AVX2/AVX512
    # builds of ATen's CPU kernel and nvcc compile it: the exact float64 value rounded once. (Under
    # ATEN_CPU_CAPABILITY=default torch rounds twice, up to 1.9e-6 from these weights.)
    source = (np.float64(scale) * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(f32)
    source = np.maximum(source, f32(0))  # linear modes clamp a negative source to 0
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper_weight = np.clip(source - lower.astype(f32), f32(0), f32(1))
    upper = lower + (lower < in_size - 1)
    lower_weight = f32(1) - upper_weight
    return _two_taps(in_size, lower, upper, lower_weight.astype(np.float64), upper_weight.astype(np.float64))


def _two_taps(in_size, lower, upper, lower_weight, upper_weight) -> np.ndarray:
    rows = np.arange(len(lower))
    m = np.zeros((len(lower), in_size))
    np.add.at(m, (rows, lower), lower_weight)  # add.at: at the last pixel lower == upper
    np.add.at(m, (rows, upper), upper_weight)
    return m


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic_filter, a = -0.5, its expressions in its order."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def pil_bicubic(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale  # bicubic support 2, widened when downscaling
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    # C's (int) truncates; xmin is clamped at 0 so truncating a negative value changes nothing.
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    k = np.arange(ksize)
    inside = k[None, :] < (xmax - xmin)[:, None]
    # (x + xmin - center + 0.5) * ss with ss = 1.0 / filterscale: Pillow multiplies by the reciprocal.
    offset = ((k[None, :] + xmin[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale)
    w = np.where(inside, _bicubic(offset), 0.0)
    total = np.zeros(out_size)
    for j in range(ksize):  # Pillow's ww, summed tap by tap
        total = total + w[:, j]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    m = np.zeros((out_size, in_size))
    rows, taps = np.nonzero(inside)
    m[rows, xmin[rows] + taps] = w[rows, taps]
    return m


RULES = {"tf1-bilinear": tf1_bilinear, "torch-bilinear": torch_bilinear, "pil-bicubic": pil_bicubic}


def matrix(rule: str, in_size: int, out_size: int = SIZE) -> np.ndarray:
    """(out_size, in_size) float64: row i holds the weights of output pixel i."""
    if rule not in RULES:
        raise ValueError(f"unknown resize rule {rule!r}; known: {', '.join(RULES)}")
    if in_size < 1 or out_size < 1:
        raise ValueError(f"cannot resize {in_size} pixels to {out_size}")
    return RULES[rule](int(in_size), int(out_size))


@lru_cache(maxsize=None)
def taps(rule: str, in_size: int, out_size: int = SIZE) -> Tuple[np.ndarray, np.ndarray]:
    """``matrix`` as its non-zero band: (indices int32, weights float32), each (out_size, K), K the
    most non-zero weights of a row; shorter rows are padded with weight 0 at their last index.
    Row i of the resized axis is ``sum_k weights[i, k] * x[indices[i, k]]``, taps in ascending
    index order as every origin sums them. Cached per (rule, sizes) and read-only."""
    m = matrix(rule, in_size, out_size)
    nonzero = m != 0.0
    width = int(nonzero.sum(axis=1).max())
    indices = np.zeros((out_size, width), np.int32)
    weights = np.zeros((out_size, width), np.float32)
    for i, row in enumerate(nonzero):
        cols = np.flatnonzero(row)
        indices[i, :len(cols)], indices[i, len(cols):] = cols, cols[-1]
        weights[i, :len(cols)] = m[i, cols]
    indices.flags.writeable = weights.flags.writeable = False
    return indices, weights
