"""The CLI's commands besides ``verify``: convert, diagnose, bench, summary, export-onnx."""
from __future__ import annotations

import numpy as np

from weights_bridge.errors import BridgeError, MissingExtraError, ToleranceError

from .progress import Progress
from ..workdir import work_folder


def cmd_convert(a):
    from weights_bridge.formats import convert, stderr_progress

    from .facts import fact_overrides

    convert(a.src, a.dst, a.arch, a.src_format, a.dst_format, overwrite=a.overwrite,
            allow_nonfinite=a.allow_nonfinite, progress=None if a.quiet else stderr_progress, variant=a.variant,
            preset=a.preset, facts=fact_overrides(a))


def cmd_diagnose(a):
    from weights_bridge.extras import require, what_to_install
    from weights_bridge.formats import read
    from weights_bridge.torch_io import to_model

    from .. import registry
    from ..agreement.diagnose import diagnose, format_report

    require("diagnose (it flips conventions in our PyTorch model)", registry.get("torch").requires)
    if a.against in registry.IMPLEMENTATIONS and registry.get(a.against).missing():
        raise MissingExtraError(f"diagnose --against {a.against} needs "
                                f"{what_to_install(registry.get(a.against).missing())}")

    ckpt = read(a.weights, architecture=a.arch)
    size = a.size or ckpt.spec().config.input_size[-1]
    if a.against.endswith(".npz"):
        peer = np.load(a.against)
        heads = list(ckpt.spec().aux_heads)
        unknown = sorted(set(peer.files) - {"logits", "input", *heads})
        if "logits" not in peer or unknown:
            raise BridgeError(f"{a.against}: expected an array 'logits' (optionally 'input', NCHW, and eval-mode aux "
                              f"head outputs named {heads or 'nothing: this checkpoint has no aux heads'}); "
                              f"found {sorted(peer.files)}")
        x = peer["input"].astype(np.float32) if "input" in peer else _diagnose_input(size)
        peer_logits = {k: peer[k] for k in ("logits", *heads) if k in peer}
    else:
        x = _diagnose_input(size)
        with Progress("diagnose") as progress:
            peer_logits = _peer_logits(a, x, progress)
    with Progress("diagnose") as progress:
        rep = diagnose(to_model(ckpt), x, peer_logits, progress=progress.step)
    print(format_report(rep))
    if not rep.baseline_agrees and not rep.culprits:
        raise ToleranceError(f"{a.arch}: outputs differ from {a.against} and no known convention explains it")


def _diagnose_input(size):
    return np.random.default_rng(0).standard_normal((2, 3, size, size), dtype=np.float32)


def _peer_logits(a, x, progress):
    """Runs one implementation's worker on ``x`` with the checkpoint converted for it."""
    from .. import registry
    from ..agreement import matrix
    from ..agreement.checkpoints import checkpoint_variant, prepare
    from ..agreement.tasks import Task
    from ..launch import WorkerPool

    task = Task(a.arch, "eval", x.shape[-1])
    with work_folder(a.workdir, "inception-bridge-diagnose-") as workdir, \
            WorkerPool(workdir / "logs", jobs=1, progress=progress.step) as pool:
        np.save(workdir / f"input-{task.batch}x{task.size}.npy", x)
        files = prepare(a.arch, workdir / "weights", pool, [a.against], source=a.weights)
        impl = registry.get(a.against)
        if not impl.runs(a.arch, checkpoint_variant(files)):
            raise BridgeError(f"{a.against} does not run this {a.arch} checkpoint")
        errors, _ = matrix.run_tasks([a.against], [task], files, workdir, pool)
        if errors:
            raise BridgeError(f"{a.against}: {errors[a.against]}")
        return matrix.load_outputs(matrix.output_path(workdir, a.against, task))["logits"]


def cmd_bench(a):
    from impls.spec import model_spec

    from ..agreement.matrix import write_json
    from ..bench import run, table

    size = a.size or model_spec(a.arch).config.input_size[-1]
    with Progress("bench") as progress:
        if a.variant == "fid":
            return _bench_fid(a, size, progress.step)
        a.batch = a.batch or 8
        rows = run.run(a.arch, a.batch, size, a.frameworks, a.warmup, a.repeats, progress=progress.step,
                       compile=not a.no_compile)
    print(table.table(a.arch, rows, a.batch, size, a.peak_gflops))
    if a.json:
        write_json(a.json, {"architecture": a.arch, "batch": a.batch, "size": size, "rows": rows})


def _bench_fid(a, size, progress):
    from ..agreement.matrix import write_json
    from ..bench import fid_speed

    if a.arch != fid_speed.ARCH:
        raise BridgeError(f"--variant fid is the FID Inception: architecture {fid_speed.ARCH}, not {a.arch}")
    batch = a.batch or 50
    rows = fid_speed.run(batch, size, a.frameworks, a.warmup, a.repeats, a.mode, progress, compile=not a.no_compile)
    print(fid_speed.table(rows, batch, size, a.mode))
    if a.json:
        write_json(a.json, {"architecture": a.arch, "variant": "fid", "mode": a.mode, "batch": batch, "size": size,
                            "rows": rows})


def cmd_seed_weights(a):
    from weights_bridge.extras import require
    from weights_bridge.formats import detect, require_format

    from .. import registry

    require("seed-weights (torch makes the seeded weights)", registry.get("torch").requires)
    require_format(a.to or detect(a.out), a.out, reading=False)  # before the seconds of calibration
    from ..frameworks.torch_nn.seed import save_seeded

    save_seeded(a.arch, a.out, a.seed, a.num_classes, not a.no_aux, a.variant, a.to)


def cmd_summary(a):
    from impls.spec import model_spec
    from impls.spec.summary import format_table, summarize

    spec = model_spec(a.arch, num_classes=a.num_classes, aux_logits=not a.no_aux)
    size = a.size or spec.config.input_size[-1]
    print(format_table(summarize(spec, (size, size))))


def cmd_export_onnx(a):
    from weights_bridge.formats import stderr_progress

    from ..onnx import export_onnx

    res = export_onnx(a.arch, a.weights, a.out, opset=a.opset, overwrite=a.overwrite, input_size=a.size,
                      weights_format=a.src_format, progress=stderr_progress, framework=a.framework)
    what = {"torch": "PyTorch", "keras": "Keras"}[res["framework"]]
    print(f"wrote {res['path']} (opset {res['opset']}, input {res['input_layout']}); onnxruntime vs {what} "
          "max relative difference "
          + ", ".join(f"batch {n}: {d:.1e}" for n, d in res["max_rel"].items()))


