"""``inception-bridge bench``: our implementations against the peers, each framework in its own
process, in one run; ratios, not absolute targets, and never a timed assertion in the tests.

Peers run in their default and their best configuration (channels_last, channels_last +
torch.compile for torchvision/timm; Keras's compiled predict path on each backend for
keras.applications). The fraction of peak uses MACs from ``summary`` and the machine's
nominal fp32 peak (cores x 32 flop/cycle x clock; AVX2 FMA), which ``--peak-gflops`` overrides.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .matrix import REPO, _jax_cache_env, available

TORCH_PEERS = {"googlenet": ("torchvision",), "inception_v3": ("torchvision", "timm"), "inception_v4": ("timm",),
               "inception_resnet_v2": ("timm",)}
KERAS_PEERS = {"inception_v3": ("keras-applications",), "inception_resnet_v2": ("keras-applications",)}
PEER_CONFIGS = ("plain", "channels_last", "channels_last+compile")
# Ours: "plain" is the model as built (eval mode; Flax under nnx.jit, Keras's predict_on_batch);
# "fast" is each framework's optimize_for_inference() (impls/*/fast.py), the default inference path.
OURS_TORCH_CONFIGS = ("plain", "fast")
# XLA reads its flags once per process, so a run with impls.xla_cpu's flags is its own job; the
# keras.applications peer on jax gets them too (its best configuration, not only its default).
XLA_TUNED = "+xla_conv"


def plan(arch, frameworks=None):
    """[(impl, backend, configs, xla_tuned)] for this architecture, one worker process each."""
    jobs = [("torch", None, OURS_TORCH_CONFIGS, False)]
    jobs += [(p, None, PEER_CONFIGS, False) for p in TORCH_PEERS.get(arch, ()) if available(p)]
    jobs += [("flax", None, ("jit",), False), ("flax", None, ("fast",), True)]
    for backend in ("tensorflow", "jax", "torch"):
        if available(f"keras-{backend}"):
            if backend == "jax":
                jobs += [("keras-jax", backend, ("predict_on_batch",), False), ("keras-jax", backend, ("fast",), True)]
            else:
                jobs.append((f"keras-{backend}", backend, ("predict_on_batch", "fast"), False))
            for p in KERAS_PEERS.get(arch, ()):
                if available(p):
                    jobs.append((p, backend, ("predict_on_batch",), False))
                    if backend == "jax":
                        jobs.append((p, backend, ("predict_on_batch" + XLA_TUNED,), True))
    if frameworks:
        jobs = [j for j in jobs if j[0] in frameworks]
    return jobs


def run(arch, batch=8, size=None, frameworks=None, warmup=2, repeats=5, progress=print):
    from impls.spec import model_spec

    size = size or model_spec(arch).config.input_size[-1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (impl, backend, configs, xla_tuned) in enumerate(plan(arch, frameworks)):
            label = impl if impl != "keras-applications" else f"keras-applications ({backend})"
            progress(f"[{i + 1}] {label}: {', '.join(configs)}")
            out = Path(tmp) / f"{i}.json"
            job = {"impl": impl, "backend": backend, "arch": arch, "batch": batch, "size": size,
                   "configs": list(configs), "warmup": warmup, "repeats": repeats, "out": str(out),
                   "xla_tuned": xla_tuned}
            (Path(tmp) / f"{i}-job.json").write_text(json.dumps(job))
            proc = subprocess.run([sys.executable, "-m", "conformance.bench_worker", str(Path(tmp) / f"{i}-job.json")],
                                  cwd=REPO, env={**os.environ, **_jax_cache_env()}, capture_output=True, text=True)
            if proc.returncode != 0:
                progress(f"    failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
                continue
            for row in json.loads(out.read_text()):
                row["impl"] = label if impl == "keras-applications" else row["impl"]
                rows.append({**row, "framework": _framework(impl, backend), "ours": impl in OURS})
    return rows


OURS = ("torch", "flax", "keras-tensorflow", "keras-jax", "keras-torch")
# Flax has no peer of its own: it is held against keras.applications on Keras's jax backend.
PEER_FRAMEWORK = {"jax": "keras-jax"}


def _framework(impl, backend):
    if impl in ("torch", "torchvision", "timm"):
        return "torch"
    if impl == "flax":
        return "jax"
    return f"keras-{backend}"


def nominal_peak_gflops():
    cores = os.cpu_count() or 1
    ghz = 3.5
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        ghz = max(mhz) / 1000 if mhz else ghz
    except OSError:
        pass
    return cores * 32 * ghz


def table(arch, rows, batch, size, peak_gflops=None):
    from impls.spec import model_spec
    from impls.spec.summary import summarize

    macs = summarize(model_spec(arch, aux_logits=False), (size, size))[-1].macs
    peak = peak_gflops or nominal_peak_gflops()
    fastest = max((r["images_per_s"] for r in rows), default=0.0)
    lines = [f"{arch}, batch {batch}, {size}x{size}, fp32 eval; {macs / 1e9:.2f} GMAC/image; nominal peak {peak:.0f} GFLOP/s",
             f"{'implementation':<48}{'images/s':>10}{'vs best peer':>14}{'vs fastest':>12}{'of peak':>9}"]
    for r in rows:
        against = PEER_FRAMEWORK.get(r["framework"], r["framework"])
        peers = [p["images_per_s"] for p in rows if not p["ours"] and p["framework"] == against]
        vs_peer = f"{r['images_per_s'] / max(peers):.2f}x" if r["ours"] and peers else ""
        r["vs_best_peer"] = r["images_per_s"] / max(peers) if r["ours"] and peers else None
        r["fraction_of_peak"] = 2 * macs * r["images_per_s"] / (peak * 1e9)
        name = f"{r['impl']} [{r['config']}]" + ("" if r["ours"] else " (peer)")
        lines.append(f"{name:<48}{r['images_per_s']:>10.2f}{vs_peer:>14}{r['images_per_s'] / fastest:>11.2f}x"
                     f"{r['fraction_of_peak']:>8.0%}")
    return "\n".join(lines)
