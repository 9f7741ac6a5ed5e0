"""What a checkpoint file holds, read through the bridge's own readers (so it refuses exactly what
``convert`` refuses, and never executes code from the file): its format, architecture, variant,
head, tensor and parameter counts, dtypes, checkpoint facts, and whether every tensor is finite."""
from __future__ import annotations

from collections import Counter

import numpy as np

from impls.spec.tensors import is_parameter

from .errors import WeightsMismatchError
from .formats import read, source_format


def inspect_file(path, fmt=None, architecture=None, variant=None) -> dict:
    """The report as JSON values. Non-finite tensors are read and named here (``nonfinite``);
    ``refuse_nonfinite`` then refuses them as ``convert`` would without ``allow_nonfinite``.

    ``parameters`` counts the elements of the trainable tensors (convolution and linear weights
    and biases, BN gamma and beta: what torchvision's ``num_params`` and ``sum(p.numel() for p in
    model.parameters())`` count); ``bn_statistics`` the elements of the BN running means and
    variances; BN's ``num_batches_tracked`` is never carried."""
    fmt = source_format(path, fmt)
    ckpt = read(path, fmt, architecture, allow_nonfinite=True, variant=variant)
    sizes = {name: int(a.size) for name, a in ckpt.tensors.items()}
    nonfinite = sorted(name for name, a in ckpt.tensors.items() if not np.isfinite(a).all())
    return {
        "path": str(path),
        "format": fmt,
        "architecture": ckpt.architecture,
        "variant": ckpt.variant,
        "num_classes": ckpt.num_classes,
        "aux_heads": list(ckpt.spec().aux_heads),
        "tensors": len(ckpt.tensors),
        "parameters": sum(n for name, n in sizes.items() if is_parameter(name)),
        "bn_statistics": sum(n for name, n in sizes.items() if not is_parameter(name)),
        "bytes": sum(int(a.nbytes) for a in ckpt.tensors.values()),
        "dtypes": dict(Counter(str(a.dtype) for a in ckpt.tensors.values())),
        "finite": not nonfinite,
        "nonfinite": nonfinite,
        # Only the neutral folder's config.json records them; any other file gets the variant's own.
        "facts_recorded": fmt == "safetensors",
        "facts": ckpt.all_facts(),
        "preset": ckpt.extra.get("preset"),
    }


def refuse_nonfinite(report: dict):
    """Raises what ``convert`` raises for NaN/Inf (exit 5) if the report names any."""
    bad = report["nonfinite"]
    if bad:
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise WeightsMismatchError(f"{report['path']}: tensor {bad[0]!r} contains NaN or Inf{more} "
                                   f"(allow_nonfinite=True / --allow-nonfinite to accept)")
