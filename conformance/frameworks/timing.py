"""Throughput as every benchmark row measures it (``bench``, ``bench --variant fid``)."""
from __future__ import annotations

import statistics
import time


def images_per_second(fn, warmup, repeats, batch) -> float:
    """Throughput of ``fn`` (one batch per call): the median of ``repeats`` timed calls after
    ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)
