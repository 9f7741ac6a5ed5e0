"""FID's arithmetic against the peers' own functions on the same numbers: the statistics against
numpy's mean and ``np.cov`` (what pytorch-fid and torch-fidelity call), the distance against
pytorch-fid's ``calculate_frechet_distance`` and torch-fidelity's ``fid_statistics_to_metric``,
the Inception Score against torch-fidelity's ``isc_features_to_metric``."""
import numpy as np
import pytest
import torch

from fid import RunningStatistics, Statistics, frechet_distance, inception_score
from fid.stats import load, save

from .helpers import require


def features(n, d, seed, shift=0.0):
    """Feature-like vectors: non-negative (after a ReLU), correlated, with a mean far from zero."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.maximum(rng.normal(size=(n, d)) @ mixing + 1.0 + shift, 0).astype(np.float32)


def statistics_of(x):
    return Statistics(np.mean(x, axis=0, dtype=np.float64), np.cov(x.astype(np.float64), rowvar=False), len(x))


@pytest.fixture(scope="module")
def pair():
    return statistics_of(features(600, 64, 0)), statistics_of(features(500, 64, 1, shift=0.3))


def test_streamed_statistics_equal_numpy_in_any_batching():
    x = features(300, 32, 2) + 1e3  # a mean far from zero: a naive sum of squares would lose digits
    expected = statistics_of(x)
    for batch in (1, 7, 50, 300):
        running = RunningStatistics(32)
        for i in range(0, len(x), batch):
            running.add(x[i:i + batch])
        got = running.result()
        assert got.count == 300
        np.testing.assert_allclose(got.mu, expected.mu, rtol=1e-12)
        np.testing.assert_allclose(got.sigma, expected.sigma, rtol=1e-9, atol=1e-12)


def test_running_statistics_refuse_wrong_width_and_too_few():
    running = RunningStatistics(8)
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        running.add(np.zeros((3, 9)))
    running.add(np.zeros((1, 8)))
    with pytest.raises(ValueError, match="at least 2"):
        running.result()


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")  # inside pytorch-fid
def test_distance_equals_pytorch_fid(pair):
    require("pytorch_fid")
    from pytorch_fid.fid_score import calculate_frechet_distance

    a, b = pair
    expected = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    got = frechet_distance(a, b)
    assert expected > 1.0  # the sets differ: a relative comparison means something
    assert abs(got.value - expected) <= 1e-6 * expected, (got.value, expected)
    assert got.residual < 1e-10


def test_distance_equals_torch_fidelity(pair):
    require("torch_fidelity")
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    a, b = pair
    expected = fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma}, {"mu": b.mu, "sigma": b.sigma}, False)
    expected = expected["frechet_inception_distance"]
    assert abs(frechet_distance(a, b).value - expected) <= 1e-6 * expected


def test_distance_of_a_set_to_itself_is_zero_and_symmetric(pair):
    a, b = pair
    assert abs(frechet_distance(a, a).value) < 1e-9 * np.trace(a.sigma)
    assert frechet_distance(a, b).value == pytest.approx(frechet_distance(b, a).value, rel=1e-10)


def test_distance_of_one_dimension_is_the_closed_form():
    """d = 1: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2 (a hand formula)."""
    a = Statistics(np.array([1.5]), np.array([[4.0]]))
    b = Statistics(np.array([-0.5]), np.array([[0.25]]))
    assert frechet_distance(a, b).value == pytest.approx(2.0 ** 2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_inception_score_equals_torch_fidelity():
    require("torch_fidelity")
    from torch_fidelity.metric_isc import isc_features_to_metric

    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(250, 1008)) * 4).astype(np.float32)  # confident, varied classes
    expected = isc_features_to_metric(torch.from_numpy(logits))
    mean, std = inception_score(logits)
    assert expected["inception_score_mean"] > 5.0  # not the degenerate score of 1
    assert mean == pytest.approx(expected["inception_score_mean"], rel=1e-6)
    assert std == pytest.approx(expected["inception_score_std"], rel=1e-6, abs=1e-9)


def test_statistics_file_is_pytorch_fids(pair, tmp_path):
    """pytorch-fid's own file (``np.savez_compressed(mu=, sigma=)``) reads back exactly; ours
    is read by numpy with pickling off and holds the same arrays."""
    a, _ = pair
    theirs = tmp_path / "theirs.npz"
    np.savez_compressed(theirs, mu=a.mu, sigma=a.sigma)
    got = load(theirs)
    assert np.array_equal(got.mu, a.mu) and np.array_equal(got.sigma, a.sigma)
    ours = save(a, tmp_path / "ours.npz")
    with np.load(ours, allow_pickle=False) as f:
        assert np.array_equal(f["mu"], a.mu) and np.array_equal(f["sigma"], a.sigma) and int(f["count"]) == 600
