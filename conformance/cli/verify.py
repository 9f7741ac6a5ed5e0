"""``inception-bridge verify``: the agreement matrix, or with ``--train`` the training step."""
from __future__ import annotations

import sys
from dataclasses import asdict

from weights_bridge.errors import BridgeError, MissingExtraError, ToleranceError
from weights_bridge.extras import require, what_to_install

from .. import registry
from ..agreement import matrix
from ..agreement.checkpoints import checkpoint_config, checkpoint_variant
from ..compare.steps import kink_flips, table
from ..compare.tolerances import TOLERANCES
from ..launch import WorkerPool
from ..training import data_parallel, run
from .facts import aligned, fact_rows
from .progress import Progress
from .tables import blocks_table, matrix_table
from ..workdir import where, work_folder


def _say(message):
    print(message, file=sys.stderr, flush=True)


def checkpoint_header(files, source=None, source_format=None) -> str:
    """What the implementations run: the checkpoint and its facts (from the neutral folder every
    worker reads), and where the facts came from."""
    from impls.spec import model_spec
    from weights_bridge.formats import source_format as format_of

    cfg = checkpoint_config(files)
    heads = model_spec(cfg["architecture"], aux_logits=cfg["aux_logits"], variant=cfg["variant"]).aux_heads
    if source is None:
        where = "seeded test weights, the variant's own facts"
    elif format_of(source, source_format) == "safetensors":
        where = f"{source}, facts from its config.json" + (f", preset {cfg['preset']}" if cfg.get("preset") else "")
    else:
        where = f"{source}, the variant's own facts: a {format_of(source, source_format)} file holds tensors only"
    head = (f"checkpoint: {cfg['architecture']}, variant {cfg['variant']}, {cfg['num_classes']} classes, "
            f"aux heads {', '.join(heads) or 'none'} ({where})")
    return head + "\n" + aligned([(f"  {name}", value) for name, value in fact_rows(cfg)])


def requested(a):
    """The implementations --impls names, each installed (else exit 2 naming its extra), or None.
    Also before any work: without --weights, torch (it makes the seeded test weights); with
    --report, matplotlib."""
    names = a.impls.split(",") if a.impls else None
    for name in names or ():
        lacking = registry.get(name).missing()
        if lacking:
            raise MissingExtraError(f"verify --impls {name} needs {what_to_install(lacking)}")
    if not a.weights:
        require("verify without --weights (torch makes the seeded test weights)", registry.get("torch").requires)
    if a.report:
        require("verify --report (its plots)", ("matplotlib",))
    return names


def installed(a, files, candidates) -> list:
    """Of ``candidates`` (default: every implementation that runs the checkpoint), the installed
    ones; prints those left out and the extra that brings each. Fewer than two: exit 2."""
    variant = checkpoint_variant(files)
    runs = [n for n in candidates or registry.IMPLEMENTATIONS if registry.get(n).runs(a.arch, variant)]
    chosen = [n for n in runs if registry.get(n).available()]
    skipped = {n: registry.get(n).missing() for n in runs if n not in chosen}
    if skipped:
        print("not installed, not run:\n" + aligned([(f"  {n}", what_to_install(m)) for n, m in skipped.items()]),
              flush=True)
    if len(chosen) < 2 and skipped:
        which = f"only {', '.join(chosen)} is" if chosen else "none is"
        first, lacking = next(iter(skipped.items()))
        raise MissingExtraError(f"verify {a.arch} compares implementations and {which} installed: "
                                f"{first} needs {what_to_install(lacking)}")
    return chosen


