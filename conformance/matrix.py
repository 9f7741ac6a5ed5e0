"""Builds test weights, runs every implementation in its own worker process, compares.

``agreement(arch, ...)`` is what ``inception-bridge verify`` and the test suite both call.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .tolerances import as_json as tolerances_json
from .tolerances import bounds, within
from .worker import IMPLS, PEERS, peer_fits

REPO = Path(__file__).resolve().parent.parent
TORCH_CONVENTION = ("torch", "torchvision", "timm", "pretrainedmodels")  # BN running_var: unbiased variance
REQUIRES = {"torch": ("torch",), "torchvision": ("torch", "torchvision"), "flax": ("jax", "flax"),
            "keras-tensorflow": ("keras", "tensorflow"), "keras-jax": ("keras", "jax"),
            "keras-torch": ("keras", "torch"), "timm": ("torch", "timm"),
            "keras-applications": ("keras", "tensorflow"), "pretrainedmodels": ("torch", "pretrainedmodels")}
BN_MOMENTUM = 0.1  # torch convention; Flax/Keras 0.9 is the same rule written the other way


def available(impl: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in REQUIRES[impl])


def implementations(arch: str, peers=True, variant="default"):
    """Our implementations plus the peers that have this architecture in this checkpoint variant."""
    names = list(IMPLS) + ([p for p in PEERS if peer_fits(p, arch, variant)] if peers else [])
    return [i for i in names if available(i)]


def _jax_cache_env():
    """JAX compiles every op and initializer once per shape (minutes per worker on two cores);
    a persistent compilation cache shared by the workers pays that once per machine."""
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "inception-bridge", "jax")
    return {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _run(cmd, env=None, what=""):
    env = {**os.environ, **_jax_cache_env(), **(env or {})}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{what or cmd[2]} failed (exit {proc.returncode}):\n{tail}")
    return proc


def keras_backend_for_conversion():
    for backend, module in (("tensorflow", "tensorflow"), ("jax", "jax"), ("torch", "torch")):
        if importlib.util.find_spec("keras") and importlib.util.find_spec(module):
            return backend
    return None


def prepare_weights(arch, workdir, seed=0, num_classes=1000, aux_logits=True, pth=None, variant=None,
                    source=None, source_format=None):
    """A seeded torch state_dict (or the user's ``pth``, or ``source`` in any format the bridge
    reads, e.g. a timm or keras.applications file) converted by the bridge into every framework's
    file, and into keras.applications' for a "keras"-variant checkpoint. Returns {format: path};
    the neutral folder's config.json records the variant."""
    from impls.spec import model_spec

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {"torch": str(pth or workdir / f"{arch}.pth"), "safetensors": str(workdir / f"{arch}.neutral"),
             "flax": str(workdir / f"{arch}.msgpack"), "keras": str(workdir / f"{arch}.weights.h5")}
    if pth is None and source is None:
        kw = {"variant": variant} if variant and variant != "default" else {}
        aux_logits = aux_logits and getattr(model_spec(arch, **kw).config, "has_aux", True)
        args = [arch, paths["torch"], "--seed", str(seed), "--num-classes", str(num_classes),
                "--variant", variant or "default"]
        _run([sys.executable, "-m", "conformance.weights", *args + ([] if aux_logits else ["--no-aux"])],
             what="making test weights")
    backend = keras_backend_for_conversion()
    targets = ["safetensors", "flax"] + (["keras"] if backend else []) + (["torch"] if source is not None else [])
    if not backend:
        paths.pop("keras")
    src, src_fmt = (str(source), source_format) if source is not None else (paths["torch"], "torch")
    kapp = str(workdir / f"{arch}.keras_applications.weights.h5") if backend else None
    pm = str(workdir / f"{arch}.pretrainedmodels.pth")  # bninception's own names ("caffe" variant)
    code = ("import weights_bridge as wb\n"
            f"ckpt = wb.read({src!r}, {src_fmt!r}, {arch!r}, variant={variant!r})\n"
            f"for fmt, dst in {[(t, paths[t]) for t in targets]!r}:\n"
            "    wb.write(ckpt, dst, fmt, overwrite=True)\n"
            f"if ckpt.variant == 'keras' and {kapp!r}:\n"
            f"    wb.write(ckpt, {kapp!r}, 'keras-applications', overwrite=True)\n"
            f"if (ckpt.architecture, ckpt.variant) == ('bn_inception', 'caffe'):\n"
            f"    wb.write(ckpt, {pm!r}, 'pretrainedmodels', overwrite=True)\n")
    _run([sys.executable, "-c", code], env={"KERAS_BACKEND": backend or ""}, what="converting test weights")
    if kapp and Path(kapp).exists():
        paths["keras-applications"] = kapp
    if Path(pm).exists():
        paths["pretrainedmodels"] = pm
    return paths


