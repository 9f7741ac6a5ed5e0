"""FID and the Inception Score from images or statistics files, in one framework's process.

    from fid import fid, statistics
    value = fid("real/", "fake/", framework="flax").value          # two folders (or .npz files)
    stats = statistics("real/", framework="flax")                  # save with fid.stats.save
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from weights_bridge.errors import InputFileError

from . import stats as S
from .distance import Distance, frechet_distance, inception_score
from .features import DIMS, Extractor
from .images import ImageSource, is_statistics


def _field(dims: int) -> str:
    if dims not in DIMS:
        raise ValueError(f"--dims {dims}: expected one of {', '.join(map(str, DIMS))}")
    return DIMS[dims]


SPLITS = 10  # the Inception Score's, as torch-fidelity and the paper


def check_images(images: ImageSource, splits: Optional[int] = None) -> None:
    """Enough images for a covariance (2), and for the Inception Score's ``splits`` if given:
    known from the count alone, so callers check before building a network."""
    if len(images) < 2:
        raise InputFileError(f"{images.path}: {len(images)} image(s): a covariance needs at least 2")
    if splits and len(images) < splits:
        raise InputFileError(f"{images.path}: {len(images)} images; the Inception Score's {splits} splits "
                             f"need at least {splits}")


def features_of(source, extractor: Extractor, dims: int = 2048, batch_size: int = 50, isc: bool = False,
                progress: Optional[Callable[[int, int], None]] = None):
    """(Statistics of ``source``'s images at ``dims``, their logits_unbiased or None). Features are
    merged into float64 statistics batch by batch; only the logits (N x 1008) are kept, for the
    Inception Score."""
    images = source if isinstance(source, ImageSource) else ImageSource(source)
    check_images(images)
    field, running, logits, done = _field(dims), S.RunningStatistics(dims), [], 0
    fields = (field, "logits_unbiased") if isc else (field,)
    for batch in images.batches(batch_size):
        out = extractor(batch, fields)
        running.add(out[field])
        if isc:
            logits.append(out["logits_unbiased"])
        done += len(batch)
        if progress:
            progress(done, len(images))
    return running.result(), (np.concatenate(logits) if isc else None)


def statistics(source, framework: str = "torch", mode: str = "tf1", dims: int = 2048, weights=None,
               batch_size: int = 50, progress=None, extractor: Optional[Extractor] = None) -> S.Statistics:
    """The feature statistics of a folder or ``.npz`` of images (a statistics file: read as it is)."""
    if is_statistics(source):
        return S.load(source)
    extractor = extractor or Extractor(framework, mode, weights)
    return features_of(source, extractor, dims, batch_size, progress=progress)[0]


def fid(a, b, framework: str = "torch", mode: str = "tf1", dims: int = 2048, weights=None, batch_size: int = 50,
        progress=None) -> Distance:
    """FID between two sources, each a folder or ``.npz`` of images or a statistics ``.npz``."""
    extractor = None
    stats = []
    for source in (a, b):
        if not is_statistics(source) and extractor is None:
            extractor = Extractor(framework, mode, weights)
        stats.append(statistics(source, framework, mode, dims, weights, batch_size, progress, extractor))
    return frechet_distance(*stats)


def inception_score_of(source, framework: str = "torch", mode: str = "tf1", weights=None, batch_size: int = 50,
                       splits: int = SPLITS, progress=None):
    """(mean, std) of the Inception Score of a folder or ``.npz`` of images (torch-fidelity's rule)."""
    images = source if isinstance(source, ImageSource) else ImageSource(source)
    check_images(images, splits)  # before the network is built
    extractor = Extractor(framework, mode, weights)
    _, logits = features_of(images, extractor, 2048, batch_size, isc=True, progress=progress)
    return inception_score(logits, splits)

