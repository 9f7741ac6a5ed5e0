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

import os
import tempfile
from pathlib import Path

from impls.xla_cpu import FAST_CONV_FLAGS

from ..agreement.checkpoints import prepare
from ..launch import WorkerPool
from ..registry import OURS, PEERS, available, get

PEER_CONFIGS = ("plain", "channels_last", "channels_last+compile")
# Ours: "plain" is the model as built (eval mode; Flax under nnx.jit, Keras's predict_on_batch);
# "fast" is each framework's optimize_for_inference() (impls/*/fast.py), the default inference path;
# torch also "fast+compile" (compile=True: it pays on some CPUs and models, not on others).
OURS_TORCH_CONFIGS = ("plain", "fast", "fast+compile")
# XLA reads its flags once per process, so a run with impls.xla_cpu's flags is its own job; the
# keras.applications peer on jax gets them too (its best configuration, not only its default).
XLA_TUNED = "+xla_conv"


def plan(arch, frameworks=None, compile=True):
    """[(impl, backend, configs, xla_tuned)] for this architecture, one worker process each.
    Peers: the registry's torch peers that run this architecture's default checkpoint, and the
    Keras peers that have it (keras.applications runs its own seeded file, on every backend).
    ``compile=False`` leaves out the torch.compile rows (tens of seconds each on a small CPU)."""
    torch_peers = [p for p in PEERS if get(p).process == "torch" and get(p).runs(arch) and available(p)]
    keras_peers = [p for p in PEERS if get(p).process.startswith("keras-") and arch in get(p).archs]
    keep = lambda configs: tuple(c for c in configs if compile or "compile" not in c)  # noqa: E731
    jobs = [("torch", None, keep(OURS_TORCH_CONFIGS), False)]
    jobs += [(p, None, keep(PEER_CONFIGS), False) for p in torch_peers]
    jobs += [("flax", None, ("jit",), False), ("flax", None, ("fast",), True)]
    for backend in ("tensorflow", "jax", "torch"):
        if available(f"keras-{backend}"):
            if backend == "jax":
                jobs += [("keras-jax", backend, ("predict_on_batch",), False), ("keras-jax", backend, ("fast",), True)]
            else:
                jobs.append((f"keras-{backend}", backend, ("predict_on_batch", "fast"), False))
            for p in keras_peers:
                if available(p):
                    jobs.append((p, backend, ("predict_on_batch",), False))
                    if backend == "jax":
                        jobs.append((p, backend, ("predict_on_batch" + XLA_TUNED,), True))
    if frameworks:
        jobs = [j for j in jobs if j[0] in frameworks]
    return jobs


def run(arch, batch=8, size=None, frameworks=None, warmup=2, repeats=5, progress=None, compile=True):
    """Every planned row, one worker at a time (timings must not share the cores); ``progress``
    hears each request's ``steps.Step`` (a failed row is its failed step; the others still run)."""
    from impls.spec import model_spec

    size = size or model_spec(arch).config.input_size[-1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, WorkerPool(Path(tmp) / "logs", jobs=1, progress=progress) as pool:
        # Speed depends on the weights: default inits shrink activations until denormal floats
        # appear (Inception-ResNet-v2 eager ran 1.5x slower on torch's default init than on timm's).
        # So every implementation runs trained-like weights: ours and torchvision/timm one seeded
        # checkpoint (He-scaled, BN calibrated; conformance.frameworks.torch_nn.seed), keras.applications
        # its own file made the same way (conformance.frameworks.keras3.applications).
        files = prepare(arch, Path(tmp) / "weights", pool, aux_logits=False)
        for impl, backend, configs, xla_tuned in plan(arch, frameworks, compile):
            label = impl if impl != "keras-applications" else f"keras-applications ({backend})"
            process = f"keras-{backend}" if backend else get(impl).process
            # XLA reads its flags once, at start-up: a tuned row gets a worker of its own.
            env = {"XLA_FLAGS": " ".join([os.environ.get("XLA_FLAGS", ""), *FAST_CONV_FLAGS]).strip()} \
                if xla_tuned else None
            try:
                out = pool.request(process, "bench", env, impl=impl, arch=arch, batch=batch, size=size,
                                   configs=list(configs), warmup=warmup, repeats=repeats, weights=files)
            except Exception:  # reported as its failed step; the others still run
                continue
            for row in out["rows"]:
                row["impl"] = label if impl == "keras-applications" else row["impl"]
                rows.append({**row, "framework": _framework(impl, backend), "ours": impl in OURS})
    return rows




def _framework(impl, backend):
    if impl in ("torch", "torchvision", "timm"):
        return "torch"
    if impl == "flax":
        return "jax"
    return f"keras-{backend}"
