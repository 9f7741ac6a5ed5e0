"""FID Inception's input pipelines as data: each named mode, the pipeline of the peer it must equal.

Every mode runs the same four steps; the frameworks' ``preprocess`` apply them in this order
because each origin does (a resize of differently scaled pixels rounds differently):
1. pixels to the mode's scale: a uint8 image becomes ``uint8_levels(mode)[x]``, its 256 values
   divided by ``uint8_divisor`` once here, in float32 as the origin divides (ToTensor's
   ``div(255)``): a framework's own ``x / 255`` may multiply by the reciprocal instead (XLA does
   on CPU, torch on CUDA), one rounding off. Float images must already be in [0, ``full_scale``];
2. resize to 299x299 by ``rule`` (``impls.spec.resize``), the width first, then the height;
3. ``clip``, if the mode has one;
4. ``(x - centre) / half_range``: the model's [-1, 1]. ``half_range`` is a power of two, so
   multiplying by its reciprocal is exact, and ``(x - 0.5) / 0.5`` equals pytorch-fid's
   ``2 * x - 1`` bit for bit (scaling by 2 commutes with rounding).

Origins (read in the installed peers, torch-fidelity 0.4.0, pytorch-fid 0.3.0, clean-fid 0.1.35):
- ``tf1``: torch-fidelity ``FeatureExtractorInceptionV3.forward``: uint8 only, ``x.to(float32)``,
  ``interpolate_bilinear_2d_like_tensorflow1x(size=(299, 299), align_corners=False)``, then
  ``(x - 128) / 128``, the TF 2015-12-05 graph's own preprocessing.
- ``pytorch-fid``: ``fid_score``'s ``TF.ToTensor()`` (uint8 / 255 in float32), then
  ``InceptionV3.forward``: ``F.interpolate(size=(299, 299), mode='bilinear', align_corners=False)``
  (no ``antialias``: off by default) and ``2 * x - 1``.
- ``clean``: ``resize.build_resizer("clean")`` = ``make_resizer("PIL", False, "bicubic",
  (299, 299))``: each channel ``astype(float32)``, PIL mode 'F' ``resize(BICUBIC)``, ``clip(0,
  255)``; then ``InceptionV3W.forward``: ``(x - 128) / 128``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from .resize import SIZE


@dataclass(frozen=True)
class Pipeline:
    name: str
    full_scale: float  # a white pixel in the mode's scale: 255.0 or 1.0
    rule: str  # key of impls.spec.resize.RULES
    clip: Optional[Tuple[float, float]]  # after resizing: bicubic overshoots [0, 255]
    centre: float
    half_range: float  # a power of two (exact reciprocal)
    origin: str

    @property
    def uint8_divisor(self) -> float:
        return 255.0 / self.full_scale


PIPELINES = {p.name: p for p in (
    Pipeline("tf1", 255.0, "tf1-bilinear", None, 128.0, 128.0,
             "torch-fidelity FeatureExtractorInceptionV3 (TF1 ResizeBilinear, (x - 128) / 128)"),
    Pipeline("pytorch-fid", 1.0, "torch-bilinear", None, 0.5, 0.5,
             "pytorch-fid ToTensor + InceptionV3 (F.interpolate bilinear, 2x - 1)"),
    Pipeline("clean", 255.0, "pil-bicubic", (0.0, 255.0), 128.0, 128.0,
             "clean-fid build_resizer('clean') + InceptionV3W ((x - 128) / 128)"),
)}


def pipeline(mode: str) -> Pipeline:
    if mode not in PIPELINES:
        raise ValueError(f"unknown FID input mode {mode!r}; known: {', '.join(PIPELINES)}")
    return PIPELINES[mode]


@lru_cache(maxsize=None)
def uint8_levels(mode: str) -> np.ndarray:
    """float32 (256,): uint8 value v in ``mode``'s pixel scale (IEEE float32 division). Read-only."""
    levels = np.arange(256, dtype=np.float32) / np.float32(pipeline(mode).uint8_divisor)
    levels.flags.writeable = False
    return levels


__all__ = ["PIPELINES", "Pipeline", "SIZE", "pipeline", "uint8_levels"]
