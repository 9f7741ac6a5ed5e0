"""FID Inception's input pipelines in Keras 3 (``keras.ops``, so every backend runs the same
code): ``preprocess(images, mode)``, NHWC in, NHWC out.

The steps, their order and every weight come from ``impls.spec.pipelines`` / ``impls.spec.resize``;
this module only applies them with keras.ops (a gather and a multiply-add per tap).
"""
from __future__ import annotations

from keras import ops

from ..spec.pipelines import SIZE, pipeline, uint8_levels
from ..spec.resize import taps


def resize_axis(x, axis: int, rule: str, size: int = SIZE):
    """``x`` resized along ``axis`` to ``size`` by ``rule``; float32 taps summed in index order."""
    indices, weights = taps(rule, x.shape[axis], size)
    shape = [1] * len(x.shape)
    shape[axis] = size
    out = None
    for k in range(indices.shape[1]):
        gathered = ops.take(x, ops.convert_to_tensor(indices[:, k]), axis=axis)
        term = ops.multiply(gathered, ops.reshape(ops.convert_to_tensor(weights[:, k]), shape))
        out = term if out is None else ops.add(out, term)
    return out


def preprocess(images, mode: str):
    """A batch of NHWC images (uint8, or float in the mode's [0, full_scale]) as FID Inception's
    input: float32 NHWC 299x299 in [-1, 1], equal to ``mode``'s origin (``impls.spec.pipelines``)."""
    p = pipeline(mode)
    x = ops.convert_to_tensor(images)
    if len(x.shape) != 4:
        raise ValueError(f"expected a batch of NHWC images, got shape {tuple(x.shape)}")
    if ops.dtype(x) == "uint8":
        x = ops.take(ops.convert_to_tensor(uint8_levels(mode)), ops.cast(x, "int32"))
    else:
        x = ops.cast(x, "float32")
    x = resize_axis(x, 2, p.rule)  # width first, as every origin does
    x = resize_axis(x, 1, p.rule)
    if p.clip is not None:
        x = ops.clip(x, *p.clip)
    centre = ops.convert_to_tensor(p.centre, "float32")
    return ops.multiply(ops.subtract(x, centre), ops.convert_to_tensor(1.0 / p.half_range, "float32"))