def weights_variant(paths) -> str:
    cfg = json.loads((Path(paths["safetensors"]) / "config.json").read_text())
    return cfg.get("variant", "default")


@dataclass(frozen=True)
class Task:
    arch: str
    mode: str
    size: int
    batch: int = 2
    layers: bool = False  # also capture every block's output (verify --layers)

    @property
    def id(self):
        return f"{self.arch}-{self.mode}-{self.size}"


def make_inputs(tasks, workdir, seed=0):
    Path(workdir).mkdir(parents=True, exist_ok=True)
    out = {}
    for t in tasks:
        rng = np.random.default_rng([seed, t.size, t.batch])
        path = Path(workdir) / f"input-{t.batch}x{t.size}.npy"
        if not path.exists():
            np.save(path, rng.standard_normal((t.batch, 3, t.size, t.size), dtype=np.float32))
        out[t.id] = str(path)
    return out


def run_workers(impls, tasks, weights, workdir, jobs=2):
    """Runs each implementation's worker once over all tasks. Returns {impl: out_dir or error}."""
    inputs = make_inputs(tasks, workdir)

    def one(impl):
        out_dir = Path(workdir) / impl
        out_dir.mkdir(parents=True, exist_ok=True)
        job = {"impl": impl, "out_dir": str(out_dir),
               "tasks": [{"id": t.id, "arch": t.arch, "mode": t.mode, "input": inputs[t.id], "layers": t.layers,
                          "weights": weights[t.arch]} for t in tasks if impl_runs(impl, t.arch)]}
        job_path = out_dir / "job.json"
        job_path.write_text(json.dumps(job, indent=1))
        try:
            _run([sys.executable, "-m", "conformance.worker", str(job_path)], what=f"worker {impl}")
            return impl, out_dir
        except RuntimeError as e:
            return impl, e

    with ThreadPoolExecutor(jobs) as pool:
        return dict(pool.map(one, impls))


def impl_runs(impl, arch):
    return impl not in PEERS or arch in PEERS[impl]


def load_outputs(out_dir, task):
    path = Path(out_dir) / f"{task.id}.npz"
    return dict(np.load(path)) if path.exists() else None


def _biased_stats(outputs, initial):
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


def fp32_floor(torch_out):
    """{output: (abs, rel)}: how far PyTorch fp32 is from the same model in fp64 on this task."""
    floor, stats = {}, []
    for k, ref in (torch_out or {}).items():
        if k.startswith("fp64:") and k[5:] in torch_out:
            d = float(np.abs(torch_out[k[5:]].astype(np.float64) - ref).max())
            if k.startswith("fp64:stat:"):  # BN running statistics: one floor over all of them
                stats.append((d, float(np.abs(ref).max())))
                continue
            floor[k[5:]] = (d, d / float(np.abs(ref).max() or 1.0))
    if stats:  # measured: Inception-v4 (149 BNs, batch 4 at 299) 1.3e-5 relative, above the stated 1e-5
        d, ref = max(s[0] for s in stats), max(s[1] for s in stats)
        floor["bn_running_stats"] = (d, d / (ref or 1.0))
    return floor


def compare_pair(a, b, a_out, b_out, initial, mode, dtype="float32", floor=None):
    """[(quantity, max_abs, max_ref, ok)] for outputs and, in train mode, BN statistics."""
    rows = []
    fields = [k for k in a_out if ":" not in k]
    if set(fields) != {k for k in b_out if ":" not in k}:
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
        sa = _biased_stats(a_out, initial) if a in TORCH_CONVENTION else {k[5:]: v for k, v in a_out.items() if k.startswith("stat:")}
        sb = _biased_stats(b_out, initial) if b in TORCH_CONVENTION else {k[5:]: v for k, v in b_out.items() if k.startswith("stat:")}
        if sa.keys() != sb.keys():
            rows.append(("bn_running_stats", float("inf"), 0.0, False))
        elif sa:
            d = max(float(np.abs(sa[k].astype(np.float64) - sb[k]).max()) for k in sa)
            ref = max(float(np.abs(sa[k]).max()) for k in sa)
            f_abs, f_rel = (floor or {}).get("bn_running_stats", (0.0, 0.0))
            rows.append(("bn_running_stats", d, ref, within(d, ref, "bn_running_stats", dtype, f_abs, f_rel)))
    return rows


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


