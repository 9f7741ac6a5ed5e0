"""Comparing two implementations' training steps (``conformance.training``): the loss, every
gradient, BN running statistics and every optimizer's updates, per tensor, against bounds raised
to the fp32 floor the torch worker measures in the same run (its fp64 twin)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from impls.spec import model_spec

from .outputs import stats
from .tolerances import FLOOR_FACTOR, TOLERANCES, within


@dataclass
class Row:
    a: str
    b: str
    quantity: str  # loss, grad, bn_running_stats, sgd1, rmsprop_out2, ...
    max_abs: float  # over tensors: the largest max|a - b|
    max_rel: float  # over tensors: the largest max|a - b| / max|reference tensor|
    worst: str  # the tensor nearest its bound (largest relative difference / bound)
    bound_rel: float  # the relative bound applied to that tensor
    ok: bool
    tensors: int = 0
    worst_rel: float = 0.0  # that tensor's relative difference (compare with bound_rel)


def _groups(out, hyper):
    """quantity -> kind for the comparable quantities in one worker's output."""
    g = {"loss": "train_loss", "grad": "grad"}
    for k in out:
        head = k.split(":", 1)[0]
        if head[:-1] in hyper["optimizers"] and head[-1].isdigit():
            g[head] = "update"
    return g


def _keys(out, quantity):
    return ["loss"] if quantity == "loss" else [k for k in out if k.startswith(quantity + ":")]


def floors(torch_out):
    """{key: (abs floor, relative floor)} from the torch worker's fp64 rerun; for an optimizer
    step the relative floor is against the update's size, the quantity compared."""
    out = {}
    for k in torch_out:
        if k.startswith("floor:"):
            d, ref, upd = (float(v) for v in torch_out[k])
            key = k[6:]
            scale = upd if key.split(":", 1)[0] not in ("grad", "stat", "loss") and ":" in key else ref
            out[key] = (d, d / scale if scale else 0.0)
    return out


def floor_entries(out: dict, ref: dict, w0: dict, skip=()) -> dict:
    """``floor:<key>`` = [max|fp32 - fp64|, max|fp64|, max|fp64 - w0|] for every key of the fp64
    rerun ``ref`` that ``out`` has (the last entry is the update's size, for optimizer results);
    keys starting with a prefix in ``skip`` are left out."""
    res = {}
    for k in ref:
        if k not in out or k.startswith(tuple(skip)):
            continue
        r = ref[k].astype(np.float64)
        base = w0.get(k.split(":", 1)[1]) if ":" in k and not k.startswith(("grad:", "stat:")) else None
        res[f"floor:{k}"] = np.array([np.abs(out[k].astype(np.float64) - r).max(), np.abs(r).max(),
                                      np.abs(r - base).max() if base is not None else np.abs(r).max()])
    return res


def block_of(key):
    """The top-level module a tensor key belongs to ('grad:inception4a.branch1.conv.weight' ->
    'inception4a')."""
    return key.split(":", 1)[-1].split(".")[0]


def downstream(arch):
    """{block: the blocks between it and the loss, itself included}: a trunk stage, the stages
    after it and the aux heads tapping at or after it; an aux head, itself."""
    spec = model_spec(arch)
    names = [n for n, _ in spec.stages]
    out = {}
    for i, name in enumerate(names):
        out[name] = set(names[i:]) | {h for h, (tap, _) in spec.aux_heads.items() if names.index(tap) >= i}
    out.update({h: {h} for h in spec.aux_heads})
    return out


def tensor_bounds(kind, keys, floor, arch, dtype="float32"):
    """{key: relative bound} = max(stated, FLOOR_FACTOR x the largest fp32 floor among this
    quantity's tensors in the tensor's block and every block downstream of it).

    A tensor's gradient inherits the rounding of everything between it and the loss, and one
    tensor's fp32 - fp64 distance is a single sample of that: measured, a pair of fp32
    implementations often lands 2-5x its own floor apart, never beyond the downstream maximum.
    The classifier and aux-head tensors keep their own small floors (tight bounds there)."""
    rel = TOLERANCES[(dtype, kind)]["rel"]
    per_block = {}
    for k in keys:
        per_block[block_of(k)] = max(per_block.get(block_of(k), 0.0), floor.get(k, (0.0, 0.0))[1])
    down = downstream(arch)
    reach = {b: max(per_block.get(d, 0.0) for d in down.get(b, {b})) for b in per_block}
    return {k: max(rel, FLOOR_FACTOR * reach[block_of(k)]) for k in keys}


