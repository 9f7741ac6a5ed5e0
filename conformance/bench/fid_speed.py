"""``inception-bridge bench inception_v3 --variant fid``: FID feature extraction (pool3, from
uint8 images) of ours in every framework against pytorch-fid and torch-fidelity, in one run, each
implementation in its framework's worker, one at a time.

Ours: ``fid.Extractor`` (the fast inference form and the framework's own input pipeline, tf1 by
default). The peers run the file the bridge exports for each, built by their own constructors
(``conformance.frameworks.torch_nn.fid_peers``): as their FID code runs them ("default") and at
their best on a CPU (inference_mode, channels-last, optionally torch.compile). Every row gets the
same seeded uint8 batch of ``size`` x ``size`` pixels, which each pipeline resizes to 299 its
own way (at 299 the resize is the identity, but each still runs it), and ends with numpy features.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..agreement.checkpoints import prepare
from ..launch import WorkerError, WorkerPool
from ..registry import OURS, available, get

ARCH = "inception_v3"
PEERS = ("pytorch-fid", "torch-fidelity")


def plan(frameworks=None, compile=True):
    """[(impl, worker process, configs)] of the installed implementations (``frameworks``: a subset)."""
    from ..frameworks.torch_nn.fid_peers import PEER_BENCH_CONFIGS

    peer_configs = tuple(c for c in PEER_BENCH_CONFIGS if compile or "compile" not in c)
    jobs = [(impl, get(impl).process, ("fast",)) for impl in OURS]
    jobs += [(p, get(p).process, peer_configs) for p in PEERS]
    return [j for j in jobs if available(j[0]) and (not frameworks or j[0] in frameworks)]


def run(batch=50, size=299, frameworks=None, warmup=2, repeats=5, mode="tf1", progress=None, compile=True):
    """Every planned row, one worker at a time (timings must not share the cores), in ``repeats``
    rounds: each round times one call of every implementation in turn (its workers keep their
    models built), so a change in the machine's load between rows falls on every row alike; a
    row's images/s is the median over rounds. The first round also runs ``warmup`` calls.
    ``progress`` hears each request's ``steps.Step`` (a failed implementation is its failed
    step; the others still run)."""
    import statistics

    rates, first = {}, {}
    with tempfile.TemporaryDirectory() as tmp, WorkerPool(Path(tmp) / "logs", jobs=1, progress=progress) as pool:
        files = prepare(ARCH, Path(tmp) / "weights", pool, PEERS, variant="fid", aux_logits=False)
        jobs = plan(frameworks, compile)
        for r in range(repeats):
            for job in list(jobs):
                impl, process, configs = job
                try:
                    out = pool.request(process, "fid_bench", impl=impl, batch=batch, size=size, mode=mode,
                                       configs=list(configs), warmup=warmup if r == 0 else 0, repeats=1,
                                       weights=files)
                except WorkerError:  # reported as its failed step; the others still run
                    jobs.remove(job)
                    continue
                for row in out["rows"]:
                    first.setdefault((impl, row["config"]), {**row, "ours": get(impl).ours})
                    rates.setdefault((impl, row["config"]), []).append(row["images_per_s"])
    return [{**row, "images_per_s": statistics.median(rates[key]), "rounds": len(rates[key])}
            for key, row in first.items()]


def table(rows, batch, size, mode="tf1") -> str:
    """images/s of each row and its ratio to pytorch-fid's default path, to pytorch-fid at its best
    and to torch-fidelity at its best."""
    def rate(impl, config=None):
        found = [r["images_per_s"] for r in rows if r["impl"] == impl and config in (None, r["config"])]
        return max(found) if found else None

    against = {"vs pytorch-fid default": rate("pytorch-fid", "default"), "vs pytorch-fid best": rate("pytorch-fid"),
               "vs torch-fidelity best": rate("torch-fidelity")}
    threads = next((r["threads"] for r in rows if r.get("threads")), None)
    head = (f"FID Inception features (pool3), batch {batch}, uint8 {size}x{size} input resized to 299 by each "
            f"pipeline (ours: {mode}), fp32" + (f", torch threads {threads}" if threads else ""))
    lines = [head, f"{'implementation':<44}{'images/s':>10}" + "".join(f"{k:>25}" for k in against)]
    for r in rows:
        name = f"{r['impl']} [{r['config']}]" + ("" if r["ours"] else " (peer)")
        ratios = "".join(f"{r['images_per_s'] / v:>24.2f}x" if v else f"{'':>25}" for v in against.values())
        r.update({k.replace(" ", "_"): (r["images_per_s"] / v if v else None) for k, v in against.items()})
        lines.append(f"{name:<44}{r['images_per_s']:>10.2f}{ratios}")
    return "\n".join(lines)
