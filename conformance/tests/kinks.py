"""Pin the discrete decisions of a forward pass (ReLU masks, max-pool routing) so that a float64
rerun takes exactly the branches a float32 run took.

Why: a training step's gradients are piecewise smooth. Where fp32 rounding moves a ReLU input
across zero, or swaps the two largest values of a max-pool window, the fp32 and fp64 runs
differentiate different branches and their gradients differ by far more than rounding (GoogLeNet,
batch 4 at 224: 11 ReLU flips and 19 routing flips out of 13 million decisions move the trunk
gradients 1e-2 relative, median). With the branches pinned the two runs differ by arithmetic
alone, which is what `test_training_floor.py` measures.

PyTorch only, through forward hooks on our model's ``ReLU`` and ``nn.MaxPool2d`` modules; used by
tests, never by the models themselves.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from impls.torch_nn.layers import ReLU


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


def _indices(pool, x):
    return F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode,
                        return_indices=True)[1]


@contextlib.contextmanager
def _hooked(model, relu_hook, pool_hook):
    hooks = [m.register_forward_hook(relu_hook if isinstance(m, ReLU) else pool_hook) for m in model.modules()
             if isinstance(m, (ReLU, nn.MaxPool2d))]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


@contextlib.contextmanager
def record(model, kinks: Kinks):
    """Run ``model``'s forward passes normally, appending each ReLU mask and max-pool argmax."""
    with _hooked(model, lambda m, inp, out: kinks.relu.append(inp[0].detach() > 0),
                 lambda m, inp, out: kinks.pool.append(_indices(m, inp[0].detach()))):
        yield kinks


def _replay_pool(idx, x):
    if idx.shape[:2] != x.shape[:2]:
        raise ValueError(f"pinned max-pool indices {tuple(idx.shape)} do not fit input {tuple(x.shape)}")
    return x.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)


@contextlib.contextmanager
def replay(model, kinks: Kinks):
    """Run one forward pass of ``model`` taking the recorded branches: each ReLU's output becomes
    ``x * mask``, each max-pool's a gather at the recorded indices. Values at a flipped kink differ
    from the free pass by the rounding that flipped it; the gradients follow the recorded branches."""
    masks, indices = iter(kinks.relu), iter(kinks.pool)
    with _hooked(model, lambda m, inp, out: inp[0] * next(masks).to(inp[0].dtype),
                 lambda m, inp, out: _replay_pool(next(indices), inp[0])):
        yield
