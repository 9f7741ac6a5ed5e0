"""``inception-bridge``: convert, verify, diagnose, summarise and export Inception-family checkpoints.

Exit codes: 0 success; 1 implementations disagree beyond tolerance; 2 usage or other bridge
error; 3 unreadable or corrupt input; 4 unsafe input refused; 5 weights do not fit the
architecture; 6 output cannot be written. Errors print on one line; ``--debug`` adds the traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .errors import BridgeError, ToleranceError

FORMAT_NAMES = ("safetensors", "torch", "flax", "keras", "timm", "keras-applications", "pretrainedmodels")


def _architectures():
    from impls.spec import ARCHITECTURES

    return ARCHITECTURES


def cmd_convert(a):
    from .formats import convert, stderr_progress

    convert(a.src, a.dst, a.arch, a.src_format, a.dst_format, overwrite=a.overwrite,
            allow_nonfinite=a.allow_nonfinite, progress=None if a.quiet else stderr_progress, variant=a.variant)


def _matrix_table(results, impls):
    lines = []
    for task in dict.fromkeys(r.task for r in results):
        rows = [r for r in results if r.task == task]
        worst = {}
        for r in rows:
            key = (r.a, r.b)
            if key not in worst or r.max_rel > worst[key].max_rel:
                worst[key] = r
        names = [i for i in impls if any(i in k for k in worst)]
        lines.append(f"\n{task}: max relative difference over all outputs (x = beyond tolerance)")
        width = max(len(n) for n in names) + 2
        lines.append(" " * width + "".join(n.rjust(width) for n in names))
        for a in names:
            cells = []
            for b in names:
                r = worst.get((a, b)) or worst.get((b, a))
                cells.append("-".rjust(width) if r is None else
                             (f"{r.max_rel:.1e}" + ("" if r.ok else " x")).rjust(width))
            lines.append(a.ljust(width) + "".join(cells))
    return "\n".join(lines)


def _blocks_table(blocks):
    lines = []
    for task, per in blocks.items():
        rel = {impl: {b: r for b, _, r in rows} for impl, (rows, _) in per.items()}
        names = list(dict.fromkeys(b for rows in rel.values() for b in rows))
        lines.append(f"\n{task}: per-block max relative difference against torch")
        lines.append("block".ljust(16) + "".join(i.rjust(18) for i in per))
        for name in names:
            cells = [(f"{rel[i][name]:.1e}" if name in rel[i] else "-").rjust(18) for i in per]
            lines.append(name.ljust(16) + "".join(cells))
        for impl, (_, first) in per.items():
            lines.append(f"{impl}: " + (f"first block past tolerance: {first}" if first else "every block within tolerance"))
    return "\n".join(lines)


def cmd_verify(a):
    if getattr(a, "train", False):  # one training step instead (conformance/training.py)
        from conformance.training import cli_verify_train

        return cli_verify_train(a)
    if getattr(a, "data_parallel", False):
        raise BridgeError("--data-parallel compares a training step: use it with --train")
    from conformance.matrix import agreement, implementations, to_json

    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="inception-bridge-verify-"))
    source, variant = None, a.variant or "default"
    if a.weights:  # read (and check) here, so bad input fails with the bridge's own exit codes
        from . import neutral
        from .formats import read

        ckpt = read(a.weights, a.src_format, a.arch, variant=a.variant)
        source, variant = workdir / "weights" / "source.neutral", ckpt.variant
        source.parent.mkdir(parents=True, exist_ok=True)
        neutral.write(ckpt, source, overwrite=True)
    else:
        from .checkpoint import Checkpoint

        Checkpoint(a.arch, {}, variant=variant).spec()  # an unknown variant fails here
    impls = a.impls.split(",") if a.impls else implementations(a.arch, variant=variant)
    sizes = tuple(a.sizes) if a.sizes else None
    print(f"verifying {a.arch} ({variant} variant) across {', '.join(impls)} (workers in {workdir})",
          file=sys.stderr, flush=True)
    results, errors, precision, blocks = agreement(a.arch, workdir, impls, sizes, a.seed, None, layers=a.layers,
                                                   variant=a.variant, source=source,
                                                   source_format="safetensors" if source else None)
    print(_matrix_table(results, impls))
    if blocks:
        print(_blocks_table(blocks))
    for impl, err in errors.items():
        print(f"\n{impl}: worker failed: {err}")
    report = to_json(a.arch, results, errors, precision, blocks)
    if a.report:
        from conformance.report import write_report

        print(f"report: {write_report(a.report, a.arch, results, errors, precision, blocks, impls)}")
    if a.json:
        from .atomic import atomic_path

        with atomic_path(a.json, overwrite=True) as tmp:
            tmp.write_text(json.dumps(report, indent=1))
    if not report["ok"]:
        bad = [r for r in results if not r.ok]
        raise ToleranceError(f"{a.arch}: {len(bad)} comparisons beyond tolerance, {len(errors)} workers failed")
    print(f"\nall {len(results)} comparisons within tolerance")


def cmd_diagnose(a):
    import numpy as np

    from conformance.diagnose import diagnose, format_report

    from .formats import read
    from .torch_io import build_model

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
        peer_logits = _peer_logits(a, x)
    rep = diagnose(build_model(ckpt), x, peer_logits)
    print(format_report(rep))
    if not rep.baseline_agrees and not rep.culprits:
        raise ToleranceError(f"{a.arch}: outputs differ from {a.against} and no known convention explains it")


def _diagnose_input(size):
    import numpy as np

    return np.random.default_rng(0).standard_normal((2, 3, size, size), dtype=np.float32)


def _peer_logits(a, x):
    """Runs one implementation's worker on ``x`` with the checkpoint converted for it."""
    import numpy as np

    from conformance import matrix

    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="inception-bridge-diagnose-"))
    from .formats import convert

    pth = workdir / "weights" / "source.pth"
    pth.parent.mkdir(parents=True, exist_ok=True)
    convert(a.weights, pth, a.arch, overwrite=True)
    weights = {a.arch: matrix.prepare_weights(a.arch, workdir / "weights", pth=pth)}
    task = matrix.Task(a.arch, "eval", x.shape[-1])
    np.save(workdir / f"input-{task.batch}x{task.size}.npy", x)
    out = matrix.run_workers([a.against], [task], weights, workdir, jobs=1)[a.against]
    if isinstance(out, Exception):
        raise BridgeError(f"{a.against}: {out}")
    return matrix.load_outputs(out, task)["logits"]


