"""XLA:CPU settings for fast convolutions (Flax NNX, and Keras on jax), applied before JAX starts.

jaxlib 0.10 hands every convolution to YNNPACK (``--xla_cpu_experimental_ynn_fusion_type``
includes ``individual_convolution``). On this project's 2-core AVX-512 CPU those kernels run at
about half the speed of XLA's Eigen convolutions and keep one core idle (wall time equal to CPU
time): GoogLeNet batch 8 went from ~30 to ~48 images/s, Inception v3 from ~7 to ~14 (measured
back to back, docs/benchmarks.md). Keeping YNNPACK for dots only (``individual_dot``, jaxlib's
own default for them) gives Eigen the convolutions. Every other flag tried (oneDNN custom calls,
YNN eltwise fusion, fast math, single-threaded Eigen) measured no better than noise.

XLA reads ``XLA_FLAGS`` once, when the first JAX backend starts, so this must run before any
JAX computation; it never overrides a value the user put in ``XLA_FLAGS`` already.
"""
from __future__ import annotations

import os
import sys
import warnings

FAST_CONV_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=individual_dot",)


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return xla_bridge.backends_are_initialized()
    except Exception:  # a private API: assume the worst
        return True


def configure(flags=FAST_CONV_FLAGS) -> bool:
    """Adds ``flags`` to ``XLA_FLAGS`` (those the user has not set). Returns whether they can still
    take effect; warns if a JAX backend has already started."""
    current = os.environ.get("XLA_FLAGS", "")
    have = {f.split("=", 1)[0] for f in current.split()}
    extra = [f for f in flags if f.split("=", 1)[0] not in have]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
    if _backend_started():
        if extra:
            warnings.warn("impls.xla_cpu.configure() ran after JAX started; the XLA:CPU convolution flags take "
                          "effect only in a new process (set XLA_FLAGS before the first JAX call)", stacklevel=2)
        return False
    return True
