"""The bench table: images/s, ratios against the best peer of the same framework, and the
fraction of the machine's nominal fp32 peak (cores x fp32 flop/cycle of the instruction set x base
clock; ``--peak-gflops`` overrides it)."""
from __future__ import annotations

import os

from impls.spec import model_spec
from impls.spec.summary import summarize

# Flax has no peer of its own: it is held against keras.applications on Keras's jax backend.
PEER_FRAMEWORK = {"jax": "keras-jax"}


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