def compare(tasks, impls, out_dirs, weights):
    from safetensors.numpy import load_file

    results, errors = [], {i: str(d) for i, d in out_dirs.items() if isinstance(d, Exception)}
    for t in tasks:
        initial = load_file(str(Path(weights[t.arch]["safetensors"]) / "model.safetensors"))
        outs = {i: load_outputs(out_dirs[i], t) for i in impls if i not in errors and impl_runs(i, t.arch)}
        floor = fp32_floor(outs.get("torch"))
        for a, b in itertools.combinations([i for i in outs if outs[i] is not None], 2):
            for q, d, ref, ok in compare_pair(a, b, outs[a], outs[b], initial, t.mode, floor=floor):
                kind = "bn_running_stats" if q == "bn_running_stats" else t.mode
                b_abs, b_rel = bounds(kind, *floor.get(q, (0.0, 0.0)))
                results.append(PairResult(t.id, a, b, q, d, d / ref if ref else float("inf"), ok, b_abs, b_rel))
    return results, errors


def default_tasks(arch, sizes=None, layers=False, variant=None):
    from impls.spec import model_spec

    cfg = model_spec(arch, **({"variant": variant} if variant and variant != "default" else {})).config
    size = cfg.input_size[-1]
    # The second, odd size exercises ceil_mode and padding (a variant may run at few sizes only).
    sizes = sizes or getattr(cfg, "verify_sizes", None) or (size, size - 25)
    # Train mode at batch 4: at batch 2 a BN over a 1x1 map (Inception v3's aux conv1) sees two
    # values per channel, and x -> (x - mean) / sqrt(var + eps) amplifies rounding up to
    # 1/sqrt(eps) = 32x when they nearly coincide; four values make that vanishingly rare.
    return [Task(arch, "eval", s, layers=layers) for s in sizes] + [Task(arch, "train", size, batch=4)]


def block_divergence(tasks, impls, out_dirs, reference="torch"):
    """{task id: {impl: (rows [(block, max_abs, max_rel)], first block past tolerance)}} against
    ``reference`` for every task that captured layers."""
    from .capture import compare_blocks
    from .tolerances import TOLERANCES

    rel = TOLERANCES[("float32", "block")]["rel"]
    report = {}
    for t in tasks:
        if not t.layers or isinstance(out_dirs.get(reference), Exception):
            continue
        ref = load_outputs(out_dirs[reference], t)
        ref_blocks = {k[6:]: v for k, v in ref.items() if k.startswith("layer:")}
        per_impl = {}
        for impl in impls:
            if impl == reference or isinstance(out_dirs.get(impl), Exception) or not impl_runs(impl, t.arch):
                continue
            out = load_outputs(out_dirs[impl], t) or {}
            per_impl[impl] = compare_blocks(ref_blocks, {k[6:]: v for k, v in out.items() if k.startswith("layer:")}, rel)
        report[t.id] = per_impl
    return report


def agreement(arch, workdir, impls=None, sizes=None, seed=0, pth=None, jobs=2, layers=False, variant=None,
              source=None, source_format=None):
    """The full matrix for one architecture. Returns (results, errors, precision info, per-block
    divergence against torch (empty unless ``layers``)). ``source``/``source_format``: a checkpoint
    in any format the bridge reads (its variant, e.g. keras.applications' "keras", decides which
    peers can run on it); ``variant`` picks the seeded test weights' variant."""
    weights = {arch: prepare_weights(arch, Path(workdir) / "weights", seed=seed, pth=pth, variant=variant,
                                     source=source, source_format=source_format)}
    variant = weights_variant(weights[arch])
    tasks = default_tasks(arch, sizes, layers, variant)
    impls = [i for i in (impls or implementations(arch, variant=variant)) if peer_fits(i, arch, variant)]
    if "keras" not in weights[arch]:
        impls = [i for i in impls if not i.startswith("keras-") or i == "keras-applications"]
    for peer in ("keras-applications", "pretrainedmodels"):  # peers that need their own file
        if peer not in weights[arch]:
            impls = [i for i in impls if i != peer]
    out_dirs = run_workers(impls, tasks, weights, workdir, jobs)
    results, errors = compare(tasks, impls, out_dirs, weights)
    precision = {}
    for i, d in out_dirs.items():
        if not isinstance(d, Exception) and (Path(d) / "report.json").exists():
            precision[i] = json.loads((Path(d) / "report.json").read_text())["precision"]
    return results, errors, precision, block_divergence(tasks, impls, out_dirs) if layers else {}


def to_json(arch, results, errors, precision, blocks=None):
    out = {"architecture": arch, "tolerances": tolerances_json(), "precision": precision, "errors": errors,
           "pairs": [asdict(r) for r in results], "ok": not errors and all(r.ok for r in results)}
    if blocks:
        out["blocks"] = {task: {impl: {"reference": "torch", "first_beyond_tolerance": first,
                                       "rows": [{"block": b, "max_abs": d, "max_rel": r} for b, d, r in rows]}
                                for impl, (rows, first) in per.items()} for task, per in blocks.items()}
    return out
