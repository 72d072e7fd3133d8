"""Metrics from features: closed forms, direct numpy computations, hand-built point sets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.spatial

from jaxdiff.eval import fid as F


def sym_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid_symmetric(mu1, s1, mu2, s2) -> float:
    """FID via the symmetric form tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), with eigh only."""
    r = sym_sqrt(s1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * sym_sqrt(r @ s2 @ r)))


def random_cov(rng, d, floor=0.5):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + floor * np.eye(d)


# ----------------------------------------------------------------------------------------------
# FID


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_fid_closed_form_diagonal(method):
    """Commuting (diagonal) covariances: |dmu|^2 + sum (sqrt a - sqrt b)^2."""
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    want = 1 + 9 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = F.fid_from_stats(mu1, np.diag(a), mu2, np.diag(b), method=method)
    assert got == pytest.approx(want, rel=1e-12)


def test_fid_general_covariances_match_symmetric_form_and_reference_sqrtm():
    """The default (eigenvalues of S2^1/2 S1 S2^1/2) against the test's S1^1/2 S2 S1^1/2 form
    and the reference code's Schur sqrtm of the non-symmetric product."""
    rng = np.random.default_rng(0)
    for d in (1, 5, 64, 512):
        s1, s2 = random_cov(rng, d), random_cov(rng, d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        want = fid_symmetric(mu1, s1, mu2, s2)
        reference = F.fid_from_stats(mu1, s1, mu2, s2, method="sqrtm")
        assert reference == pytest.approx(want, rel=1e-9, abs=1e-9)
        assert F.fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-9, abs=1e-9)
        # the memoised square root of a reused reference gives the same value again
        assert F.fid_from_stats(mu1, s1, mu2, s2) == F.fid_from_stats(mu1, s1, mu2, s2)
    with pytest.raises(ValueError, match="method"):
        F.fid_from_stats(mu1, s1, mu2, s2, method="newton")


def test_fid_identical_sets_is_zero():
    x = np.random.default_rng(1).normal(size=(500, 32)) @ random_cov(np.random.default_rng(2), 32)
    mu, s = F.feature_stats(x)
    assert abs(F.fid(x, x)) < 1e-9 * np.trace(s)


def test_fid_of_sampled_gaussians():
    """Features drawn from two Gaussians give the closed-form FID.

    At n = 50,000 per set and d = 4 the estimator's spread is dominated by the mean term,
    sd ~ 2 sqrt(dmu^T (S1 + S2) dmu / n) ~ 0.015 (measured: 0.011 over 30 seeds; bias ~1e-3),
    so 0.06 is four to five standard deviations; a wrong trace term moves FID by O(1).
    """
    rng = np.random.default_rng(0)
    d = 4
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.25, 0.0])
    s1, s2 = random_cov(rng, d), random_cov(rng, d)
    want = fid_symmetric(mu1, s1, mu2, s2)
    x = rng.multivariate_normal(mu1, s1, 50_000)
    y = rng.multivariate_normal(mu2, s2, 50_000)
    assert F.fid(x, y) == pytest.approx(want, abs=0.06)
    assert F.fid(x, x + 3.0) == pytest.approx(9 * d, rel=1e-6)  # a pure shift adds |shift|^2


def test_fid_singular_covariances(monkeypatch):
    """Rank-deficient covariances (n < d): both methods match the closed form (sqrtm to 1e-6:
    its square root of a singular product is less accurate); if sqrtm fails (older scipy), the
    reference's fallback adds eps * I and warns. With S1 = A^T A and S2 = B^T B (A, B the centred
    features over sqrt(n - 1)), tr (S1 S2)^1/2 is the sum of the singular values of the 5 x 5
    A B^T: no square root of a singular matrix is needed for the reference."""
    x = np.random.default_rng(0).normal(size=(5, 10))  # rank-4 covariances in 10-d
    y = np.random.default_rng(1).normal(size=(5, 10))
    (m1, s1), (m2, s2) = F.feature_stats(x), F.feature_stats(y)
    a, b = (x - x.mean(0)) / 2.0, (y - y.mean(0)) / 2.0  # sqrt(n - 1) = 2
    np.testing.assert_allclose(a.T @ a, s1, atol=1e-14)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    want = float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * nuclear)
    assert F.fid(x, y) == pytest.approx(want, rel=1e-12)
    stats = (m1, s1, m2, s2)
    assert F.fid_from_stats(*stats, method="sqrtm") == pytest.approx(want, rel=1e-6)
    sqrtm, calls = F.scipy.linalg.sqrtm, []

    def failing_once(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else sqrtm(a)

    monkeypatch.setattr(F.scipy.linalg, "sqrtm", failing_once)
    with pytest.warns(UserWarning, match="singular"):
        assert F.fid_from_stats(*stats, method="sqrtm") == pytest.approx(want, rel=1e-4)
    assert len(calls) == 2


# ----------------------------------------------------------------------------------------------
# KID


def mmd2_loops(x, y):
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / m**2


def test_mmd2_unbiased_matches_loops():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.3, 1.2, size=(12, 3))
    assert F.mmd2_unbiased(x, y) == pytest.approx(mmd2_loops(x, y), rel=1e-12)


