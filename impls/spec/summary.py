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

from typing import List, NamedTuple, Optional, Sequence, Tuple

from .blocks import Sequential, seq
from .layers import Node, Shape
from .model import ModelSpec


class Row(NamedTuple):
    name: str
    kind: str
    out_shape: Optional[Shape]
    params: int
    macs: int
    aux: bool = False  # an auxiliary head: run in train mode only


def layer_cost(node, in_shape: Shape, biases: bool = True) -> Tuple[Shape, int, int]:
    """(output shape, parameters, MACs) of one spec node (a tuple of nodes runs as a Sequential).

    ``in_shape`` is (C, H, W) without the batch axis. ``biases=False`` leaves out conv and
    linear biases (BN's gamma/beta still count), for hand calculations that count weights only.
    """
    if isinstance(node, tuple):
        node = seq(*node)
    bad = [n for n in (node.steps if isinstance(node, Sequential) else (("", node),)) if not isinstance(n[1], Node)]
    if bad:
        raise TypeError(f"summary has no cost rule for layer type {type(bad[0][1]).__name__}")
    return node.cost(tuple(in_shape), biases)


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
        rows.append(Row(name, layer.kind, shape, params, macs))
        for head, head_spec in taps.pop(name, []):
            rows.append(Row(head, head_spec.kind, *layer_cost(head_spec, shape), aux=True))
    if taps:
        raise ValueError(f"aux heads fed by unknown stages: {sorted(taps)}")
    body = list(rows)
    rows.append(Row("total", "", shape, sum(r.params for r in body), sum(r.macs for r in body)))
    if spec.aux_heads:
        trunk = [r for r in body if not r.aux]
        rows.append(Row("total (eval)", "", shape, sum(r.params for r in trunk), sum(r.macs for r in trunk)))
    return rows


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
