"""Pin the discrete decisions of a forward pass (ReLU masks, max-pool routing) so that a float64
rerun takes exactly the branches a float32 run took.

Why: a training step's gradients are piecewise smooth. Where fp32 rounding moves a ReLU input
across zero, or swaps the two largest values of a max-pool window, the fp32 and fp64 runs
differentiate different branches and their gradients differ by far more than rounding (GoogLeNet,
batch 4 at 224: 11 ReLU flips and 19 routing flips out of 13 million decisions move the trunk
gradients 1e-2 relative, median). With the branches pinned the two runs differ by arithmetic
alone, which is what `test_training_floor.py` measures.

PyTorch only (our torch implementation calls ``torch.relu`` and ``nn.MaxPool2d``); used by tests,
never by the models themselves.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


class Kinks:
    """Recorded decisions of one forward pass, in call order."""

    def __init__(self):
        self.relu: list[torch.Tensor] = []
        self.pool: list[torch.Tensor] = []

    def differences(self, other: "Kinks") -> tuple[int, int]:
        """(ReLU masks, max-pool choices) that differ from ``other``'s."""
        if len(self.relu) != len(other.relu) or len(self.pool) != len(other.pool):
            raise ValueError("the two passes did not run the same layers")
        count = lambda a, b: sum(int((x != y).sum()) for x, y in zip(a, b))
        return count(self.relu, other.relu), count(self.pool, other.pool)


def _record_pool(self, x, kinks):
    out, idx = F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=True)
    kinks.pool.append(idx)
    return out


def _replay_pool(self, x, idx):
    if idx.shape[:2] != x.shape[:2]:
        raise ValueError(f"pinned max-pool indices {tuple(idx.shape)} do not fit input {tuple(x.shape)}")
    return x.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)


@contextlib.contextmanager
def record(kinks: Kinks):
    """Run forward passes normally, appending each ReLU mask and max-pool argmax to ``kinks``."""
    relu, pool = torch.relu, nn.MaxPool2d.forward

    def recording_relu(x):
        kinks.relu.append(x.detach() > 0)
        return relu(x)

    torch.relu = recording_relu
    nn.MaxPool2d.forward = lambda self, x: _record_pool(self, x, kinks)
    try:
        yield kinks
    finally:
        torch.relu, nn.MaxPool2d.forward = relu, pool


@contextlib.contextmanager
def replay(kinks: Kinks):
    """Run one forward pass taking the recorded branches: ReLU as ``x * mask``, max-pool as a
    gather at the recorded indices. Values at a flipped kink differ from the free pass by the
    rounding that flipped it; the gradients follow the recorded branches."""
    relu, pool = torch.relu, nn.MaxPool2d.forward
    masks, indices = iter(kinks.relu), iter(kinks.pool)
    torch.relu = lambda x: x * next(masks).to(x.dtype)
    nn.MaxPool2d.forward = lambda self, x: _replay_pool(self, x, next(indices))
    try:
        yield
    finally:
        torch.relu, nn.MaxPool2d.forward = relu, pool