def test_kid_subsets():
    """One subset of all points is the full-set MMD^2 (permutation invariant); identical sets
    give the closed form -2/(m-1) (mean_i k_ii - mean_ij k_ij), which vanishes as 1/m (here a
    few percent of the KID of a unit shift)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    mean, std = F.kid(x, y, num_subsets=3, subset_size=1000)
    assert mean == pytest.approx(F.mmd2_unbiased(x, y), rel=1e-12) and std < 1e-12
    x = rng.normal(size=(400, 8))
    k = (x @ x.T / 8 + 1) ** 3
    same = -2 / (len(x) - 1) * (np.diag(k).mean() - k.mean())
    assert F.kid(x, x, num_subsets=2)[0] == pytest.approx(same, rel=1e-10)
    assert abs(same) < 0.05 * F.kid(x, x + 1.0, num_subsets=2)[0]


def test_kid_is_seeded_and_unbiased_near_zero():
    """Two samples of one distribution: KID over 100 subsets is zero within its spread."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    m1, s1 = F.kid(x, y, num_subsets=100, subset_size=100, seed=3)
    assert (m1, s1) == F.kid(x, y, num_subsets=100, subset_size=100, seed=3)
    assert abs(m1) < 3 * s1


# ----------------------------------------------------------------------------------------------
# Inception Score


def test_inception_score_known_cases():
    assert F.inception_score(np.zeros((100, 1008))) == pytest.approx((1.0, 0.0), abs=1e-12)
    k, n = 7, 7 * 10 * 3  # each of the 10 splits holds every class 3 times
    logits = 100.0 * np.eye(k)[np.arange(n) % k]
    mean, std = F.inception_score(logits, num_splits=10)
    assert mean == pytest.approx(k, rel=1e-10) and std < 1e-9


def test_inception_score_matches_direct_formula():
    rng = np.random.default_rng(0)
    logits = 3 * rng.normal(size=(103, 20))  # uneven splits: boundaries i * n // 10
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for i in range(10):
        part = p[i * 103 // 10 : (i + 1) * 103 // 10]
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(q * np.log(q / py)) for q in part])))
    got = F.inception_score(logits)
    assert got == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-10)


# ----------------------------------------------------------------------------------------------
# Precision / recall / density / coverage


def test_precision_recall_hand_built():
    """Reals at x = 0..9 (3-NN radii 3 at the ends, 2 inside). Fakes: five reals lifted by 0.5
    (inside) and five far away: precision 5/10. Fake 3-NN radii are 3, 2, 2, 2, 3 for the lifted
    ones, so reals 0..6 lie in a fake ball (real 6 is 2.06 from the fake at x=4, radius 3) and
    7..9 do not (real 7 is 3.04 away): recall 7/10."""
    real = np.stack([np.arange(10.0), np.zeros(10)], 1)
    fake = np.concatenate(
        [np.stack([np.arange(5.0), np.full(5, 0.5)], 1), [[100.0 + 2 * j, 0.0] for j in range(5)]]
    )
    np.testing.assert_allclose(F.knn_radii(real, 3), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3])
    assert F.precision_recall(real, fake) == (0.5, 0.7)


def test_density_coverage_hand_built():
    """Reals at x = 0..11: 5-NN radii 5, 4, 3, ..., 3, 4, 5. A fake at x = 5.5 is strictly inside
    the balls of reals 3..8 (|5.5 - i| <= 2.5 < 3) and no other; a far fake is in none:
    density (6 + 0) / (5 * 2) = 0.6, coverage 6/12."""
    real = np.stack([np.arange(12.0), np.zeros(12)], 1)
    fake = np.array([[5.5, 0.0], [100.0, 0.0]])
    np.testing.assert_allclose(F.knn_radii(real, 5), [5, 4] + [3] * 8 + [4, 5])
    assert F.density_coverage(real, fake) == (0.6, 0.5)


def manifold_loops(real, fake, k_pr=3, k_dc=5):
    drr = scipy.spatial.distance.cdist(real, real)
    dff = scipy.spatial.distance.cdist(fake, fake)
    drf = scipy.spatial.distance.cdist(real, fake)
    rk = lambda d, k: np.sort(d, axis=1)[:, k]  # column 0 is the point itself
    r3, r5, f3 = rk(drr, k_pr), rk(drr, k_dc), rk(dff, k_pr)
    n, m = drf.shape
    prec = np.mean([any(drf[i, j] <= r3[i] for i in range(n)) for j in range(m)])
    rec = np.mean([any(drf[i, j] <= f3[j] for j in range(m)) for i in range(n)])
    dens = sum(drf[i, j] < r5[i] for i, j in itertools.product(range(n), range(m))) / (k_dc * m)
    cov = np.mean([drf[i].min() < r5[i] for i in range(n)])
    return {"precision": prec, "recall": rec, "density": dens, "coverage": cov}


def test_manifold_metrics_match_loops_and_blocks():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 5))
    fake = rng.normal(0.4, 1.3, size=(50, 5))
    want = manifold_loops(real, fake)
    assert F.manifold_metrics(real, fake) == pytest.approx(want, abs=1e-12)
    assert F.manifold_metrics(real, fake, block=7) == pytest.approx(want, abs=1e-12)
    same = F.manifold_metrics(real, real)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