def cmd_bench(a):
    from conformance import bench
    from impls.spec import model_spec

    size = a.size or model_spec(a.arch).config.input_size[-1]
    rows = bench.run(a.arch, a.batch, size, a.frameworks, a.warmup, a.repeats,
                     progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(bench.table(a.arch, rows, a.batch, size, a.peak_gflops))
    if a.json:
        from .atomic import atomic_path

        with atomic_path(a.json, overwrite=True) as tmp:
            tmp.write_text(json.dumps({"architecture": a.arch, "batch": a.batch, "size": size, "rows": rows}, indent=1))


def cmd_summary(a):
    from impls.spec import model_spec
    from impls.spec.summary import format_table, summarize

    spec = model_spec(a.arch, num_classes=a.num_classes, aux_logits=not a.no_aux)
    size = a.size or spec.config.input_size[-1]
    print(format_table(summarize(spec, (size, size))))


def cmd_export_onnx(a):
    from .formats import stderr_progress
    from .onnx_export import export_onnx

    res = export_onnx(a.arch, a.weights, a.out, opset=a.opset, overwrite=a.overwrite, input_size=a.size,
                      weights_format=a.src_format, progress=stderr_progress, framework=a.framework)
    what = {"torch": "PyTorch", "keras": "Keras"}[res["framework"]]
    print(f"wrote {res['path']} (opset {res['opset']}, input {res['input_layout']}); onnxruntime vs {what} "
          "max relative difference "
          + ", ".join(f"batch {n}: {d:.1e}" for n, d in res["max_rel"].items()))


def parser():
    p = argparse.ArgumentParser(prog="inception-bridge", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a checkpoint between formats")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--arch", help=f"architecture (needed unless SRC is a neutral folder): {', '.join(_architectures())}")
    c.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="format of SRC (default: by extension)")
    c.add_argument("--to", dest="dst_format", choices=FORMAT_NAMES, help="format of DST (default: by extension)")
    c.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    c.add_argument("--allow-nonfinite", action="store_true", help="accept NaN/Inf values")
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--variant", help="checkpoint variant of a native SRC that cannot record it "
                                     "(inception_v3: default or keras, keras.applications' padding; "
                                     "inception_resnet_v2: default or keras, BN without gamma)")
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser("verify", help="run every implementation on the same weights and compare")
    v.add_argument("arch", choices=_architectures())
    v.add_argument("--weights", help="checkpoint to verify (any format); default: seeded test weights")
    v.add_argument("--json", help="write the matrix as JSON here")
    v.add_argument("--impls", help="comma-separated subset, e.g. torch,flax,keras-jax")
    v.add_argument("--sizes", type=int, nargs="+", help="eval input sizes (default: native and native-25)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--workdir", help="keep worker inputs and outputs here")
    v.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="format of --weights (default: by extension)")
    v.add_argument("--variant", help="checkpoint variant (inception_v3: default, or keras: keras.applications' "
                                     "padding, no aux head, with the keras-applications peer)")
    v.add_argument("--layers", action="store_true", help="also compare every block's output and name the first to drift")
    v.add_argument("--train", action="store_true", help="compare one training step instead: loss, gradients, BN "
                   "statistics, SGD and RMSProp updates (googlenet, googlenet_paper, inception_v3)")
    v.add_argument("--data-parallel", action="store_true", help="with --train: also run the step data parallel on "
                   "2 CPU devices (torch DDP/gloo, JAX sharded batch, Keras DataParallel) against one device")
    v.add_argument("--report", metavar="DIR", help="write report.md and PNG plots here (needs matplotlib)")
    v.set_defaults(func=cmd_verify)

    d = sub.add_parser("diagnose", help="name the convention that makes two implementations disagree")
    d.add_argument("arch", choices=_architectures())
    d.add_argument("--weights", required=True, help="the checkpoint both sides carry (any format)")
    d.add_argument("--against", required=True,
                   help="an implementation (torch, flax, keras-tensorflow, ..., torchvision) or a .npz with the "
                        "peer's 'logits' (and optionally the NCHW 'input' it saw and its eval-mode aux head outputs "
                        "under our names, e.g. 'aux1', 'aux2': needed to see a flatten-order slip)")
    d.add_argument("--size", type=int)
    d.add_argument("--workdir")
    d.set_defaults(func=cmd_diagnose)

    b = sub.add_parser("bench", help="eval throughput of ours against the peers, in one run (a benchmark, not a test)")
    b.add_argument("arch", choices=_architectures())
    b.add_argument("--frameworks", nargs="+", help="subset, e.g. torch flax keras-jax torchvision")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--size", type=int)
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--peak-gflops", type=float, help="the machine's fp32 peak (default: cores x flop/cycle of the instruction set x base clock)")
    b.add_argument("--json")
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser("summary", help="per-block output shape, parameters and MACs")
    s.add_argument("arch", choices=_architectures())
    s.add_argument("--size", type=int)
    s.add_argument("--num-classes", type=int, default=1000)
    s.add_argument("--no-aux", action="store_true")
    s.set_defaults(func=cmd_summary)

    o = sub.add_parser("export-onnx", help="export our PyTorch (or Keras) model with these weights to ONNX, "
                                           "checked with onnxruntime")
    o.add_argument("arch", choices=_architectures())
    o.add_argument("weights", help="checkpoint in any format (by extension, or --from)")
    o.add_argument("out", help="the .onnx file to write")
    o.add_argument("--opset", type=int, default=10, help="ONNX opset (default 10; >= 10 for ceil_mode max pools)")
    o.add_argument("--size", type=int, help="input height and width (default: the architecture's native size)")
    o.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="format of WEIGHTS")
    o.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    o.add_argument("--framework", choices=("torch", "keras"), default="torch",
                   help="which implementation to export: torch (NCHW input, default) or keras (TensorFlow backend "
                        "through tf2onnx, NHWC input)")
    o.set_defaults(func=cmd_export_onnx)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except BridgeError as e:
        if args.debug:
            raise
        message = " ".join(str(e).split())  # one line, whatever the message holds
        print(f"inception-bridge: error: {message}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
