"""FID Inception's input pipelines (issue 16): every mode in every framework equals its origin.

The spec's resize weights (``impls.spec.resize``) are compared with each origin's own, extracted
by resizing an identity image through the peer; then ``preprocess`` in PyTorch, JAX (Flax) and
Keras (tensorflow, jax and torch backends, one subprocess each: the pytest process never imports
keras) against the peers' pipelines (``fid_origins``) on seeded uint8 images holding 0 and 255,
from odd sizes, at <= 1e-6 on the normalised [-1, 1] pixels.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from impls.spec.pipelines import PIPELINES, pipeline, uint8_levels
from impls.spec.resize import RULES, matrix, taps

from . import fid_origins

MODES = tuple(PIPELINES)
SIZES = ((32, 32), (64, 48), (256, 256), (511, 383), (299, 299))  # (height, width)
TOLERANCE = 1e-6
# ATen's CPU kernel rounds the bilinear source position once (a fused multiply-add) in its
# AVX2/AVX512 builds, twice in the DEFAULT one: up to 1.9e-6 in a weight there.
TORCH_ROUNDS_TWICE = torch.backends.cpu.get_cpu_capability() == "DEFAULT"


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("in_size", sorted({1, 2, 5, 600, *(s for size in SIZES for s in size)}))
def test_rule_weights_equal_the_origins(rule, in_size):
    # The origins' weights are float32 numbers (torch-fidelity and ATen compute them in float32,
    # PIL's mode 'F' stores its double sums in float32): ours, rounded once to float32, equal them.
    want = fid_origins.rule_matrix(rule, in_size)
    got = matrix(rule, in_size).astype(np.float32)
    tolerance = 2e-6 if rule == "torch-bilinear" and TORCH_ROUNDS_TWICE else 0.0
    assert np.abs(got - want).max() <= tolerance


@pytest.mark.parametrize("rule", RULES)
def test_taps_hold_the_matrix(rule):
    for in_size in (32, 383, 511, 299):
        indices, weights = taps(rule, in_size)
        rebuilt = np.zeros((299, in_size))
        np.add.at(rebuilt, (np.arange(299)[:, None], indices), weights)
        assert np.array_equal(rebuilt, matrix(rule, in_size).astype(np.float32).astype(np.float64))
        assert (np.diff(indices, axis=1) >= 0).all() and not weights.flags.writeable
    # Every row's weights sum to 1 (to rounding); an identity size is the identity.
    assert np.allclose(matrix(rule, 511).sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(matrix(rule, 299), np.eye(299))


def test_uint8_levels_are_the_origins_pixels():
    every_level = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    to_tensor = fid_origins.pytorch_fid_pixels(every_level)[0, 0].ravel()  # ToTensor's div(255)
    assert np.array_equal(uint8_levels("pytorch-fid"), to_tensor)
    assert np.array_equal(uint8_levels("tf1"), np.arange(256)) and np.array_equal(uint8_levels("clean"), np.arange(256))


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown FID input mode"):
        pipeline("tf2")
    with pytest.raises(ValueError, match="unknown resize rule"):
        matrix("lanczos", 32)
