"""The synthetic fine-tuning task every framework's transfer test uses (numpy only)."""
from __future__ import annotations

import numpy as np

NUM_CLASSES = 5
SIZE = 64  # googlenet's aux heads pool adaptively, so small inputs keep the test cheap
BATCH = 4
STEPS = 3
LR = 0.01
AUX_WEIGHT = 0.3  # torchvision's reference training: loss = main + 0.3 * (aux1 + aux2)


def dataset(channels_last: bool, n: int = 8, seed: int = 0):
    """``n`` random images (N,3,S,S or N,S,S,3) and labels in [0, NUM_CLASSES)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    return (np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if channels_last else x), y


def batches(x, y):
    """STEPS batches of BATCH, cycling through the data."""
    n = len(x) // BATCH
    for step in range(STEPS):
        i = (step % n) * BATCH
        yield x[i:i + BATCH], y[i:i + BATCH]
