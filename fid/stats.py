"""Feature statistics as FID uses them: the mean and covariance of a set's features, accumulated in
float64 batch by batch (memory bounded by one batch and the d x d sums, never every feature),
and their file: pytorch-fid's ``.npz`` with ``mu`` and ``sigma``."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weights_bridge.atomic import atomic_path
from weights_bridge.errors import InputFileError, UnsafeInputError, WeightsMismatchError


@dataclass
class Statistics:
    """``mu`` (d,) and ``sigma`` (d, d), the unbiased covariance (``np.cov``'s, as pytorch-fid and
    torch-fidelity compute it), of ``count`` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int = 0

    @property
    def dims(self) -> int:
        return int(self.mu.shape[0])


class RunningStatistics:
    """Mean and covariance merged batch by batch in float64 (Chan et al.'s pairwise update of
    the mean and the sum of squared deviations), so a mean far from zero loses no digits to a
    ``sum(x x^T) - n mu mu^T`` cancellation."""

    def __init__(self, dims: int):
        self.count, self.mean = 0, np.zeros(dims)
        self.deviations = np.zeros((dims, dims))  # sum over samples of (x - mean)(x - mean)^T

    def add(self, features) -> None:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"features of shape {x.shape}, expected (n, {self.mean.shape[0]})")
        n = x.shape[0]
        if n == 0:
            return
        mean = x.mean(axis=0)
        centred = x - mean
        delta, total = mean - self.mean, self.count + n
        self.deviations += centred.T @ centred + np.outer(delta, delta) * (self.count * n / total)
        self.mean += delta * (n / total)
        self.count = total

    def result(self) -> Statistics:
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 images, got {self.count}")
        return Statistics(self.mean.copy(), self.deviations / (self.count - 1), self.count)


def save(stats: Statistics, path, overwrite: bool = False) -> Path:
    """pytorch-fid's statistics file (``np.savez(path, mu=..., sigma=...)``), written atomically;
    ``count`` travels along (pytorch-fid ignores it)."""
    check(stats, str(path))
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mu=stats.mu, sigma=stats.sigma, count=np.int64(stats.count))
    return Path(path)


def load(path) -> Statistics:
    """A statistics file (pytorch-fid's ``.npz``: ``mu``, ``sigma``), read without unpickling and
    checked: shapes (d,) and (d, d), finite, symmetric."""
    with open_npz(path) as f:
        missing = [k for k in ("mu", "sigma") if k not in f.files]
        if missing:
            raise InputFileError(f"{path}: not a statistics file: no array {missing[0]!r} "
                                 f"(expected 'mu' and 'sigma', pytorch-fid's .npz)")
        mu, sigma = read_array(f, "mu", path), read_array(f, "sigma", path)
        count = read_array(f, "count", path) if "count" in f.files else np.int64(0)
    stats = Statistics(np.asarray(mu, np.float64), np.asarray(sigma, np.float64), int(count) if count.shape == () else 0)
    check(stats, str(path))
    return stats


def open_npz(path):
    """An ``.npz`` opened without unpickling anything; a missing, unreadable or non-``.npz`` file
    is a one-line error naming it."""
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputFileError(f"{path}: unreadable ({e})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise InputFileError(f"{path}: a single array (.npy), expected an .npz archive of named arrays")
    return f


def read_array(f, key, path) -> np.ndarray:
    """One array of an open ``.npz``: an object array (pickled) is refused, a damaged one named."""
    try:
        return f[key]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UnsafeInputError(f"{path}: array {key!r} holds Python objects: refused to unpickle") from None
        raise InputFileError(f"{path}: array {key!r} is unreadable ({e})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise InputFileError(f"{path}: array {key!r} is unreadable ({e})") from None


def check(stats: Statistics, where: str) -> None:
    mu, sigma = stats.mu, stats.sigma
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise WeightsMismatchError(f"{where}: tensor 'sigma' has shape {sigma.shape} and 'mu' {mu.shape}; "
                                   f"expected (d, d) and (d,)")
    for name, a in (("mu", mu), ("sigma", sigma)):
        if not np.isfinite(a).all():
            raise WeightsMismatchError(f"{where}: tensor {name!r} contains NaN or Inf")
    if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9 * max(1.0, float(np.abs(sigma).max()))):
        raise WeightsMismatchError(f"{where}: tensor 'sigma' {sigma.shape} is not symmetric: not a covariance")
