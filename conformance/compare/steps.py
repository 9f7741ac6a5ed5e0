"""Comparing two implementations' training steps (``conformance.training``): the loss, every
gradient, BN running statistics and every optimizer's updates, per tensor, against bounds raised
to the fp32 floor the torch worker measures in the same run (its fp64 twin)."""
from __future__ import annotations

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
    """Rows for every quantity: per tensor, max|a - b| against the bound x max|reference|, where
    the reference is a's tensor (its update w_k - w_0 for an optimizer step). ``oa``/``ob`` map
    keys to arrays and may load them lazily (an open ``.npz``): two tensors are held at a time.
    ``unbiased``: whether a's and b's BN statistics follow torch's unbiased-variance update."""
    rows = []
    quantities = _groups(oa, hyper)
    if set(quantities) != set(_groups(ob, hyper)):
        return [Row(a, b, "quantities", float("inf"), float("inf"), "", 0.0, False)]
    for q, kind in quantities.items():
        keys = _keys(oa, q)
        if not keys and not _keys(ob, q):
            continue
        if sorted(keys) != sorted(_keys(ob, q)):
            missing = sorted(set(keys) ^ set(_keys(ob, q)))
            rows.append(Row(a, b, q, float("inf"), float("inf"), missing[0], 0.0, False))
            continue
        bound = tensor_bounds(kind, keys, floor, arch, dtype)
        # A conv bias feeding a train-mode BN has gradient 0 in exact arithmetic (BN removes any
        # per-channel shift): what each framework returns is the rounding of terms that cancelled
        # (bn_inception "caffe": ~3e-13), so it is measured on the step's largest tensor's scale.
        # The same holds wherever the shift reaches a train-mode BN through linear layers only
        # (Inception-ResNet-v2's block8 conv bias, via the residual sum and conv2d_7b): in float64,
        # a gradient below 1e-9 of the step's largest is such a cancelled zero, never a real one.
        zero = {k for k in keys if k.endswith(".conv.bias") and k.replace(".conv.bias", ".bn.weight") in keys}
        step_scale = max(float(np.abs(oa[k].astype(np.float64) - (w0[k.split(":", 1)[1]] if kind == "update"
                                                                   else 0)).max()) for k in keys)
        if dtype == "float64" and kind == "grad":
            zero |= {k for k in keys if float(np.abs(oa[k]).max()) <= 1e-9 * step_scale}
        per = []  # (excess = rel / bound, rel, abs, key)
        for k in keys:
            x, y = oa[k].astype(np.float64), ob[k].astype(np.float64)
            if x.shape != y.shape:
                per.append((float("inf"), float("inf"), float("inf"), k))
                continue
            d = float(np.abs(x - y).max())
            ref = x if kind != "update" else x - w0[k.split(":", 1)[1]].astype(np.float64)
            scale = float(np.abs(ref).max()) if k not in zero else step_scale
            if kind == "update" and dtype == "float64":  # RMSProp saturates (~3 lr) for |g| >> eps, so
                # a gradient's rounding is judged against what it moves: lr x max|gradient|
                lr = hyper["optimizers"][q[:-1]]["lr"]
                scale = max(scale, lr * float(np.abs(oa["grad:" + k.split(":", 1)[1]]).max()))
            rel = d / scale if scale else (0.0 if d == 0 else float("inf"))
            per.append((rel / bound[k], rel, d, k))
        worst = max(per)
        rows.append(Row(a, b, q, max(p[2] for p in per), max(p[1] for p in per), worst[3], bound[worst[3]],
                        worst[0] <= 1.0, len(keys), worst[1]))
    rows.append(_bn_row(a, b, oa, ob, w0, dtype, unbiased))
    return rows


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


