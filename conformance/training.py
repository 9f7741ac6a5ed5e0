"""Training-step conformance: one forward/backward and optimizer steps, every framework, compared.

Same converted weights (conformance.matrix.prepare_weights), same batch (4 images at the model's
input size, seeded labels), same loss: label-smoothed (0.1) cross-entropy on the main logits plus
AUX_WEIGHT x the aux heads' (GoogLeNet 0.3 as in the paper / seed 004; Inception v3 0.4 as in
torchvision's reference training script). Dropout is 0 so the step is deterministic.

Optimizers (OPTIMIZERS), each applied ``STEPS`` times to the one gradient from the loaded weights:

* ``sgd``: lr 0.1, momentum 0.9, weight decay 1e-4 coupled as torch.optim.SGD does (grad += wd w).
  torch.optim.SGD, optax.chain(add_decayed_weights, sgd), keras.optimizers.SGD with wd*w added
  to the gradient (Keras's ``weight_decay`` is decoupled). Keras's momentum buffer holds
  -lr*g-scaled velocities, torch's and optax's hold gradients: equal for a constant lr.
* ``rmsprop_out`` / ``rmsprop_in``: Inception v3's RMSProp (rho/decay 0.9, momentum 0.9,
  epsilon 1.0; lr 0.045, coupled wd 4e-5), in the two epsilon conventions, which at eps = 1.0
  are different optimizers, not a rounding difference (see EPS_PLACEMENT):
  ``rmsprop_out`` w -= lr b, b = mu b + g / (sqrt(v) + eps): torch.optim.RMSprop,
      optax.rmsprop(eps_in_sqrt=False); Keras TRANSLATED (RMSprop subclass, denominator changed).
  ``rmsprop_in``  b = mu b + g / sqrt(v + eps): keras.optimizers.RMSprop (and TF1's
      RMSPropOptimizer, with which Inception v3 was trained), optax.rmsprop (default);
      torch TRANSLATED (written out in torch ops: torch.optim has no such option).
  Every implementation starts the second-moment accumulator at 0 (torch, Keras 3, optax
  initial_scale=0); TF1's RMSPropOptimizer started it at 1.0, which none of these reproduce.

Compared across every pair: the loss; every parameter's gradient (canonical names and layout,
i.e. HWIO kernels transposed to OIHW); BN running statistics after the forward (torch's
unbiased-variance update translated to the biased one Flax and Keras use, momentum 0.1 == 0.9);
and after each optimizer application the update w_k - w_0, per tensor, relative to the largest
|update| of that tensor (the updated weights themselves agree far more closely relative to |w|;
comparing the update is the strict form). Bounds: conformance.tolerances ("train_loss", "grad",
"update"), raised to FLOOR_FACTOR x the fp32 floor the torch worker measures in the same run
(its model and optimizers rerun in float64): per tensor, max(stated rel, 4 x the largest floor
in its block and the blocks downstream of it); see tensor_bounds. The same step in float64
(``dtype="float64"``, conformance/train_fp64.py) is compared at the tight float64 bounds, unraised:
no branch flips there, so it checks the conventions alone. Every model: SHAPE, AUX_WEIGHT.
"""
from __future__ import annotations

import itertools
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .matrix import _run, available, prepare_weights
from .tolerances import FLOOR_FACTOR, TOLERANCES

IMPLS = ("torch", "flax", "keras-tensorflow", "keras-jax", "keras-torch")
AUX_WEIGHT = {"googlenet": 0.3, "googlenet_paper": 0.3, "inception_v3": 0.4,
              "bn_inception": 0.0, "inception_v4": 0.0, "inception_resnet_v2": 0.0}  # 0: no aux heads
LABEL_SMOOTHING = 0.1
BATCH = 4
# (input size, batch) per model: small enough for five CPU workers, large enough for every head
# (GoogLeNet's aux fc wants the 14x14 stage, so 224; Inception v3's aux 5x5 conv wants the 17x17
# stage, so 299; the aux-less models take any size whose last stage is >= 2x2).
SHAPE = {"googlenet": (224, BATCH), "googlenet_paper": (224, 2), "inception_v3": (299, 2),
         "bn_inception": (128, 2), "inception_v4": (107, 2), "inception_resnet_v2": (107, 2)}