def compare_pair(a, b, oa, ob, w0, floor, arch, hyper, dtype="float32", unbiased=(False, False)):
    """``compare_all`` for one pair."""
    return compare_all({a: oa, b: ob}, w0, floor, arch, hyper, dtype, {a: unbiased[0], b: unbiased[1]})


def compare_all(outs, w0, floor, arch, hyper, dtype="float32", unbiased=None):
    """Rows for every pair of ``outs`` ({implementation: its step's outputs}) and every quantity:
    per tensor, max|a - b| against the bound x max|reference|, where the reference is a's tensor
    (its update w_k - w_0 for an optimizer step). The outputs may load lazily (open ``.npz``
    files): each tensor is read once per implementation and held for one tensor at a time.
    ``unbiased``: {implementation: its BN statistics follow torch's unbiased-variance update}."""
    impls, unbiased = list(outs), unbiased or {}
    pairs = list(itertools.combinations(impls, 2))
    groups = {i: _groups(outs[i], hyper) for i in impls}
    rows = {p: [] for p in pairs}
    for a, b in pairs:
        if set(groups[a]) != set(groups[b]):
            rows[(a, b)].append(Row(a, b, "quantities", float("inf"), float("inf"), "", 0.0, False))
    grad_max = {i: {} for i in impls}  # tensor -> max|gradient|: an update's float64 scale
    for q in dict.fromkeys(q for i in impls for q in groups[i]):
        keys = {i: _keys(outs[i], q) for i in impls if q in groups[i]}
        live = []
        for a, b in pairs:
            if rows[(a, b)] and rows[(a, b)][0].quantity == "quantities" or q not in groups[a] or \
                    not keys[a] and not keys[b]:
                continue
            if sorted(keys[a]) != sorted(keys[b]):
                missing = sorted(set(keys[a]) ^ set(keys[b]))
                rows[(a, b)].append(Row(a, b, q, float("inf"), float("inf"), missing[0], 0.0, False))
            else:
                live.append((a, b))
        if live:
            kind = groups[live[0][0]][q]
            for (a, b), row in _quantity_rows(q, kind, live, outs, keys[live[0][0]], w0, floor, arch, hyper, dtype,
                                               grad_max).items():
                rows[(a, b)].append(row)
    for a, b in pairs:
        rows[(a, b)].append(_bn_row(a, b, outs[a], outs[b], w0, dtype, (unbiased.get(a), unbiased.get(b))))
    return [row for p in pairs for row in rows[p]]


def _quantity_rows(q, kind, pairs, outs, keys, w0, floor, arch, hyper, dtype, grad_max):
    """{pair: Row} of quantity ``q``, every tensor read once per implementation."""
    bound = tensor_bounds(kind, keys, floor, arch, dtype)
    members = list(dict.fromkeys(i for p in pairs for i in p))
    scale = {i: {} for i in members}  # max|reference| per tensor
    peak = {i: {} for i in members}  # max|value| per tensor
    diff = {p: {} for p in pairs}
    for k in keys:
        tensor = k.split(":", 1)[-1]
        base = w0[tensor].astype(np.float64) if kind == "update" else 0.0
        arrays = {i: outs[i][k].astype(np.float64) for i in members}
        for i, x in arrays.items():
            peak[i][k] = float(np.abs(x).max()) if x.size else 0.0
            scale[i][k] = float(np.abs(x - base).max()) if kind == "update" and x.shape == np.shape(base) else peak[i][k]
            if kind == "grad":
                grad_max[i][tensor] = peak[i][k]
        for a, b in pairs:
            x, y = arrays[a], arrays[b]
            diff[(a, b)][k] = float(np.abs(x - y).max()) if x.shape == y.shape else float("inf")
    # A conv bias feeding a train-mode BN has gradient 0 in exact arithmetic (BN removes any
    # per-channel shift): what each framework returns is the rounding of terms that cancelled
    # (bn_inception "caffe": ~3e-13), so it is measured on the step's largest tensor's scale.
    # The same holds wherever the shift reaches a train-mode BN through linear layers only
    # (Inception-ResNet-v2's block8 conv bias, via the residual sum and conv2d_7b): in float64,
    # a gradient below 1e-9 of the step's largest is such a cancelled zero, never a real one.
    zero_keys = {k for k in keys if k.endswith(".conv.bias") and k.replace(".conv.bias", ".bn.weight") in keys}
    out = {}
    for a, b in pairs:
        step_scale = max(scale[a].values())
        zero = zero_keys | ({k for k in keys if peak[a][k] <= 1e-9 * step_scale}
                            if dtype == "float64" and kind == "grad" else set())
        per = []  # (excess = rel / bound, rel, abs, key)
        for k in keys:
            d = diff[(a, b)][k]
            ref = scale[a][k] if k not in zero else step_scale
            if kind == "update" and dtype == "float64":  # RMSProp saturates (~3 lr) for |g| >> eps, so
                # a gradient's rounding is judged against what it moves: lr x max|gradient|
                ref = max(ref, hyper["optimizers"][q[:-1]]["lr"] * grad_max[a].get(k.split(":", 1)[1], 0.0))
            rel = d / ref if ref else (0.0 if d == 0 else float("inf"))
            per.append((rel / bound[k], rel, d, k))
        worst = max(per)
        out[(a, b)] = Row(a, b, q, max(p[2] for p in per), max(p[1] for p in per), worst[3], bound[worst[3]],
                          worst[0] <= 1.0, len(keys), worst[1])
    return out


