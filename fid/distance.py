"""The Frechet distance between two Gaussians and the Inception Score, in float64.

FID = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)). The trace of the square root is
taken the symmetric way: with A = S1^(1/2) (eigendecomposition, negative rounding clipped),
(S1 S2)^(1/2) is similar to (A S2 A)^(1/2), a symmetric positive semi-definite matrix whose
eigenvalues ``eigh`` finds to float64 accuracy; Tr = sum(sqrt(eigenvalues)). pytorch-fid instead
runs ``scipy.linalg.sqrtm`` on the non-symmetric product and torch-fidelity ``eigvals`` on it:
the same number, reached by less stable roads. ``residual`` reports how well the square root
squares back: |R R - A S2 A|_F / |A S2 A|_F for R = (A S2 A)^(1/2).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weights_bridge.errors import WeightsMismatchError

from .stats import Statistics


@dataclass(frozen=True)
class Distance:
    value: float
    residual: float  # of the matrix square root (see the module)
    method: str = "eigh of S1^(1/2) S2 S1^(1/2), float64"


def _psd_sqrt(matrix):
    """(V diag(sqrt(max(w, 0))) V^T, w) of a symmetric matrix."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T, w


def frechet_distance(a: Statistics, b: Statistics) -> Distance:
    if a.mu.shape != b.mu.shape:
        raise WeightsMismatchError(f"statistics of {a.dims} and {b.dims} dimensions: compute both with the same --dims")
    root_a, _ = _psd_sqrt(a.sigma)
    middle = root_a @ b.sigma @ root_a
    root, w = _psd_sqrt(middle)
    diff = a.mu - b.mu
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.sqrt(np.clip(w, 0, None)).sum())
    scale = np.linalg.norm(middle) or 1.0
    return Distance(value, float(np.linalg.norm(root @ root - middle) / scale))


def inception_score(logits, splits: int = 10, shuffle: bool = True, seed: int = 2020):
    """(mean, std) of exp(E_x KL(p(y|x) || p(y))) over ``splits`` equal parts, in float64 from
    ``logits`` (N, classes): torch-fidelity's ``isc_features_to_metric`` (its default shuffle with
    ``RandomState(2020)``; the FID Inception's ``logits_unbiased``, all 1008 classes)."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < splits:
        raise ValueError(f"the Inception Score needs at least {splits} images' logits, got shape {x.shape}")
    n = x.shape[0]
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = x - x.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part, log_part = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        kl = (part * (log_part - np.log(part.mean(axis=0, keepdims=True)))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
