"""The agreement matrix: every implementation on the same checkpoint and inputs, each in its
framework's worker, every pair compared. ``agreement(...)`` is what ``inception-bridge verify``
and the test suite both call."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import registry
from ..compare.blocks import compare_blocks
from ..compare.outputs import pair_results
from ..compare.tolerances import TOLERANCES
from ..compare.tolerances import as_json as tolerances_json
from ..memory import eval_memory, parameter_count
from .checkpoints import checkpoint_config, checkpoint_variant, prepare
from .tasks import default_tasks, make_inputs


def output_path(workdir, impl, task) -> Path:
    return Path(workdir) / impl / f"{task.id}.npz"


def load_outputs(path):
    """One implementation's outputs on one task ({field: array}), or None if it has none."""
    if not Path(path).exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def run_tasks(impls, tasks, files, workdir, pool):
    """Runs every task on every implementation; returns ({impl: error message}, {impl: precision})."""
    inputs = make_inputs(tasks, workdir)
    config = checkpoint_config(files)
    calls, owners, needs = [], [], []
    parameters = parameter_count(files["neutral"])
    for impl in impls:
        (Path(workdir) / impl).mkdir(parents=True, exist_ok=True)
        weights = {"neutral": files["neutral"], "peer": files.get(impl)}
        for t in tasks:
            calls.append((registry.get(impl).process, "outputs",
                          dict(impl=impl, arch=t.arch, weights=weights, config=config, mode=t.mode,
                               input=inputs[t.id], out=str(output_path(workdir, impl, t)), layers=t.layers), None))
            owners.append((impl, t))
            needs.append(eval_memory(parameters, registry.get(impl).process))  # idle workers go first if it does not fit
    errors, precision = {}, {}
    for (impl, t), reply in zip(owners, pool.map(calls, need=needs)):
        if isinstance(reply, Exception):
            errors.setdefault(impl, str(reply))
        else:
            precision[impl] = reply["precision"]
    return errors, precision


def compare(tasks, impls, workdir, files, errors):
    """PairResults of every pair on every task, from the implementations' output files."""
    from weights_bridge import neutral

    initial = neutral.read(files["neutral"]).tensors
    results = []
    for t in tasks:
        outs = {i: load_outputs(output_path(workdir, i, t)) for i in impls if i not in errors}
        outs = {i: o for i, o in outs.items() if o is not None}
        unbiased = {i: registry.get(i).bn_variance == registry.UNBIASED for i in outs}
        partial = [i for i in outs if registry.get(i).outputs is not None]
        results += pair_results(t.id, t.mode, outs, unbiased, initial, partial)
    return results


def block_divergence(tasks, impls, workdir, errors, reference="torch"):
    """{task id: {impl: (rows [(block, max_abs, max_rel)], first block past tolerance)}} against
    ``reference`` for every task that captured layers."""
    rel = TOLERANCES[("float32", "block")]["rel"]
    report = {}
    for t in tasks:
        if not t.layers or reference in errors:
            continue
        layer = lambda out: {k[6:]: v for k, v in (out or {}).items() if k.startswith("layer:")}
        ref = layer(load_outputs(output_path(workdir, reference, t)))
        report[t.id] = {impl: compare_blocks(ref, layer(load_outputs(output_path(workdir, impl, t))), rel)
                        for impl in impls if impl != reference and impl not in errors}
    return report


def prepare_files(arch, workdir, pool, impls=None, seed=0, variant=None, source=None, source_format=None) -> dict:
    """The checkpoint files ``agreement`` runs (``checkpoints.prepare``) for ``impls`` (default:
    every installed implementation), under ``workdir``."""
    wanted = impls or registry.IMPLEMENTATIONS
    return prepare(arch, Path(workdir) / "weights", pool, [i for i in wanted if registry.get(i).available()], seed,
                   variant=variant, source=source, source_format=source_format)


def agreement(arch, workdir, pool, impls=None, sizes=None, seed=0, layers=False, variant=None, source=None,
              source_format=None, files=None):
    """The full matrix for one architecture. Returns (results, errors, precision info, per-block
    divergence against torch (empty unless ``layers``)). ``source``/``source_format``: a checkpoint
    in any format the bridge reads (its variant, e.g. keras.applications' "keras", decides which
    peers can run on it); ``variant`` picks the seeded test weights' variant; ``files``: what
    ``prepare_files`` gave, if the caller has prepared them already. Progress: the pool's ``progress``."""
    workdir = Path(workdir)
    files = files or prepare_files(arch, workdir, pool, impls, seed, variant, source, source_format)
    variant = checkpoint_variant(files)
    tasks = default_tasks(arch, sizes, layers, variant)
    impls = [i for i in (impls or registry.implementations(arch, variant)) if registry.get(i).runs(arch, variant)]
    impls = [i for i in impls if registry.get(i).peer_format is None or i in files]
    errors, precision = run_tasks(impls, tasks, files, workdir, pool)
    results = compare(tasks, impls, workdir, files, errors)
    return results, errors, precision, (block_divergence(tasks, impls, workdir, errors) if layers else {})


def to_json(arch, results, errors, precision, blocks=None):
    out = {"architecture": arch, "tolerances": tolerances_json(), "precision": precision, "errors": errors,
           "pairs": [asdict(r) for r in results], "ok": not errors and all(r.ok for r in results)}
    if blocks:
        out["blocks"] = {task: {impl: {"reference": "torch", "first_beyond_tolerance": first,
                                       "rows": [{"block": b, "max_abs": d, "max_rel": r} for b, d, r in rows]}
                                for impl, (rows, first) in per.items()} for task, per in blocks.items()}
    return out


def write_json(path, report):
    from weights_bridge.atomic import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=str))
