"""``inception-bridge bench``: our implementations against the peers, each framework in its own
process, in one run; ratios, not absolute targets, and never a timed assertion in the tests.

Peers run in their default and their best configuration (channels_last, channels_last +
torch.compile for torchvision/timm; Keras's compiled predict path on each backend for
keras.applications). The fraction of peak uses MACs from ``summary`` and the machine's
nominal fp32 peak (cores x fp32 flop/cycle x base clock, the flop/cycle read off the instruction
set: 64 for Intel AVX-512 (two 512-bit FMA pipes), 32 for AVX2 FMA and for AMD's AVX-512 before
Zen 5, which splits 512-bit FMAs in two), which ``--peak-gflops`` overrides. Turbo clocks above the
base make more than 100 % possible.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .matrix import REPO, _jax_cache_env, available, prepare_weights

TORCH_PEERS = {"googlenet": ("torchvision",), "inception_v3": ("torchvision", "timm"), "inception_v4": ("timm",),
               "inception_resnet_v2": ("timm",)}
KERAS_PEERS = {"inception_v3": ("keras-applications",), "inception_resnet_v2": ("keras-applications",)}
PEER_CONFIGS = ("plain", "channels_last", "channels_last+compile")
# Ours: "plain" is the model as built (eval mode; Flax under nnx.jit, Keras's predict_on_batch);
# "fast" is each framework's optimize_for_inference() (impls/*/fast.py), the default inference path;
# torch also "fast+compile" (compile=True: it pays on some CPUs and models, not on others).
OURS_TORCH_CONFIGS = ("plain", "fast", "fast+compile")
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
        # Speed depends on the weights: default inits shrink activations until denormal floats
        # appear (Inception-ResNet-v2 eager ran 1.5x slower on torch's default init than on timm's).
        # So every implementation runs trained-like weights: ours and torchvision/timm one seeded
        # checkpoint (He-scaled, BN calibrated; conformance.weights) converted by the bridge,
        # keras.applications its own file made the same way (conformance.keras_applications_weights).
        progress("[0] weights: seeded, He-scaled, BN calibrated; converted to every framework")
        weights = prepare_weights(arch, Path(tmp) / "weights", aux_logits=False)
        for i, (impl, backend, configs, xla_tuned) in enumerate(plan(arch, frameworks)):
            label = impl if impl != "keras-applications" else f"keras-applications ({backend})"
            progress(f"[{i + 1}] {label}: {', '.join(configs)}")
            out = Path(tmp) / f"{i}.json"
            job = {"impl": impl, "backend": backend, "arch": arch, "batch": batch, "size": size,
                   "configs": list(configs), "warmup": warmup, "repeats": repeats, "out": str(out),
                   "xla_tuned": xla_tuned, "weights": weights}
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


def _cpuinfo():
    """(vendor, family, flags, base GHz) of the first CPU in /proc/cpuinfo; blanks where unreadable."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    mhz = float(fields.get("cpu MHz") or 3500.0)
    return (fields.get("vendor_id", ""), int(fields.get("cpu family") or 0), set(fields.get("flags", "").split()),
            mhz / 1000)


def flops_per_cycle(vendor, family, flags):
    """fp32 flop per cycle per core: 2 FMA pipes x lanes x 2."""
    full_width_avx512 = "avx512f" in flags and (vendor == "GenuineIntel" or family >= 26)  # AMD Zen 5: family 0x1A
    if full_width_avx512:
        return 64
    return 32 if "fma" in flags else 16


def nominal_peak():
    """(GFLOP/s, how it was reckoned) for this machine."""
    vendor, family, flags, ghz = _cpuinfo()
    cores = os.cpu_count() or 1
    per_cycle = flops_per_cycle(vendor, family, flags)
    return cores * per_cycle * ghz, f"{cores} cores x {per_cycle} flop/cycle x {ghz:.2f} GHz"


def table(arch, rows, batch, size, peak_gflops=None):
    from impls.spec import model_spec
    from impls.spec.summary import summarize

    macs = summarize(model_spec(arch, aux_logits=False), (size, size))[-1].macs
    peak, how = (peak_gflops, "--peak-gflops") if peak_gflops else nominal_peak()
    fastest = max((r["images_per_s"] for r in rows), default=0.0)
    lines = [f"{arch}, batch {batch}, {size}x{size}, fp32 eval; {macs / 1e9:.2f} GMAC/image; fp32 peak {peak:.0f} GFLOP/s ({how})",
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
