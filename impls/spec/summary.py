"""Per-stage output shapes, parameter counts and multiply-accumulates, from the spec alone.

Shapes follow torch's arithmetic (``conv_out``, ``pool_pads`` with ``ceil_mode``, adaptive
bins, channel concatenation of Inception branches) so they can be checked against a real
forward pass. Counting conventions:

* parameters: conv/linear weights and biases, BN gamma and beta. BN running statistics are
  buffers, not parameters (as ``nn.Module.parameters()`` sees it).
* MACs: convolution ``k_h*k_w*C_in*C_out*H_out*W_out``, linear ``in*out``. Biases, BN,
  ReLU, LRN, pools, dropout, concatenation and ``transform_input`` count 0: they are
  elementwise or reductions, and ``torch.utils.flop_counter`` ignores them too, so the total
  equals its FLOPs / 2 exactly.
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

from . import ModelSpec
from . import blocks as B
from . import blocks_v4 as V4
from . import layers as L
from .tensors import children

Shape = Tuple[int, ...]  # (C, H, W) for feature maps, (features,) after flattening


class Row(NamedTuple):
    name: str
    kind: str
    out_shape: Optional[Shape]
    params: int
    macs: int
    aux: bool = False  # an auxiliary head: run in train mode only


# Composites whose children() run one after another (besides plain tuples). A composite
# with a ``branches`` mapping is taken as parallel branches concatenated on channels.
SEQUENTIAL_BLOCKS: Tuple[type, ...] = (B.AuxHeadV1, B.AuxHeadV3)


def _feature_map(spec, in_shape: Shape) -> Shape:
    if len(in_shape) != 3:
        raise ValueError(f"{type(spec).__name__} needs a (C, H, W) input, got {in_shape}")
    return in_shape


def _conv(spec: L.ConvBlock, in_shape: Shape, biases: bool):
    c, h, w = _feature_map(spec, in_shape)
    if c != spec.in_channels:
        raise ValueError(f"{spec} got {c} input channels")
    (kh, kw), (sh, sw), (ph, pw) = spec.kernel_size, spec.stride, spec.padding
    out = (spec.out_channels, conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw))
    weights = kh * kw * spec.in_channels * spec.out_channels
    extra = spec.out_channels if spec.has_bias and biases else 0
    if spec.batch_norm:
        extra += 2 * spec.out_channels  # gamma and beta
    return out, weights + extra, weights * out[1] * out[2]


def conv_out(size, kernel, stride, padding):
    out = L.conv_out(size, kernel, stride, padding)
    if out < 1:
        raise ValueError(f"kernel {kernel} does not fit input {size} with padding {padding}")
    return out


def _pool(spec, in_shape: Shape):
    c, h, w = _feature_map(spec, in_shape)
    (kh, kw), (sh, sw), (ph, pw) = spec.kernel_size, spec.stride, spec.padding
    oh = L.pool_pads(h, kh, sh, ph, spec.ceil_mode)[2]
    ow = L.pool_pads(w, kw, sw, pw, spec.ceil_mode)[2]
    return (c, oh, ow), 0, 0


def _linear(spec: L.Linear, in_shape: Shape, biases: bool):
    n = math.prod(in_shape)  # a (C, H, W) input is flattened in (C, H, W) order first
    if n != spec.in_features:
        raise ValueError(f"{spec} got {n} input features (shape {in_shape})")
    weights = spec.in_features * spec.out_features
    return (spec.out_features,), weights + (spec.out_features if biases else 0), weights


def _leaf(spec, in_shape: Shape, biases: bool):
    if isinstance(spec, L.ConvBlock):
        return _conv(spec, in_shape, biases)
    if isinstance(spec, (L.MaxPool, L.AvgPool)):
        return _pool(spec, in_shape)
    if isinstance(spec, L.AdaptiveAvgPool):
        return (_feature_map(spec, in_shape)[0], *spec.output_size), 0, 0
    if isinstance(spec, L.GlobalAvgPool):
        return (_feature_map(spec, in_shape)[0],), 0, 0
    if isinstance(spec, (L.LRN, L.Dropout)):
        return tuple(in_shape), 0, 0
    if isinstance(spec, L.Linear):
        return _linear(spec, in_shape, biases)
    raise TypeError(f"summary has no cost rule for layer type {type(spec).__name__}")


def _sequence(items, in_shape: Shape, biases: bool):
    shape, params, macs = tuple(in_shape), 0, 0
    for item in items:
        shape, p, m = layer_cost(item, shape, biases)
        params, macs = params + p, macs + m
    return shape, params, macs


def _concat(spec, in_shape: Shape, biases: bool):
    outs, params, macs = [], 0, 0
    for name, branch in spec.branches.items():
        shape, p, m = layer_cost(branch, in_shape, biases)
        if len(shape) != 3:
            raise ValueError(f"{type(spec).__name__}.{name} does not output a feature map: {shape}")
        outs.append(shape)
        params, macs = params + p, macs + m
    if len({s[1:] for s in outs}) != 1:
        raise ValueError(f"{type(spec).__name__} branches disagree on spatial size: {outs}")
    out = (sum(s[0] for s in outs), *outs[0][1:])
    declared = getattr(spec, "out_channels", out[0])
    if declared != out[0]:
        raise ValueError(f"{type(spec).__name__} branches give {out[0]} channels, out_channels says {declared}")
    return out, params, macs


def _paths(spec: B.BranchBlock, in_shape: Shape, biases: bool):
    """An Inception v3 block: each path a chain of steps (a ``Split`` runs its parts on the same
    input and concatenates them), the paths concatenated on channels."""
    outs, params, macs = [], 0, 0
    for path in spec.paths:
        shape = tuple(in_shape)
        for step in path:
            if isinstance(step, B.Split):
                parts = [layer_cost(layer, shape, biases) for _, layer in step.parts]
                if len({p[0][1:] for p in parts}) != 1:
                    raise ValueError(f"{type(spec).__name__} split parts disagree on spatial size")
                shape = (sum(p[0][0] for p in parts), *parts[0][0][1:])
                params, macs = params + sum(p[1] for p in parts), macs + sum(p[2] for p in parts)
            else:
                shape, p, m = layer_cost(step[1], shape, biases)
                params, macs = params + p, macs + m
        outs.append(shape)
    if len({s[1:] for s in outs}) != 1:
        raise ValueError(f"{type(spec).__name__} paths disagree on spatial size: {outs}")
    out = (sum(s[0] for s in outs), *outs[0][1:])
    if out[0] != spec.out_channels:
        raise ValueError(f"{type(spec).__name__} paths give {out[0]} channels, out_channels says {spec.out_channels}")
    return out, params, macs


def _residual(spec, in_shape: Shape, biases: bool):
    """Inception-ResNet: the branches' concatenation, the 1x1 up-projection, added to the input."""
    shape, params, macs = _paths(V4.Branches(spec.in_channels, spec.steps, spec.bn_eps), in_shape, biases)
    shape, p, m = layer_cost(spec.project, shape, biases)
    if shape != tuple(in_shape):
        raise ValueError(f"{type(spec).__name__} projects to {shape}, the residual input is {tuple(in_shape)}")
    return shape, params + p, macs + m


