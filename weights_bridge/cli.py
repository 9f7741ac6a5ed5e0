"""``inception-bridge``: convert, verify and summarise Inception-family checkpoints.

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

FORMAT_NAMES = ("safetensors", "torch", "flax", "keras")


def _architectures():
    from impls.spec import ARCHITECTURES

    return ARCHITECTURES


def cmd_convert(a):
    from .formats import convert, stderr_progress

    convert(a.src, a.dst, a.arch, a.src_format, a.dst_format, overwrite=a.overwrite,
            allow_nonfinite=a.allow_nonfinite, progress=None if a.quiet else stderr_progress)


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


def cmd_verify(a):
    from conformance.matrix import agreement, implementations, to_json

    impls = a.impls.split(",") if a.impls else implementations(a.arch)
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="inception-bridge-verify-"))
    pth = None
    if a.weights:
        from .formats import convert

        pth = workdir / "weights" / "source.pth"
        pth.parent.mkdir(parents=True, exist_ok=True)
        convert(a.weights, pth, a.arch, overwrite=True)
    sizes = tuple(a.sizes) if a.sizes else None
    print(f"verifying {a.arch} across {', '.join(impls)} (workers in {workdir})", file=sys.stderr, flush=True)
    results, errors, precision = agreement(a.arch, workdir, impls, sizes, a.seed, pth)
    print(_matrix_table(results, impls))
    for impl, err in errors.items():
        print(f"\n{impl}: worker failed: {err}")
    report = to_json(a.arch, results, errors, precision)
    if a.json:
        from .atomic import atomic_path

        with atomic_path(a.json, overwrite=True) as tmp:
            tmp.write_text(json.dumps(report, indent=1))
    if not report["ok"]:
        bad = [r for r in results if not r.ok]
        raise ToleranceError(f"{a.arch}: {len(bad)} comparisons beyond tolerance, {len(errors)} workers failed")
    print(f"\nall {len(results)} comparisons within tolerance")


def cmd_summary(a):
    from impls.spec import model_spec
    from impls.spec.summary import format_table, summarize

    spec = model_spec(a.arch, num_classes=a.num_classes, aux_logits=not a.no_aux)
    size = a.size or spec.config.input_size[-1]
    print(format_table(summarize(spec, (size, size))))


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
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser("verify", help="run every implementation on the same weights and compare")
    v.add_argument("arch", choices=_architectures())
    v.add_argument("--weights", help="checkpoint to verify (any format); default: seeded test weights")
    v.add_argument("--json", help="write the matrix as JSON here")
    v.add_argument("--impls", help="comma-separated subset, e.g. torch,flax,keras-jax")
    v.add_argument("--sizes", type=int, nargs="+", help="eval input sizes (default: native and native-25)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--workdir", help="keep worker inputs and outputs here")
    v.set_defaults(func=cmd_verify)

    s = sub.add_parser("summary", help="per-block output shape, parameters and MACs")
    s.add_argument("arch", choices=_architectures())
    s.add_argument("--size", type=int)
    s.add_argument("--num-classes", type=int, default=1000)
    s.add_argument("--no-aux", action="store_true")
    s.set_defaults(func=cmd_summary)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except BridgeError as e:
        if args.debug:
            raise
        print(f"inception-bridge: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
