"""``inception-bridge``: convert, verify, diagnose, summarise and export Inception-family checkpoints; FID.

Exit codes: 0 success; 1 implementations disagree beyond tolerance; 2 usage or other bridge
error; 3 unreadable or corrupt input; 4 unsafe input refused; 5 weights do not fit the
architecture; 6 output cannot be written. Errors print on one line; ``--debug`` adds the traceback
and keeps the frameworks' own log lines (TensorFlow, absl, XLA, oneDNN), which are otherwise
left out (``conformance.quiet``).
"""
from __future__ import annotations

import argparse
import sys

from impls.spec import ARCHITECTURES
from weights_bridge.errors import BridgeError
from weights_bridge.extras import as_missing_extra
from weights_bridge.formats import FORMATS

from .. import quiet
from .commands import cmd_bench, cmd_convert, cmd_diagnose, cmd_export_onnx, cmd_seed_weights, cmd_summary
from .facts import add_fact_options
from .fid import add_commands as add_fid_commands
from .inspect import cmd_inspect
from .verify import cmd_verify

FORMAT_NAMES = tuple(FORMATS)
KNOWN = f"known: {', '.join(ARCHITECTURES)}"
WORKDIR_HELP = "keep the workers' inputs, outputs and logs here (default: a temporary folder, removed at the end)"