STEPS = 2
OPTIMIZERS = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
    "rmsprop_out": {"lr": 0.045, "rho": 0.9, "momentum": 0.9, "eps": 1.0, "weight_decay": 4e-5},
    "rmsprop_in": {"lr": 0.045, "rho": 0.9, "momentum": 0.9, "eps": 1.0, "weight_decay": 4e-5},
}
# What each implementation runs for each optimizer: "native" (its library's optimizer as
# configured above) or "translated" (the rule written out; see train_worker).
PROVENANCE = {
    "torch": {"sgd": "torch.optim.SGD", "rmsprop_out": "torch.optim.RMSprop",
              "rmsprop_in": "TRANSLATED: torch ops (train_worker.TorchRMSpropEpsInSqrt)"},
    "flax": {"sgd": "optax.sgd + add_decayed_weights", "rmsprop_out": "optax.rmsprop(eps_in_sqrt=False)",
             "rmsprop_in": "optax.rmsprop(eps_in_sqrt=True)"},
    **{f"keras-{b}": {"sgd": "keras.optimizers.SGD (+ wd*w on the gradient)",
                      "rmsprop_out": "TRANSLATED: keras.optimizers.RMSprop subclass, sqrt(v) + eps",
                      "rmsprop_in": "keras.optimizers.RMSprop (+ wd*w on the gradient)"}
       for b in ("tensorflow", "jax", "torch")},
}


def hyper(arch):
    return {"label_smoothing": LABEL_SMOOTHING, "aux_weight": AUX_WEIGHT[arch], "steps": STEPS,
            "optimizers": OPTIMIZERS}


def implementations():
    return [i for i in IMPLS if available(i)]


def make_batch(workdir, size, num_classes, seed=0, batch=BATCH):
    rng = np.random.default_rng([seed, size, batch, 7])
    x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    y = rng.integers(0, num_classes, batch).astype(np.int64)
    paths = Path(workdir) / f"train-input-{batch}x{size}.npy", Path(workdir) / f"train-labels-{batch}.npy"
    np.save(paths[0], x)
    np.save(paths[1], y)
    return tuple(map(str, paths))


def run_workers(arch, impls, weights, workdir, jobs=2, dtype="float32"):
    from weights_bridge.neutral import read_config

    from .train_fp64 import worker_command

    cfg = read_config(Path(weights["safetensors"]))
    size, batch = SHAPE.get(arch, (_input_size(arch), BATCH))
    x, y = make_batch(workdir, size, cfg["num_classes"], batch=batch)

    def one(impl):
        out_dir = Path(workdir) / f"train-{impl}" if dtype == "float32" else Path(workdir) / f"train-{dtype}-{impl}"
        out_dir.mkdir(parents=True, exist_ok=True)
        job = {"impl": impl, "out_dir": str(out_dir), "arch": arch, "config": cfg, "weights": weights,
               "input": x, "labels": y, "hyper": hyper(arch), "dtype": dtype}
        (out_dir / "job.json").write_text(json.dumps(job, indent=1))
        try:
            _run(*worker_command(out_dir / "job.json", dtype), what=f"train worker {impl} ({dtype})")
            return impl, out_dir
        except RuntimeError as e:
            return impl, e

    with ThreadPoolExecutor(jobs) as pool:
        return dict(pool.map(one, impls))


def _input_size(arch):
    from impls.spec import model_spec

    return model_spec(arch).config.input_size[-1]


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


def _groups(out):
    """quantity -> kind for the comparable quantities in one worker's output."""
    g = {"loss": "train_loss", "grad": "grad"}
    for k in out:
        head = k.split(":", 1)[0]
        if head[:-1] in OPTIMIZERS and head[-1].isdigit():
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


def _block(key):
    """The top-level module a tensor key belongs to ('grad:inception4a.branch1.conv.weight' ->
    'inception4a')."""
    return key.split(":", 1)[-1].split(".")[0]


