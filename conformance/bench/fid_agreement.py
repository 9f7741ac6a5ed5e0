"""FID on two procedural image sets, computed from torch, flax and keras features (each in its own
process, through ``inception-bridge fid-stats``), and with torch under the three input modes; the
markdown tables of docs/fid.md ("Agreement on the metric", "Modes").

    python -m conformance.bench.fid_agreement --weights W.pth --images 1000 --out agreement.md

The sets are made here, deterministically: side A smooth images (a colour gradient and three
Gaussian blobs each), side B the same generator with other seeds, shifted colours and pixel
noise. Both are small (48x64, height x width) so every mode resizes them to 299, and each
mode's resize rule is what moves its FID.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fid.distance import frechet_distance
from fid.stats import load

from ..launch import run_module
from ..workdir import work_folder

FRAMEWORKS = ("torch", "flax", "keras")
MODES = ("tf1", "pytorch-fid", "clean")
SIZE = (48, 64)  # height x width


def _smooth(rng, n, size):
    """n float images (n, H, W, 3): a random colour gradient plus three Gaussian blobs each."""
    h, w = size
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    xx, yy = xx[None, :, :, None], yy[None, :, :, None]
    img = rng.uniform(40, 215, (n, 1, 1, 3)) + rng.uniform(-120, 120, (n, 1, 1, 3)) * (xx - 0.5) \
        + rng.uniform(-120, 120, (n, 1, 1, 3)) * (yy - 0.5)
    for _ in range(3):
        cx, cy = rng.uniform(0, 1, (n, 1, 1, 1)), rng.uniform(0, 1, (n, 1, 1, 1))
        r = rng.uniform(0.05, 0.3, (n, 1, 1, 1))
        img += rng.uniform(-110, 110, (n, 1, 1, 3)) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r ** 2))
    return img


def image_sets(n: int, size=SIZE, seed: int = 0):
    """(A, B): two uint8 (n, H, W, 3) sets from different distributions, the same for a seed."""
    a = _smooth(np.random.default_rng([seed, 0]), n, size)
    rng = np.random.default_rng([seed, 1])
    b = _smooth(rng, n, size) * np.array([1.1, 0.9, 0.75]) + np.array([12.0, 0.0, -15.0]) \
        + rng.normal(0, 18, (n, *size, 3))
    return tuple(np.clip(np.rint(x), 0, 255).astype(np.uint8) for x in (a, b))


def runs(keras_backend: str = "tensorflow"):
    """[(framework, mode, worker process)]: every framework on tf1, then torch on the other modes."""
    process = {"torch": "", "flax": "", "keras": f"keras-{keras_backend}"}
    return [(f, "tf1", process[f]) for f in FRAMEWORKS] + [("torch", m, "") for m in MODES[1:]]


def run(weights, workdir, n: int = 1000, dims: int = 2048, keras_backend: str = "tensorflow", batch_size: int = 50,
        frameworks=FRAMEWORKS, modes=MODES, progress=print, reuse=False) -> dict:
    """{"fid": {"framework mode": value}, ...}: each (framework, mode) a ``fid-stats`` run per side
    in a fresh process of that framework, the distance taken here from the saved statistics
    (``reuse``: statistics already in ``workdir`` are read, not made again: a run resumed)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sides = {}
    for side, images in zip("ab", image_sets(n)):
        sides[side] = workdir / f"{side}-{n}.npz"
        np.savez(sides[side], images=images)
    out = {"images": n, "size": list(SIZE), "dims": dims, "keras_backend": keras_backend, "fid": {}, "residual": {},
           "statistics": {}, "same_images": {}}
    kept, by_mode = {}, {}  # tf1 statistics by framework; torch's by mode
    for framework, mode, process in runs(keras_backend):
        if framework not in frameworks or mode not in modes:
            continue
        stats = []
        for side, path in sides.items():
            dst = workdir / f"stats-{framework}-{mode}-{dims}-{side}.npz"
            progress(f"{framework} {mode}: {path.name} -> {dst.name}" + (" (kept)" if reuse and dst.exists() else ""))
            if not (reuse and dst.exists()):
                run_module("conformance.cli", "fid-stats", path, dst, "--framework", framework, "--mode", mode,
                           "--dims", dims, "--weights", weights, "--batch-size", batch_size, "--quiet",
                           "--overwrite", process=process, what=f"fid-stats {framework} {mode}")
            stats.append(load(dst))
        if mode == "tf1":  # each framework's statistics against torch's: max |difference| / max |torch's|
            kept[framework] = stats
            if "torch" in kept:
                out["statistics"][framework] = [max(float(np.abs(getattr(s, k) - getattr(t, k)).max() /
                                                          np.abs(getattr(t, k)).max())
                                                    for s, t in zip(stats, kept["torch"])) for k in ("mu", "sigma")]
        if framework == "torch":  # each set against itself through tf1: the distance the pipeline alone makes
            by_mode[mode] = stats
            if "tf1" in by_mode and mode != "tf1":
                out["same_images"][mode] = [frechet_distance(s, t).value for s, t in zip(by_mode["tf1"], stats)]
        d = frechet_distance(*stats)
        out["fid"][f"{framework} {mode}"], out["residual"][f"{framework} {mode}"] = d.value, d.residual
        progress(f"    FID {d.value:.9g}")
    return out


