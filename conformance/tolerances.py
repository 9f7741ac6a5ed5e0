"""Every tolerance the suite and ``verify`` apply, in one place, with the reason for each.

fp32 logits and aux logits: max|Δ| ≤ ABS and max|Δ| ≤ REL × max|reference|, per mode.
Different frameworks sum convolutions in different orders (oneDNN, XLA, Eigen), so exact
equality is not expected; measured on keras.applications InceptionV3 across its own three
backends the floor is ~1e-6 relative at |logit| ≈ 20, so REL = 1e-5 leaves one decade of room
and still catches every convention slip (a wrong BN eps or pad moves logits by > 1e-3).
Train mode normalises with batch statistics of a 2-image batch (98 values per channel at 7x7),
which amplifies rounding: PyTorch fp32 alone is 1.3e-5 relative from PyTorch fp64 on the aux
logits of GoogLeNet (measured, test weights, batch 2); every framework sits at that floor, so
two of them may differ by twice it. REL = 5e-5 in train mode covers that and still sits 10x
below what a BN eps slip (1e-3 vs 1e-5) does to the outputs.
BN running statistics after one train-mode forward are compared with the eval bounds after
translating PyTorch's unbiased-variance update to the biased one Flax and Keras use.
On GPU the same bounds hold only with TF32 / reduced-precision matmuls switched off, which the
workers do (``conformance.precision``); bf16/TF32 runs are not part of the suite.
"""

TOLERANCES = {
    ("float32", "eval"): {"abs": 1e-4, "rel": 1e-5},
    ("float32", "train"): {"abs": 1e-4, "rel": 5e-5},
    ("float32", "bn_running_stats"): {"abs": 1e-4, "rel": 1e-5},
}


def within(max_abs: float, max_ref: float, kind: str, dtype: str = "float32") -> bool:
    t = TOLERANCES[(dtype, kind)]
    return max_abs <= t["abs"] and max_abs <= t["rel"] * max_ref


def as_json():
    return {f"{d}/{k}": v for (d, k), v in TOLERANCES.items()}
