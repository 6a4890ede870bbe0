"""FID / IS / precision-recall math against closed forms and a dense reference (scipy.linalg.sqrtm)."""

import numpy as np
import pytest

from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.frechet import frechet_distance, gaussian_stats, trace_sqrt_product
from xdlm_vision.evaluation.inception_score import inception_score, softmax
from xdlm_vision.evaluation.precision_recall import precision_recall


def random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


def test_identical_gaussians_give_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=16), random_spd(rng, 16)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_diagonal_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    a, b = rng.uniform(0.1, 3, size=8), rng.uniform(0.1, 3, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_one_dimensional():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) = (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[0.25]]) == pytest.approx(9.0 + 1.5**2)


def test_matches_scipy_sqrtm_for_full_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    s1, s2 = random_spd(rng, 12), random_spd(rng, 12)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_singular_covariances_stay_finite_and_non_negative():
    rng = np.random.default_rng(3)
    s1, s2 = random_spd(rng, 32, rank=3), random_spd(rng, 32, rank=5)  # fewer samples than dims
    d = frechet_distance(np.zeros(32), s1, np.zeros(32), s2)
    assert np.isfinite(d) and d > 0
    assert abs(frechet_distance(np.zeros(32), s1, np.zeros(32), s1)) < 1e-9
    # symmetric in its arguments
    assert trace_sqrt_product(s1, s2) == pytest.approx(trace_sqrt_product(s2, s1), rel=1e-6)


def test_stats_from_samples_converge_to_closed_form():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50_000, 3)) * np.array([1.0, 2.0, 0.5])
    st = gaussian_stats(x)
    assert st.num == 50_000
    np.testing.assert_allclose(st.sigma, np.cov(x, rowvar=False), rtol=1e-10)
    d = frechet_distance(st.mu, st.sigma, np.zeros(3), np.diag([1.0, 4.0, 0.25]))
    assert d < 5e-3


def test_shape_mismatch_is_a_user_error():
    with pytest.raises(UserError, match="matching shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(UserError, match="NaN"):
        frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2))


def test_inception_score_closed_forms():
    uniform = np.full((100, 10), 0.1)
    assert inception_score(uniform, splits=1).mean == pytest.approx(1.0)
    one_hot = np.eye(10)[np.arange(100) % 10]
    res = inception_score(one_hot, splits=10)
    assert res.mean == pytest.approx(10.0) and res.std == pytest.approx(0.0, abs=1e-12)
    same = np.eye(10)[np.zeros(50, dtype=int)]  # all one-hot on the same class
    assert inception_score(same, splits=1).mean == pytest.approx(1.0)


def test_inception_score_rejects_logits():
    with pytest.raises(UserError, match="not logits"):
        inception_score(np.random.default_rng(0).normal(size=(8, 4)))
    np.testing.assert_allclose(softmax(np.log(np.full((2, 4), 0.25))), 0.25)


def test_precision_recall_extremes():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(200, 4))
    same = precision_recall(real, real.copy())
    assert same.precision == 1.0 and same.recall == 1.0
    far = precision_recall(real, real + 100.0)
    assert far.precision == 0.0 and far.recall == 0.0
    # a generator that collapsed onto part of the data: high precision, low recall
    part = real[real[:, 0] > 0.5]
    collapsed = precision_recall(real, part)
    assert collapsed.precision == 1.0 and collapsed.recall < 0.6