class Parser(argparse.ArgumentParser):
    """Usage errors as every other error: one line, exit 2."""

    def error(self, message):
        self.exit(2, f"inception-bridge: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def architecture(name: str) -> str:
    """An --arch/ARCH value: a known architecture, else a usage error naming the known ones."""
    if name not in ARCHITECTURES:
        raise argparse.ArgumentTypeError(f"unknown architecture {name!r}; {KNOWN}")
    return name


def parser():
    p = Parser(prog="inception-bridge", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks and the frameworks' own log lines "
                                                       "(TensorFlow, absl, XLA, oneDNN)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a checkpoint between formats")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--arch", type=architecture, help=f"architecture (needed unless SRC is a neutral folder): {KNOWN}")
    c.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="format of SRC (default: by extension)")
    c.add_argument("--to", dest="dst_format", choices=FORMAT_NAMES, help="format of DST (default: by extension)")
    c.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    c.add_argument("--allow-nonfinite", action="store_true", help="accept NaN/Inf values")
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--variant", help="checkpoint variant of a native SRC that cannot record it "
                                     "(inception_v3: default or keras, keras.applications' padding; "
                                     "inception_resnet_v2: default or keras, BN without gamma)")
    add_fact_options(c)
    c.set_defaults(func=cmd_convert)

    i = sub.add_parser("inspect", help="what a checkpoint holds: format, architecture, tensors, parameters, facts; "
                                       "refuses what convert refuses")
    i.add_argument("file")
    i.add_argument("--arch", type=architecture, help=f"architecture (needed unless FILE is a neutral folder): {KNOWN}")
    i.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="format of FILE (default: by extension)")
    i.add_argument("--variant", help="checkpoint variant of a native FILE that cannot record it (as for convert)")
    i.add_argument("--allow-nonfinite", action="store_true", help="report NaN/Inf values without failing (exit 5)")
    i.add_argument("--json", metavar="OUT", help="write the report as JSON here ('-': to stdout, instead of the table)")
    i.set_defaults(func=cmd_inspect)

    v = sub.add_parser("verify", help="run every implementation on the same weights and compare")
    v.add_argument("arch", type=architecture, help=KNOWN)
    v.add_argument("--weights", help="checkpoint to verify (any format); default: seeded test weights")
    v.add_argument("--json", help="write the matrix as JSON here")
    v.add_argument("--impls", help="comma-separated subset, e.g. torch,flax,keras-jax")
    v.add_argument("--sizes", type=int, nargs="+", help="eval input sizes (default: native and native-25)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--workdir", help=WORKDIR_HELP)
    v.add_argument("--from", dest="src_format", choices=FORMAT_NAMES, help="format of --weights (default: by extension)")
    v.add_argument("--variant", help="checkpoint variant (inception_v3: default, or keras: keras.applications' "
                                     "padding, no aux head, with the keras-applications peer)")
    v.add_argument("--layers", action="store_true", help="also compare every block's output and name the first to drift")
    v.add_argument("--train", action="store_true", help="compare one training step instead, in float32 and "
                   "float64: loss, gradients, BN statistics, SGD and RMSProp updates (every architecture)")
    v.add_argument("--data-parallel", action="store_true", help="with --train: also run the step data parallel on "
                   "2 CPU devices (torch DDP/gloo, JAX sharded batch, Keras DataParallel) against one device")
    v.add_argument("--report", metavar="DIR", help="write report.md and PNG plots here (needs matplotlib)")
    v.set_defaults(func=cmd_verify)

    d = sub.add_parser("diagnose", help="name the convention that makes two implementations disagree")
    d.add_argument("arch", type=architecture, help=KNOWN)
    d.add_argument("--weights", required=True, help="the checkpoint both sides carry (any format)")
    d.add_argument("--against", required=True,
                   help="an implementation (torch, flax, keras-tensorflow, ..., torchvision) or a .npz with the "
                        "peer's 'logits' (and optionally the NCHW 'input' it saw and its eval-mode aux head outputs "
                        "under our names, e.g. 'aux1', 'aux2': needed to see a flatten-order slip)")
    d.add_argument("--size", type=int)
    d.add_argument("--workdir", help=WORKDIR_HELP)
    d.set_defaults(func=cmd_diagnose)

    b = sub.add_parser("bench", help="eval throughput of ours against the peers, in one run (a benchmark, not a test)")
    b.add_argument("arch", type=architecture, help=KNOWN)
    b.add_argument("--frameworks", nargs="+", help="subset, e.g. torch flax keras-jax torchvision (with --variant "
                                                   "fid: pytorch-fid torch-fidelity)")
    b.add_argument("--variant", choices=("default", "fid"), default="default",
                   help="fid (inception_v3 only): FID feature extraction from uint8 images, ours (fid.Extractor) "
                        "against pytorch-fid and torch-fidelity")
    b.add_argument("--mode", choices=("tf1", "pytorch-fid", "clean"), default="tf1",
                   help="with --variant fid: our input pipeline (default tf1)")
    b.add_argument("--batch", type=int, help="default 8 (with --variant fid: 50, pytorch-fid's)")
    b.add_argument("--size", type=int, help="input size (default: native; with --variant fid: the uint8 "
                                            "images' size, 299 by default)")
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--peak-gflops", type=float, help="the machine's fp32 peak (default: cores x flop/cycle of the instruction set x base clock)")
    b.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows (tens of seconds each)")
    b.add_argument("--json")
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser("summary", help="per-block output shape, parameters and MACs")
    s.add_argument("arch", type=architecture, help=KNOWN)
    s.add_argument("--size", type=int)
    s.add_argument("--num-classes", type=int, default=1000)
    s.add_argument("--no-aux", action="store_true")
    s.set_defaults(func=cmd_summary)

    w = sub.add_parser("seed-weights", help="write seeded test weights with O(1) activations (He-scaled convs, "
                                            "calibrated BN statistics), as the conformance suite uses them")
    w.add_argument("arch", type=architecture, help=KNOWN)
    w.add_argument("out", help="checkpoint to write (format by extension, or --to)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--num-classes", type=int, help="default: the variant's (1000; the FID Inception's 1008)")
    w.add_argument("--no-aux", action="store_true")
    w.add_argument("--variant", default="default")
    w.add_argument("--to", choices=FORMAT_NAMES, help="format of OUT (default: by extension)")
    w.set_defaults(func=cmd_seed_weights)

    o = sub.add_parser("export-onnx", help="export our PyTorch (or Keras) model with these weights to ONNX, "
                                           "checked with onnxruntime")
    o.add_argument("arch", type=architecture, help=KNOWN)
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
    add_fid_commands(sub, FORMAT_NAMES)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    # Before any framework loads. The stderr filter only when main is the program (argv None):
    # a caller's own stderr (a test's capture, a notebook) is left alone.
    quiet.configure(keep_logs=args.debug, filter_stderr=argv is None)
    try:
        try:
            args.func(args)
        except ModuleNotFoundError as e:  # a package an extra brings, not installed: say which extra
            raise as_missing_extra(e, args.command) or e
    except BridgeError as e:
        if args.debug:
            raise
        message = " ".join(str(e).split())  # one line, whatever the message holds
        print(f"inception-bridge: error: {message}", file=sys.stderr)
        return e.exit_code
    return 0