def cmd_verify(a):
    if a.train:
        return cmd_verify_train(a)
    if a.data_parallel:
        raise BridgeError("--data-parallel compares a training step: use it with --train")
    from weights_bridge.checkpoint import Checkpoint

    if not a.weights:
        Checkpoint(a.arch, {}, aux_logits=None, variant=a.variant or "default").spec()  # an unknown variant fails here
    impls = requested(a)
    with work_folder(a.workdir, "inception-bridge-verify-") as workdir, Progress("verify") as progress, \
            WorkerPool(workdir / "logs", progress=progress.step) as pool:
        files = matrix.prepare_files(a.arch, workdir, pool, impls, a.seed, a.variant, a.weights, a.src_format)
        print(checkpoint_header(files, a.weights, a.src_format), flush=True)
        impls = installed(a, files, impls)  # refused here, the error is the only line on stderr
        _say(f"verifying {a.arch}{where(a.workdir, workdir)}")
        results, errors, precision, blocks = matrix.agreement(
            a.arch, workdir, pool, impls, tuple(a.sizes) if a.sizes else None, a.seed, layers=a.layers, files=files)
        config = checkpoint_config(files)  # read before the temporary folder goes
    shown = list(dict.fromkeys([r.a for r in results] + [r.b for r in results] + list(errors)))
    print(matrix_table(results, shown))
    if blocks:
        print(blocks_table(blocks))
    for impl, err in errors.items():
        print(f"\n{impl}: worker failed: {err}")
    report = matrix.to_json(a.arch, results, errors, precision, blocks)
    report["checkpoint"] = config
    if a.report:
        from ..agreement.report import write_report

        print(f"report: {write_report(a.report, a.arch, results, errors, precision, blocks, shown)}")
    if a.json:
        matrix.write_json(a.json, report)
    if not report["ok"]:
        bad = [r for r in results if not r.ok]
        raise ToleranceError(f"{a.arch}: {len(bad)} comparisons beyond tolerance, {len(errors)} workers failed")
    print(f"\nall {len(results)} comparisons within tolerance")


def cmd_verify_train(a):
    """The float32 step at its floor-raised bounds, then the float64 step at the tight float64
    bounds (the conventions alone). Prints both tables; exit 1 beyond tolerance."""
    from ..agreement.checkpoints import prepare

    impls = [i for i in requested(a) or registry.OURS if i in registry.OURS]
    with work_folder(a.workdir, "inception-bridge-train-") as workdir, Progress("verify --train") as progress, \
            WorkerPool(workdir / "logs", progress=progress.step) as pool:
        files = prepare(a.arch, workdir / "weights", pool, seed=a.seed, variant=a.variant, source=a.weights,
                        source_format=a.src_format)
        print(checkpoint_header(files, a.weights, a.src_format), flush=True)
        impls = installed(a, files, impls)
        _say(f"verifying one training step of {a.arch}{where(a.workdir, workdir)}")
        res = run.train_agreement(a.arch, workdir, pool, impls, files=files)
        if a.data_parallel:  # DDP, JAX and Keras DataParallel against one device
            res = data_parallel.add_to_training(res, a.arch, workdir, pool, files, impls)
        # float64 on every worker that ran: torch joins a float32 step for its floor, and its
        # float32 rows past a bound are branch flips only where its float64 rows agree
        res64 = run.train_agreement(a.arch, workdir, pool, res["impls"] + list(res["errors"]), files=files,
                                    dtype="float64")
        config = checkpoint_config(files)  # read before the temporary folder goes
    print(table(res))
    if a.data_parallel:
        print(data_parallel.contrast_table(res))
    for impl, err in res["errors"].items():
        print(f"\n{impl}: worker failed: {err}")
    print("\nfloat64 (tight bounds, no floor):" + table(res64))
    for impl, err in res64["errors"].items():
        print(f"\n{impl}: float64 worker failed: {err}")
    flips = kink_flips(res, res64)
    if flips:
        print(f"\nfloat32 rows past their floor-raised bound where float64 agrees at "
              f"{TOLERANCES[('float64', 'grad')]['rel']:g}: branch flips (a ReLU input or max-pool pair within fp32 "
              "rounding of its kink; docs/training.md), reported, not failed: "
              + ", ".join(f"{r.a}-{r.b} {r.quantity}" for r in flips))
    report = run.to_json(res)
    report["checkpoint"] = config
    report["float64"] = run.to_json(res64)
    report["kink_flips"] = [asdict(r) for r in flips]
    report["ok"] = (not res["errors"] and all(r.ok or r in flips for r in res["rows"])) and report["float64"]["ok"]
    if a.json:
        matrix.write_json(a.json, report)
    if not report["ok"]:
        bad = [r for r in res["rows"] + res64["rows"] if not r.ok and r not in flips]
        raise ToleranceError(f"{a.arch} training step: {len(bad)} comparisons beyond tolerance, "
                             f"{len(res['errors']) + len(res64['errors'])} workers failed")
    print(f"\nall {len(res['rows']) + len(res64['rows'])} training-step comparisons (float32, float64) "
          "within tolerance" + (f", {len(flips)} float32 rows as branch flips (above)" if flips else ""))