def layer_cost(spec, in_shape: Shape, biases: bool = True) -> Tuple[Shape, int, int]:
    """(output shape, parameters, MACs) of one spec layer, block or tuple of them.

    ``in_shape`` is (C, H, W) without the batch axis. ``biases=False`` leaves out conv and
    linear biases (BN's gamma/beta still count), for hand calculations that count weights only.
    """
    if isinstance(spec, tuple):
        return _sequence(spec, in_shape, biases)
    if isinstance(getattr(spec, "branches", None), dict):
        return _concat(spec, in_shape, biases)
    if isinstance(spec, V4.Residual):
        return _residual(spec, in_shape, biases)
    if isinstance(spec, B.BranchBlock):
        return _paths(spec, in_shape, biases)
    if isinstance(spec, V4.Conv2d):  # a bare conv with bias: a ConvBlock's weights without BN
        return _conv(L.ConvBlock(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                                 batch_norm=False), in_shape, biases)
    if isinstance(spec, SEQUENTIAL_BLOCKS):
        return _sequence([child for _, child in children(spec)], in_shape, biases)
    if children(spec):
        raise TypeError(f"summary has no shape rule for composite block {type(spec).__name__}")
    return _leaf(spec, in_shape, biases)


def summarize(spec: ModelSpec, input_size: Sequence[int] = (224, 224), in_channels: int = 3) -> List[Row]:
    """One row per stage, each aux head right after the stage that feeds it, then totals.

    The ``total`` row sums every row above it (aux heads included: the train-mode forward and
    every parameter a checkpoint holds); with aux heads a ``total (eval)`` row leaves them out.
    """
    taps = {}
    for head, (tap, head_spec) in spec.aux_heads.items():
        taps.setdefault(tap, []).append((head, head_spec))
    shape: Shape = (in_channels, *input_size)
    rows: List[Row] = []
    for name, layer in spec.stages:
        shape, params, macs = layer_cost(layer, shape)
        rows.append(Row(name, _kind(layer), shape, params, macs))
        for head, head_spec in taps.pop(name, []):
            rows.append(Row(head, _kind(head_spec), *layer_cost(head_spec, shape), aux=True))
    if taps:
        raise ValueError(f"aux heads fed by unknown stages: {sorted(taps)}")
    body = list(rows)
    rows.append(Row("total", "", shape, sum(r.params for r in body), sum(r.macs for r in body)))
    if spec.aux_heads:
        trunk = [r for r in body if not r.aux]
        rows.append(Row("total (eval)", "", shape, sum(r.params for r in trunk), sum(r.macs for r in trunk)))
    return rows


def _kind(spec) -> str:
    return "Sequential" if isinstance(spec, tuple) else type(spec).__name__


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table, numbers with thousands separators."""
    header = ("stage", "type", "output", "params", "MACs")
    cells = [header] + [
        (("  " if r.aux else "") + r.name, r.kind, "x".join(map(str, r.out_shape)) if r.out_shape else "",
         f"{r.params:,}", f"{r.macs:,}")
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = []
    for i, c in enumerate(cells):
        if c[0] == "total":  # rule above the totals
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        lines.append("  ".join(v.ljust(w) if j < 3 else v.rjust(w) for j, (v, w) in enumerate(zip(c, widths))))
        if i == 0:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    return "\n".join(lines)