def agreement_table(result) -> str:
    """Markdown: FID (tf1) per framework and its relative deviation from each other framework's."""
    fids = {k.split()[0]: v for k, v in result["fid"].items() if k.endswith(" tf1")}
    names = [f if f != "keras" else f"keras ({result['keras_backend']})" for f in fids]
    stats = result.get("statistics", {})
    lines = ["| framework | FID (tf1) | " + " | ".join(f"rel. dev. from {n}" for n in names)
             + " | mu, sigma vs torch's (max abs. diff. / max abs.) |", "|---|---|" + "---|" * (len(names) + 1)]
    for f, name in zip(fids, names):
        devs = [abs(fids[f] - fids[g]) / abs(fids[g]) for g in fids]
        st = ", ".join(f"{v:.1e}" for v in stats[f]) if f in stats else ""
        lines.append(f"| {name} | {fids[f]:.6f} | " + " | ".join(f"{d:.1e}" for d in devs) + f" | {st} |")
    return "\n".join(lines)


def modes_table(result) -> str:
    """Markdown: torch's FID under each mode and its change from tf1's."""
    fids = {k.split()[1]: v for k, v in result["fid"].items() if k.startswith("torch ")}
    base = fids.get("tf1")
    same = result.get("same_images", {})
    lines = ["| mode | FID(A, B) (torch) | vs tf1 | FID(A in tf1, A in this mode) | FID(B in tf1, B in this mode) |",
             "|---|---|---|---|---|"]
    for mode, value in fids.items():
        rel = f"{(value - base) / base:+.2%}" if base else ""
        a, b = same.get(mode, [0.0, 0.0])
        lines.append(f"| {mode} | {value:.6f} | {rel} | {a:.6f} | {b:.6f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m conformance.bench.fid_agreement", description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="the FID Inception's weights (any format the bridge reads)")
    p.add_argument("--images", type=int, default=1000, help="images per side (default 1000)")
    p.add_argument("--dims", type=int, default=2048, choices=(64, 192, 768, 2048))
    p.add_argument("--keras-backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--workdir", help="keep the image sets and statistics here (default: a temporary folder, removed "
                                      "at the end)")
    p.add_argument("--reuse", action="store_true", help="read the statistics already in --workdir instead of "
                                                        "making them again (a run resumed)")
    p.add_argument("--json", help="write the values as JSON here")
    p.add_argument("--out", help="write the markdown tables here (default: print them)")
    a = p.parse_args(argv)
    with work_folder(a.workdir, "inception-bridge-fid-agreement-") as workdir:
        result = run(a.weights, workdir, a.images, a.dims, a.keras_backend, frameworks=a.frameworks, modes=a.modes,
                     progress=lambda m: print(m, file=sys.stderr, flush=True), reuse=a.reuse)
    text = (f"{a.images} images per side, {SIZE[0]}x{SIZE[1]}, --dims {a.dims}\n\n"
            f"{agreement_table(result)}\n\n{modes_table(result)}\n")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    if a.out:
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
