"""Conversion time and memory: ``python -m conformance.bench.convert [ARCH] [--dir DIR]``.

Writes ARCH's checkpoint (our PyTorch model's own initial weights: speed does not depend on the
values) and converts it around the formats, each conversion in a fresh process that imports
every framework first, so the numbers are the conversion's alone: wall time of
``weights_bridge.formats.convert`` and the peak RSS it adds over the process after imports.
Prints a markdown table (docs/benchmarks.md). A measurement, not a test.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ..launch import run_module

# (source, destination) file names; every format is read once and written once at least.
PAIRS = (("ckpt.pth", "a.neutral"), ("a.neutral", "b.msgpack"), ("a.neutral", "c.weights.h5"),
         ("a.neutral", "d.pth"), ("ckpt.pth", "e.weights.h5"), ("c.weights.h5", "f.pth"),
         ("c.weights.h5", "g.msgpack"), ("b.msgpack", "h.pth"), ("b.msgpack", "i.weights.h5"),
         ("c.weights.h5", "j.neutral"))

def child(src, dst, arch):
    """One conversion in this fresh process, every framework imported first: prints its seconds
    and the peak RSS it added over the process after imports."""
    import gc
    import os
    import resource
    import time

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import importlib

    for name in ("numpy", "torch", "safetensors.numpy", "h5py", "msgpack", "keras", "jax", "flax.serialization",
                 "impls.torch_nn", "impls.flax_nnx", "impls.keras3"):  # imported before, so not counted
        importlib.import_module(name)
    from weights_bridge import formats

    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

    gc.collect()
    base, t0 = rss(), time.perf_counter()
    formats.convert(src, dst, arch, overwrite=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps({"seconds": seconds, "added_bytes": max(0, peak - base), "base_bytes": base}))




def measure(arch, directory: Path):
    import torch

    from impls.torch_nn import create_model

    sd = create_model(arch).state_dict()
    torch.save(sd, directory / "ckpt.pth")
    size = sum(v.numel() * v.element_size() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    rows = []
    for src, dst in PAIRS:
        proc = run_module("conformance.bench.convert", "--child", directory / src, directory / dst, arch,
                          process="keras-tensorflow", what=f"{src} -> {dst}")
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        rows.append({"src": src, "dst": dst, **json.loads(line[0][len("RESULT "):])})
    return size, rows


def table(arch, size, rows):
    lines = [f"{arch}: checkpoint {size / 1e6:.1f} MB (float32 tensors)", "",
             "| conversion | seconds (after imports) | peak RSS added | x checkpoint |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['src']} -> {r['dst']} | {r['seconds']:.2f} | {r['added_bytes'] / 1e6:.0f} MB "
                     f"| {r['added_bytes'] / size:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arch", nargs="?", default="inception_resnet_v2")
    p.add_argument("--dir", help="keep the files here (default: a temporary folder)")
    p.add_argument("--child", nargs=3, metavar=("SRC", "DST", "ARCH"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        return child(*a.child)
    if a.dir:
        Path(a.dir).mkdir(parents=True, exist_ok=True)
        size, rows = measure(a.arch, Path(a.dir))
    else:
        with tempfile.TemporaryDirectory(prefix="inception-bridge-convert-") as d:
            size, rows = measure(a.arch, Path(d))
    print(table(a.arch, size, rows))


if __name__ == "__main__":
    main()
