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
from .tolerances import within
from .worker import IMPLS, PEERS

REPO = Path(__file__).resolve().parent.parent
TORCH_CONVENTION = ("torch", "torchvision")  # BN running_var updated with the unbiased variance
REQUIRES = {"torch": ("torch",), "torchvision": ("torch", "torchvision"), "flax": ("jax", "flax"),
            "keras-tensorflow": ("keras", "tensorflow"), "keras-jax": ("keras", "jax"),
            "keras-torch": ("keras", "torch")}
BN_MOMENTUM = 0.1  # torch convention; Flax/Keras 0.9 is the same rule written the other way


def available(impl: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in REQUIRES[impl])


def implementations(arch: str, peers=True):
    names = list(IMPLS) + ([p for p, archs in PEERS.items() if arch in archs] if peers else [])
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


def prepare_weights(arch, workdir, seed=0, num_classes=1000, aux_logits=True, pth=None):
    """A seeded torch state_dict (or the user's ``pth``) converted by the bridge into every
    framework's file. Returns {format: path}."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {"torch": str(pth or workdir / f"{arch}.pth"), "safetensors": str(workdir / f"{arch}.neutral"),
             "flax": str(workdir / f"{arch}.msgpack"), "keras": str(workdir / f"{arch}.weights.h5")}
    if pth is None:
        args = [arch, paths["torch"], "--seed", str(seed), "--num-classes", str(num_classes)]
        _run([sys.executable, "-m", "conformance.weights", *args + ([] if aux_logits else ["--no-aux"])],
             what="making test weights")
    backend = keras_backend_for_conversion()
    targets = ["safetensors", "flax"] + (["keras"] if backend else [])
    if not backend:
        paths.pop("keras")
    code = ("import sys, weights_bridge as wb\n"
            f"for dst in {[paths[t] for t in targets]!r}:\n"
            f"    wb.convert({paths['torch']!r}, dst, {arch!r}, overwrite=True)\n")
    _run([sys.executable, "-c", code], env={"KERAS_BACKEND": backend or ""}, what="converting test weights")
    return paths


@dataclass(frozen=True)
class Task:
    arch: str
    mode: str
    size: int
    batch: int = 2

    @property
    def id(self):
        return f"{self.arch}-{self.mode}-{self.size}"


def make_inputs(tasks, workdir, seed=0):
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
               "tasks": [{"id": t.id, "arch": t.arch, "mode": t.mode, "input": inputs[t.id],
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


def compare_pair(a, b, a_out, b_out, initial, mode, dtype="float32"):
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
        rows.append((f, d, ref, within(d, ref, mode, dtype)))
    if any(k.startswith("stat:") for k in a_out):
        sa = _biased_stats(a_out, initial) if a in TORCH_CONVENTION else {k[5:]: v for k, v in a_out.items() if k.startswith("stat:")}
        sb = _biased_stats(b_out, initial) if b in TORCH_CONVENTION else {k[5:]: v for k, v in b_out.items() if k.startswith("stat:")}
        if sa.keys() != sb.keys():
            rows.append(("bn_running_stats", float("inf"), 0.0, False))
        elif sa:
            d = max(float(np.abs(sa[k].astype(np.float64) - sb[k]).max()) for k in sa)
            ref = max(float(np.abs(sa[k]).max()) for k in sa)
            rows.append(("bn_running_stats", d, ref, within(d, ref, "bn_running_stats", dtype)))
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


def compare(tasks, impls, out_dirs, weights):
    from safetensors.numpy import load_file

    results, errors = [], {i: str(d) for i, d in out_dirs.items() if isinstance(d, Exception)}
    for t in tasks:
        initial = load_file(str(Path(weights[t.arch]["safetensors"]) / "model.safetensors"))
        outs = {i: load_outputs(out_dirs[i], t) for i in impls if i not in errors and impl_runs(i, t.arch)}
        for a, b in itertools.combinations([i for i in outs if outs[i] is not None], 2):
            for q, d, ref, ok in compare_pair(a, b, outs[a], outs[b], initial, t.mode):
                results.append(PairResult(t.id, a, b, q, d, d / ref if ref else float("inf"), ok))
    return results, errors


def default_tasks(arch, sizes=None):
    from impls.spec import model_spec

    size = model_spec(arch).config.input_size[-1]
    sizes = sizes or (size, size - 25)  # the second, odd size exercises ceil_mode and padding
    return [Task(arch, "eval", s) for s in sizes] + [Task(arch, "train", size)]


def agreement(arch, workdir, impls=None, sizes=None, seed=0, pth=None, jobs=2):
    """The full matrix for one architecture. Returns (results, errors, precision info)."""
    impls = impls or implementations(arch)
    tasks = default_tasks(arch, sizes)
    weights = {arch: prepare_weights(arch, Path(workdir) / "weights", seed=seed, pth=pth)}
    if "keras" not in weights[arch]:
        impls = [i for i in impls if not i.startswith("keras-")]
    out_dirs = run_workers(impls, tasks, weights, workdir, jobs)
    results, errors = compare(tasks, impls, out_dirs, weights)
    precision = {}
    for i, d in out_dirs.items():
        if not isinstance(d, Exception) and (Path(d) / "report.json").exists():
            precision[i] = json.loads((Path(d) / "report.json").read_text())["precision"]
    return results, errors, precision


def to_json(arch, results, errors, precision):
    return {"architecture": arch, "tolerances": tolerances_json(), "precision": precision, "errors": errors,
            "pairs": [asdict(r) for r in results], "ok": not errors and all(r.ok for r in results)}
