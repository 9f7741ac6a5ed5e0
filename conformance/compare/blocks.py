"""Per-block divergence: where two implementations' activations part (``verify --layers``,
``diagnose``)."""
from __future__ import annotations

import numpy as np


def compare_blocks(ref: dict, other: dict, rel_tol: float):
    """[(block, max_abs, max_rel)] over the blocks both captured, in ``ref``'s order, and the
    first block whose relative difference exceeds ``rel_tol`` (or None)."""
    rows, first = [], None
    for name, a in ref.items():
        if name not in other:
            continue
        b = other[name]
        if a.size != b.size:
            rows.append((name, float("inf"), float("inf")))
        else:
            a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
            d = float(np.abs(a64 - b64).max())
            ref_mag = float(np.abs(a64).max())
            rows.append((name, d, d / ref_mag if ref_mag else (0.0 if d == 0 else float("inf"))))
        if first is None and rows[-1][2] > rel_tol:
            first = name
    return rows, first