def downstream(arch):
    """{block: the blocks between it and the loss, itself included}: a trunk stage, the stages
    after it and the aux heads tapping at or after it; an aux head, itself."""
    from impls.spec import model_spec

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
        per_block[_block(k)] = max(per_block.get(_block(k), 0.0), floor.get(k, (0.0, 0.0))[1])
    down = downstream(arch)
    reach = {b: max(per_block.get(d, 0.0) for d in down.get(b, {b})) for b in per_block}
    return {k: max(rel, FLOOR_FACTOR * reach[_block(k)]) for k in keys}


def compare_pair(a, b, oa, ob, w0, floor, arch, dtype="float32"):
    """Rows for every quantity: per tensor, max|a - b| against the bound x max|reference|, where
    the reference is a's tensor (its update w_k - w_0 for an optimizer step)."""
    rows = []
    quantities = _groups(oa)
    if set(quantities) != set(_groups(ob)):
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
                scale = max(scale, OPTIMIZERS[q[:-1]]["lr"] * float(np.abs(oa["grad:" + k.split(":", 1)[1]]).max()))
            rel = d / scale if scale else (0.0 if d == 0 else float("inf"))
            per.append((rel / bound[k], rel, d, k))
        worst = max(per)
        rows.append(Row(a, b, q, max(p[2] for p in per), max(p[1] for p in per), worst[3], bound[worst[3]],
                        worst[0] <= 1.0, len(keys), worst[1]))
    rows.append(_bn_row(a, b, oa, ob, w0, dtype))
    return rows


def _stats(impl, out, w0):
    from .matrix import TORCH_CONVENTION, _biased_stats

    if impl in TORCH_CONVENTION:
        return _biased_stats({k: v for k, v in out.items() if k.startswith(("stat:", "count:"))}, w0)
    return {k[5:]: out[k].astype(np.float64) for k in out if k.startswith("stat:")}


def _bn_row(a, b, oa, ob, w0, dtype="float32"):
    from .tolerances import within

    sa, sb = _stats(a, oa, w0), _stats(b, ob, w0)
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


def load(out_dir):
    return dict(np.load(Path(out_dir) / "train.npz"))


def train_agreement(arch, workdir, impls=None, seed=0, jobs=2, weights=None, dtype="float32", variant=None):
    """Runs every implementation's training step and compares all pairs. Returns a dict with
    rows (list of Row), errors ({impl: message}), floors, eps placement effect, timings.
    ``dtype="float64"``: every worker in float64 (conformance.train_fp64), compared at the tight
    float64 bounds with no floor: the conventions alone."""
    from safetensors.numpy import load_file

    workdir = Path(workdir)
    weights = weights or prepare_weights(arch, workdir / "weights", seed=seed, variant=variant)
    impls = [i for i in (impls or implementations())
             if not (i.startswith("keras-") and "keras" not in weights)]
    if dtype == "float32" and "torch" not in impls and available("torch"):  # its fp64 twin measures the floor every bound uses
        impls = ["torch"] + impls
    out_dirs = run_workers(arch, impls, weights, workdir, jobs, dtype)
    errors = {i: str(d) for i, d in out_dirs.items() if isinstance(d, Exception)}
    outs = {i: load(d) for i, d in out_dirs.items() if i not in errors}
    w0 = load_file(str(Path(weights["safetensors"]) / "model.safetensors"))
    floor = floors(outs.get("torch", {})) if dtype == "float32" else {}
    rows = []
    for a, b in itertools.combinations(list(outs), 2):
        rows.extend(compare_pair(a, b, outs[a], outs[b], w0, floor, arch, dtype))
    reports = {i: json.loads((Path(d) / "report.json").read_text())["precision"]
               for i, d in out_dirs.items() if i not in errors}
    summary = {}
    for q in {k.split(":", 1)[0] if ":" in k else k for k in floor}:
        vals = [v[1] for k, v in floor.items() if (k.split(":", 1)[0] if ":" in k else k) == q]
        summary[q] = {"max_rel": max(vals), "median_rel": float(np.median(vals))}
    return {"architecture": arch, "dtype": dtype, "impls": list(outs), "rows": rows, "errors": errors, "floor": summary,
            "eps_placement": {i: eps_placement(o) for i, o in outs.items()}, "precision": reports,
            "provenance": {i: PROVENANCE[i] for i in outs},
            "out_dirs": {i: str(d) for i, d in out_dirs.items() if i not in errors}}


