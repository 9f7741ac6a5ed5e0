"""Why training-step gradients carry a 1e-2 fp32 floor in the trunk: kink flips, not conditioning.

The training conformance (test_training.py) bounds every gradient by 4 x PyTorch's own fp32-vs-
fp64 distance on the same step; for GoogLeNet's trunk that distance is about 1e-2 relative
(median). This test shows where it comes from: pin the fp64 rerun to the ReLU masks and max-pool
routing of the fp32 run (conformance/kinks.py) and every gradient tensor agrees to the issue's
"about 1e-5 relative in fp32". The large free floor is therefore a handful of discrete branch
flips at near-kinks (counted below), which no fp32 implementation can avoid and which differ
between frameworks; docs/training.md has the figures.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from . import kinks  # noqa: E402

# The expectation for an fp32 training step is "about 1e-5 relative"; the median tensor
# must meet it (2x for the spread of 200+ tensors), the worst within 10x (errors accumulate over
# ~60 layers forward and back).
MEDIAN_BOUND, MAX_BOUND = 2e-5, 1e-4


def _step(model, x, y):
    import torch.nn.functional as F

    model.train()
    model.zero_grad()
    logits, aux2, aux1 = model(x)
    ce = lambda o: F.cross_entropy(o, y, label_smoothing=0.1)
    loss = ce(logits) + 0.3 * (ce(aux1) + ce(aux2))
    loss.backward()
    return loss.item(), {k: p.grad.double().clone() for k, p in model.named_parameters()}


def _relative(a, b):
    return {k: float((a[k] - b[k]).abs().max() / b[k].abs().max()) for k in b}


@pytest.mark.slow
def test_pinned_kinks_leave_only_rounding():
    from conformance.frameworks.torch_nn.seed import randomize_
    from impls.torch_nn import create_model

    torch.manual_seed(0)
    model = randomize_(create_model("googlenet", dropout=0.0, dropout_aux=0.0), seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 224, 224, generator=g)
    y = torch.randint(0, 1000, (4,), generator=g)
    twin = copy.deepcopy(model).double()

    fp32 = kinks.Kinks()
    with kinks.record(model, fp32):
        loss32, grads32 = _step(model, x, y)
    fp64 = kinks.Kinks()
    with kinks.record(twin, fp64):
        loss64, grads64 = _step(twin, x.double(), y)
    relu_flips, pool_flips = fp32.differences(fp64)
    with kinks.replay(twin, fp32):
        pinned_loss, pinned = _step(twin, x.double(), y)

    free, tight = _relative(grads32, grads64), _relative(grads32, pinned)
    worst = max(tight, key=tight.get)
    print(f"flips: {relu_flips} ReLU, {pool_flips} max-pool; free median {np.median(list(free.values())):.1e} "
          f"max {max(free.values()):.1e}; pinned median {np.median(list(tight.values())):.1e} "
          f"max {tight[worst]:.1e} ({worst})")
    assert abs(pinned_loss - loss32) <= 1e-6 * abs(loss32) and abs(loss64 - loss32) <= 1e-6 * abs(loss32)
    assert np.median(list(tight.values())) <= MEDIAN_BOUND
    assert tight[worst] <= MAX_BOUND, (worst, tight[worst])


def test_replay_takes_the_recorded_branch():
    """A ReLU input that rounding puts on the other side of zero follows the recorded mask."""
    from impls.torch_nn.layers import ReLU

    relu = ReLU()
    x = torch.tensor([1e-9, -1e-9, 2.0], requires_grad=True)
    recorded = kinks.Kinks()
    with kinks.record(relu, recorded):
        relu(x)
    flipped = kinks.Kinks()
    flipped.relu = [torch.tensor([False, True, True])]
    with kinks.replay(relu, flipped):
        relu(x).sum().backward()
    assert recorded.relu[0].tolist() == [True, False, True]
    assert x.grad.tolist() == [0.0, 1.0, 1.0]
    assert recorded.differences(flipped) == (2, 0)
