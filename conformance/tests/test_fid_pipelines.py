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
from .helpers import require, run_python

MODES = tuple(PIPELINES)
SIZES = ((32, 32), (64, 48), (256, 256), (511, 383), (299, 299))  # (height, width)
TOLERANCE = 1e-6
# ATen's CPU kernel rounds the bilinear source position once (a fused multiply-add) in its
# AVX2/AVX512 builds, twice in the DEFAULT one: up to 1.9e-6 in a weight there.
TORCH_ROUNDS_TWICE = torch.backends.cpu.get_cpu_capability() == "DEFAULT"


def images(height, width, batch=2):
    """Seeded uint8 NHWC images with full-contrast dots (0 next to 255: bicubic overshoots)."""
    rng = np.random.default_rng(height * 1000 + width)
    x = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    x[:, ::7, ::5] = 255
    x[:, 1::7, ::5] = 0
    x[0, 0, 0], x[0, -1, -1] = 0, 255
    return x


@pytest.fixture(scope="module")
def cases():
    """{(mode, height, width): (uint8 NHWC images, the origin's NCHW output)}, plus pytorch-fid's
    own float [0, 1] pixels as a float input case ("pytorch-fid/float")."""
    out = {}
    for h, w in SIZES:
        x = images(h, w)
        for mode in MODES:
            out[mode, h, w] = x, fid_origins.ORIGINS[mode](x)
        pixels = fid_origins.pytorch_fid_pixels(x).transpose(0, 2, 3, 1)
        out["pytorch-fid/float", h, w] = np.ascontiguousarray(pixels), out["pytorch-fid", h, w][1]
    return out


def mode_of(case):
    return case[0].split("/")[0]


def deviations(cases, outputs, nhwc):
    """{case: max |ours - origin|}."""
    return {case: float(np.abs((outputs[case].transpose(0, 3, 1, 2) if nhwc else outputs[case]) - want).max())
            for case, (_, want) in cases.items()}


def assert_close(devs):
    bad = {case: d for case, d in devs.items() if not d <= TOLERANCE}
    assert not bad, f"off by more than {TOLERANCE}: {bad}"


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


def test_torch(cases):
    from impls.torch_nn.pipelines import preprocess

    outputs = {case: preprocess(x, mode_of(case)).numpy() for case, (x, _) in cases.items()}
    assert all(o.shape == (2, 3, 299, 299) and o.dtype == np.float32 for o in outputs.values())
    assert_close(deviations(cases, outputs, nhwc=False))


def test_flax(cases):
    require("jax", "flax")
    import jax

    from impls.flax_nnx.pipelines import preprocess

    compiled = jax.jit(preprocess, static_argnames="mode")
    outputs = {case: np.asarray(compiled(x, mode=mode_of(case))) for case, (x, _) in cases.items()}
    assert all(o.shape == (2, 299, 299, 3) and o.dtype == np.float32 for o in outputs.values())
    assert_close(deviations(cases, outputs, nhwc=True))


KERAS = """
import sys
import numpy as np
from keras import ops
from impls.keras3.pipelines import preprocess
data = np.load(sys.argv[1])
out = {}
for key in data.files:
    mode = key.split("|")[0].split("/")[0]
    out[key] = ops.convert_to_numpy(preprocess(data[key], mode))
np.savez(sys.argv[2], **out)
"""


# keras-tensorflow is the cheapest to start (about 8 s here); jax and torch (9-12 s) in the slow tier.
KERAS_PARAMS = [pytest.param(b, marks=() if b == "tensorflow" else pytest.mark.slow) for b in ("tensorflow", "jax", "torch")]


@pytest.mark.parametrize("backend", KERAS_PARAMS)
def test_keras(cases, backend, tmp_path):
    require("keras", {"tensorflow": "tensorflow"}.get(backend, backend))
    keys = {case: "|".join(map(str, case)) for case in cases}
    np.savez(tmp_path / "in.npz", **{keys[case]: x for case, (x, _) in cases.items()})
    run_python(KERAS, tmp_path / "in.npz", tmp_path / "out.npz", process=f"keras-{backend}")
    with np.load(tmp_path / "out.npz") as data:
        outputs = {case: data[keys[case]] for case in cases}
    assert all(o.shape == (2, 299, 299, 3) and o.dtype == np.float32 for o in outputs.values())
    assert_close(deviations(cases, outputs, nhwc=True))