def to_json(result):
    out = dict(result)
    out["rows"] = [asdict(r) for r in result["rows"]]
    out["tolerances"] = {k: v for (d, k), v in TOLERANCES.items() if d == result.get("dtype", "float32")
                         and k in ("train_loss", "grad", "update", "bn_running_stats")}
    out["ok"] = not result["errors"] and all(r.ok for r in result["rows"])
    return out


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


def cli_verify_train(a):
    """``inception-bridge verify ARCH --train`` (the arguments of ``verify``; --sizes, --layers and
    --report do not apply): the float32 step at its floor-raised bounds, then the float64 step at
    the tight float64 bounds (the conventions alone). Prints both tables; exit 1 beyond tolerance."""
    import tempfile

    from weights_bridge.errors import BridgeError, ToleranceError

    if a.arch not in AUX_WEIGHT:
        raise BridgeError(f"verify --train covers {', '.join(AUX_WEIGHT)} so far, not {a.arch}")
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="inception-bridge-train-"))
    source = None
    if a.weights:
        from weights_bridge import neutral
        from weights_bridge.formats import read

        ckpt = read(a.weights, a.src_format, a.arch, variant=a.variant)
        source = workdir / "weights" / "source.neutral"
        source.parent.mkdir(parents=True, exist_ok=True)
        neutral.write(ckpt, source, overwrite=True)
    weights = prepare_weights(a.arch, workdir / "weights", seed=a.seed, source=source,
                              source_format="safetensors" if source else None,
                              variant=None if source else a.variant)
    impls = [i for i in a.impls.split(",") if i in IMPLS] if a.impls else None
    print(f"verifying one training step of {a.arch} (workers in {workdir})", file=sys.stderr, flush=True)
    res = train_agreement(a.arch, workdir, impls, a.seed, weights=weights)
    if getattr(a, "data_parallel", False):  # DDP, JAX and Keras DataParallel against one device
        from .data_parallel import add_to_training, contrast_table

        res = add_to_training(res, a.arch, workdir, weights, impls)
    print(table(res))
    if getattr(a, "data_parallel", False):
        print(contrast_table(res))
    for impl, err in res["errors"].items():
        print(f"\n{impl}: worker failed: {err}")
    res64 = train_agreement(a.arch, workdir, impls, a.seed, weights=weights, dtype="float64")
    print("\nfloat64 (tight bounds, no floor):" + table(res64))
    for impl, err in res64["errors"].items():
        print(f"\n{impl}: float64 worker failed: {err}")
    flips = kink_flips(res, res64)
    if flips:
        print(f"\nfloat32 rows past their floor-raised bound where float64 agrees at {TOLERANCES[('float64', 'grad')]['rel']:g}: "
              "branch flips (a ReLU input or max-pool pair within fp32 rounding of its kink; docs/training.md), "
              "reported, not failed: " + ", ".join(f"{r.a}-{r.b} {r.quantity}" for r in flips))
    report = to_json(res)
    report["float64"] = to_json(res64)
    report["kink_flips"] = [asdict(r) for r in flips]
    report["ok"] = (not res["errors"] and all(r.ok or r in flips for r in res["rows"])) and report["float64"]["ok"]
    if a.json:
        from weights_bridge.atomic import atomic_path

        with atomic_path(a.json, overwrite=True) as tmp:
            tmp.write_text(json.dumps(report, indent=1, default=str))
    if not report["ok"]:
        bad = [r for r in res["rows"] + res64["rows"] if not r.ok and r not in flips]
        raise ToleranceError(f"{a.arch} training step: {len(bad)} comparisons beyond tolerance, "
                             f"{len(res['errors']) + len(res64['errors'])} workers failed")
    print(f"\nall {len(res['rows']) + len(res64['rows'])} training-step comparisons (float32, float64) "
          "within tolerance" + (f", {len(flips)} float32 rows as branch flips (above)" if flips else ""))


if __name__ == "__main__":  # python -m conformance.training ARCH WORKDIR
    res = train_agreement(sys.argv[1], sys.argv[2])
    print(table(res))
    print(json.dumps({k: v for k, v in to_json(res).items() if k != "rows"}, indent=1, default=str))