def _bn_row(a, b, oa, ob, w0, dtype="float32", unbiased=(False, False)):
    pick = lambda out: {k: out[k] for k in out if k.startswith(("stat:", "count:"))}
    sa, sb = stats(pick(oa), w0, unbiased[0]), stats(pick(ob), w0, unbiased[1])
    if sa.keys() != sb.keys():
        return Row(a, b, "bn_running_stats", float("inf"), float("inf"), "", 0.0, False)
    if not sa:
        return Row(a, b, "bn_running_stats", 0.0, 0.0, "", 0.0, True)
    d = {k: float(np.abs(sa[k] - sb[k]).max()) for k in sa}
    worst = max(d, key=d.get)
    ref = max(float(np.abs(v).max()) for v in sa.values())
    t = TOLERANCES[(dtype, "bn_running_stats")]
    return Row(a, b, "bn_running_stats", d[worst], d[worst] / ref, worst, t["rel"],
               within(d[worst], ref, "bn_running_stats", dtype), len(sa), d[worst] / ref)


def eps_placement(out):
    """How far the two RMSProp epsilon conventions land apart in one implementation: the largest
    |rmsprop_out1 - rmsprop_in1| over all tensors (absolute), after the first application."""
    worst = 0.0
    for k in _keys(out, "rmsprop_out1"):
        other = "rmsprop_in1:" + k.split(":", 1)[1]
        upd = np.abs(out[other].astype(np.float64) - out[k].astype(np.float64)).max()
        worst = max(worst, float(upd))
    return worst


def table(result):
    lines = []
    for q in dict.fromkeys(r.quantity for r in result["rows"]):
        lines.append(f"\n{q}: pair, max |diff|, max relative diff; tensor nearest its bound: rel diff, bound")
        for r in (r for r in result["rows"] if r.quantity == q):
            lines.append(f"  {r.a:>16} vs {r.b:<16} {r.max_abs:9.2e} {r.max_rel:9.2e}; {r.worst_rel:9.2e} "
                         f"{r.bound_rel:8.1e} {'ok' if r.ok else 'BEYOND'}  {r.worst}")
    return "\n".join(lines)


def kink_flips(res32, res64):
    """The float32 gradient and update rows beyond their bound whose pair agrees on the same
    quantity in float64, with loss and BN statistics within bounds in both: the conventions are
    then proven equal, and what is left is a discrete branch flip the float32 floor sample cannot
    bound (googlenet_paper, bn_inception at batch 2; docs/training.md). Any loss or BN-statistics
    failure, or any float64 failure of the pair, keeps every row of that pair a failure."""
    smooth = ("loss", "bn_running_stats")  # no branch flip moves these past their bounds
    failed = {(r.a, r.b) for r in res64["rows"] if not r.ok}
    failed |= {(r.a, r.b) for r in res32["rows"] if not r.ok and r.quantity in smooth}
    ok64 = {(r.a, r.b, r.quantity) for r in res64["rows"] if r.ok}
    return [r for r in res32["rows"] if not r.ok and r.quantity not in smooth
            and (r.a, r.b) not in failed and (r.a, r.b, r.quantity) in ok64]


