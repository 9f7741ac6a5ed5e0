"""The checkpoint-fact options (``convert --preset`` and the single facts) and how the CLI shows
the facts (``inspect``, ``verify``).

The options only parse: whether a value can describe the checkpoint (a positive std, an offset
below num_classes, transform_input on an architecture that has it) is the bridge's to say
(``weights_bridge.presets.apply``), once the file says which architecture and variant it is.
"""
from __future__ import annotations

import argparse
import math

from weights_bridge.presets import PRESETS


def _numbers(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(map(math.isfinite, values)):
        raise argparse.ArgumentTypeError(f"expected three finite numbers R,G,B, found {text!r}")
    return values


def _count(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}") from None


def add_fact_options(p):
    g = p.add_argument_group("checkpoint facts", "what a native SRC cannot record, written to the neutral "
                             "config.json (every framework's loader applies transform_input from it)")
    by_name = {}
    for name, arch in PRESETS:
        by_name.setdefault(name, []).append(arch)
    g.add_argument("--preset", metavar="LIBRARY:WEIGHTS",
                   help="the facts a published weight set states: " + "; ".join(
                       f"{name} ({', '.join(archs)})" for name, archs in sorted(by_name.items())))
    g.add_argument("--transform-input", action=argparse.BooleanOptionalAction, default=None,
                   help="the model re-normalises ImageNet-normalised input to [-1, 1] (torchvision's "
                        "pretrained GoogLeNet and Inception v3 run with it on)")
    g.add_argument("--mean", type=_numbers, metavar="R,G,B", help="per-channel mean the input is normalised with")
    g.add_argument("--std", type=_numbers, metavar="R,G,B", help="per-channel std the input is normalised with")
    g.add_argument("--input-size", type=_count, metavar="N", help="input height and width (3 x N x N)")
    g.add_argument("--label-offset", type=_count, metavar="K",
                   help="index of the first real class (1: a 1001-class head with background at 0)")


def fact_overrides(a) -> dict:
    """The single facts given on the command line, as config.json values."""
    given = {"transform_input": a.transform_input, "mean": a.mean, "std": a.std,
             "input_size": None if a.input_size is None else [3, a.input_size, a.input_size],
             "label_offset": a.label_offset}
    return {k: v for k, v in given.items() if v is not None}


def fact_rows(facts: dict) -> list:
    """The facts as (name, value as shown) pairs."""
    shown = {
        "transform_input": "on: the model re-normalises ImageNet-normalised input to [-1, 1]"
                           if facts["transform_input"] else "off",
        "input_size": " x ".join(map(str, facts["input_size"])),
        "input_space": facts["input_space"],
        "mean": ", ".join(f"{v:g}" for v in facts["mean"]),
        "std": ", ".join(f"{v:g}" for v in facts["std"]),
        "label_offset": str(facts["label_offset"]),
        "padding_convention": facts["padding_convention"],
    }
    return list(shown.items())


def aligned(rows) -> str:
    """(name, value) rows as lines with the values in one column."""
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"{name.ljust(width)}{value}" for name, value in rows)
