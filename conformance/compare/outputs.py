"""Comparing two implementations' forward outputs on one task: logits, aux logits and, in train
mode, BN running statistics (torch's unbiased-variance update translated to the biased one Flax
and Keras use), each within its tolerance raised to the fp32 floor measured in the same run."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tolerances import bounds, within

BN_MOMENTUM = 0.1  # torch convention; Flax/Keras 0.9 is the same rule written the other way


@dataclass
class PairResult:
    task: str
    a: str
    b: str
    quantity: str
    max_abs: float
    max_rel: float
    ok: bool
    bound_abs: float = 0.0  # the tolerance applied: stated bound or FLOOR_FACTOR x fp32 floor
    bound_rel: float = 0.0


def biased_stats(outputs, initial):
    """Running statistics in the biased-variance convention (Flax, Keras): torch's unbiased
    update v = (1-m) v0 + m s2 n/(n-1) becomes (1-m) v0 + m s2, i.e. v - (v - (1-m) v0) / n."""
    stats = {k[5:]: v.astype(np.float64) for k, v in outputs.items() if k.startswith("stat:")}
    counts = {k[6:]: int(v) for k, v in outputs.items() if k.startswith("count:")}
    for k in stats:
        if k.endswith("running_var") and counts:
            n = counts[k[: -len(".running_var")]]
            v0 = initial[k].astype(np.float64)
            stats[k] = stats[k] - (stats[k] - (1 - BN_MOMENTUM) * v0) / n
    return stats


def stats(outputs, initial, unbiased: bool):
    """An implementation's BN statistics in the biased convention."""
    if unbiased:
        return biased_stats(outputs, initial)
    return {k[5:]: v.astype(np.float64) for k, v in outputs.items() if k.startswith("stat:")}


def fp32_floor(torch_out):
    """{output: (abs, rel)}: how far PyTorch fp32 is from the same model in fp64 on this task."""
    floor, bn = {}, []
    for k, ref in (torch_out or {}).items():
        if k.startswith("fp64:") and k[5:] in torch_out:
            d = float(np.abs(torch_out[k[5:]].astype(np.float64) - ref).max())
            if k.startswith("fp64:stat:"):  # BN running statistics: one floor over all of them
                bn.append((d, float(np.abs(ref).max())))
                continue
            floor[k[5:]] = (d, d / float(np.abs(ref).max() or 1.0))
    if bn:  # measured: Inception-v4 (149 BNs, batch 4 at 299) 1.3e-5 relative, above the stated 1e-5
        d, ref = max(s[0] for s in bn), max(s[1] for s in bn)
        floor["bn_running_stats"] = (d, d / (ref or 1.0))
    return floor


def compare_pair(a_out, b_out, initial, mode, a_unbiased, b_unbiased, dtype="float32", floor=None, subset=False):
    """[(quantity, max_abs, max_ref, ok)] for outputs and, in train mode, BN statistics.
    ``subset``: one side gives fewer output fields by design (``registry.Implementation.outputs``):
    the fields both give are compared, and there must be some."""
    rows = []
    fields = [k for k in a_out if ":" not in k]
    other = {k for k in b_out if ":" not in k}
    if subset:
        fields = [f for f in fields if f in other]
    if not fields or not subset and set(fields) != other:
        return [("outputs", float("inf"), 0.0, False)]
    for f in fields:
        x, y = a_out[f].astype(np.float64), b_out[f].astype(np.float64)
        if x.shape != y.shape:
            rows.append((f, float("inf"), 0.0, False))
            continue
        d, ref = float(np.abs(x - y).max()), float(np.abs(x).max())
        f_abs, f_rel = (floor or {}).get(f, (0.0, 0.0))
        rows.append((f, d, ref, within(d, ref, mode, dtype, f_abs, f_rel)))
    if any(k.startswith("stat:") for k in a_out):
        sa, sb = stats(a_out, initial, a_unbiased), stats(b_out, initial, b_unbiased)
        if sa.keys() != sb.keys():
            rows.append(("bn_running_stats", float("inf"), 0.0, False))
        elif sa:
            d = max(float(np.abs(sa[k] - sb[k]).max()) for k in sa)
            ref = max(float(np.abs(sa[k]).max()) for k in sa)
            f_abs, f_rel = (floor or {}).get("bn_running_stats", (0.0, 0.0))
            rows.append(("bn_running_stats", d, ref, within(d, ref, "bn_running_stats", dtype, f_abs, f_rel)))
    return rows


def pair_results(task_id, mode, outs: dict, unbiased: dict, initial, partial=()) -> list:
    """Every pair of ``outs`` ({implementation: outputs}) on one task, as PairResults; the fp32
    floor comes from the torch outputs' fp64 twin. ``partial``: implementations that give a
    subset of the output fields (see ``compare_pair``)."""
    import itertools

    floor = fp32_floor(outs.get("torch"))
    results = []
    for a, b in itertools.combinations(list(outs), 2):
        for q, d, ref, ok in compare_pair(outs[a], outs[b], initial, mode, unbiased[a], unbiased[b], floor=floor,
                                          subset=a in partial or b in partial):
            kind = "bn_running_stats" if q == "bn_running_stats" else mode
            b_abs, b_rel = bounds(kind, *floor.get(q, (0.0, 0.0)))
            results.append(PairResult(task_id, a, b, q, d, d / ref if ref else float("inf"), ok, b_abs, b_rel))
    return results
