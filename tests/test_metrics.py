"""Metrics against closed forms: SW of Gaussians, Gaussian MMD, exact mode counts, entropy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.data.toy import GaussianMixture, mixture_25gaussians, sample_toy
from jaxdiff.eval.metrics import (
    hq_radius_factor,
    mixture_nll,
    mmd_rbf,
    mode_stats,
    sliced_wasserstein,
    sw_noise_floor,
    toy_metrics,
)


def _normal(seed, n, d):
    return jax.random.normal(jax.random.key(seed), (n, d))


# ---- sliced Wasserstein ------------------------------------------------------------------------


def test_sw_zero_for_identical_sets():
    x = _normal(0, 500, 3)
    assert float(sliced_wasserstein(jax.random.key(1), x, x)) < 1e-5
    # Invariant to the order of the samples.
    perm = jax.random.permutation(jax.random.key(2), 500)
    assert float(sliced_wasserstein(jax.random.key(1), x, x[perm])) < 1e-5


@pytest.mark.parametrize("p", [1, 2])
def test_sw_unequal_sizes_is_exact(p):
    """W_p between 1-D empirical measures of sizes 3 and 5 equals the matching of 15 copies."""
    x = jnp.array([[0.3], [-1.0], [2.0]])
    y = jnp.array([[0.0], [0.5], [1.5], [-2.0], [4.0]])
    xs = np.sort(np.repeat(np.asarray(x[:, 0]), 5))
    ys = np.sort(np.repeat(np.asarray(y[:, 0]), 3))
    expected = np.mean(np.abs(xs - ys) ** p) ** (1 / p)
    # In 1-D every direction is +-1, so SW equals W exactly.
    got = sliced_wasserstein(jax.random.key(0), x, y, num_projections=4, p=p)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_sw_1d_gaussians_closed_form():
    """W2(N(0,1), N(m, s^2)) = sqrt(m^2 + (1 - s)^2) in 1-D."""
    n = 20_000
    x = _normal(3, n, 1)
    y = 2.0 + 0.5 * _normal(4, n, 1)
    got = float(sliced_wasserstein(jax.random.key(0), x, y, num_projections=2))
    assert abs(got - math.sqrt(4 + 0.25)) < 0.02


def test_sw_shift_averages_over_uniform_directions():
    """Shifting a set by mu moves every projection by theta.mu, so SW_p^p = mean |theta_i.mu|^p.

    Over uniform directions on the circle E(theta.mu)^2 = |mu|^2 / 2 and E|theta.mu| = 2|mu|/pi.
    The tolerance is 4 Monte-Carlo standard errors (Var cos^2 = 1/8, Var|cos| = 1/2 - 4/pi^2).
    """
    num_proj, mu = 20_000, jnp.array([3.0, 0.0])
    x = _normal(5, 16, 2)
    sw2 = float(sliced_wasserstein(jax.random.key(7), x, x + mu, num_projections=num_proj, p=2))
    assert abs(sw2**2 - 9 / 2) < 4 * 9 * math.sqrt(1 / 8 / num_proj)
    sw1 = float(sliced_wasserstein(jax.random.key(7), x, x + mu, num_projections=num_proj, p=1))
    assert abs(sw1 - 6 / math.pi) < 4 * 3 * math.sqrt((0.5 - 4 / math.pi**2) / num_proj)
    # Same directions: the distance is linear in the shift.
    sw_far = sliced_wasserstein(jax.random.key(7), x, x + 2 * mu, num_projections=num_proj)
    np.testing.assert_allclose(float(sw_far), 2 * sw2, rtol=1e-5)


def test_sw_isotropic_gaussians_closed_form():
    """Every projection of N(0, I) and N(0, s^2 I) is N(0, 1) vs N(0, s^2): SW_2 = |1 - s|."""
    x, y = _normal(8, 4000, 3), 0.5 * _normal(9, 4000, 3)
    got = float(sliced_wasserstein(jax.random.key(0), x, y, num_projections=32))
    assert abs(got - 0.5) < 0.03  # finite-sample error only (sd ~0.01 at n = 4000)


@pytest.mark.slow
def test_sw_noise_floor_positive_and_decreasing():
    def sampler(key, n):
        return sample_toy("8gaussians", key, n)

    small = sw_noise_floor(jax.random.key(0), sampler, 100, num_projections=64, num_repeats=4)
    large = sw_noise_floor(jax.random.key(0), sampler, 3000, num_projections=64, num_repeats=4)
    assert 0 < large < small / 2  # roughly O(n^-1/2): a 30x larger n gives ~5x smaller


# ---- MMD ----------------------------------------------------------------------------------------


def test_mmd_identical_sets():
    x = _normal(0, 300, 2)
    assert abs(float(mmd_rbf(x, x, biased=True))) < 1e-6
    # Two independent sets from one distribution: the unbiased estimate is ~0 (sd ~6e-4 at n=1000).
    assert abs(float(mmd_rbf(_normal(1, 1000, 2), _normal(2, 1000, 2), bandwidths=(1.0,)))) < 3e-3


def test_mmd_gaussian_closed_form_and_ordering():
    """MMD^2(N(0,s^2 I), N(mu, s^2 I)) = 2 c (1 - exp(-|mu|^2 / (2 (b^2 + 2 s^2)))),
    c = (b^2 / (b^2 + 2 s^2))^(d/2), for the kernel exp(-|x-y|^2 / (2 b^2)); here s = b = 1, d = 2.
    """
    n = 2000
    x, y0 = _normal(3, n, 2), _normal(4, n, 2)
    shift = jnp.array([1.0, 0.0])
    expected = 2 / 3 * (1 - math.exp(-1 / 6))
    got = float(mmd_rbf(x, y0 + shift, bandwidths=(1.0,)))
    assert abs(got - expected) < 0.03  # ~4 sd of the estimator at n = 2000
    values = [float(mmd_rbf(x, y0 + a * shift)) for a in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[1] > 0.005


# ---- mode statistics ----------------------------------------------------------------------------


def test_mode_stats_exact_counts():
    """24 of 25 modes hit 6 times each inside 3 std, plus 16 outliers (10 %)."""
    m = mixture_25gaussians()  # std 0.05: high quality means within 0.15 of a centre
    rng = np.random.default_rng(0)
    means = np.asarray(m.means)
    hq = []
    for k in range(24):  # mode 24 (centre (4, 4)) is missed
        angles = rng.uniform(0, 2 * np.pi, 6)
        radii = np.array([0.0, 0.05, 0.1, 0.12, 0.14, 0.149])
        hq.append(means[k] + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1))
    # Outliers: just outside the 3-std ring of a centre, or between centres.
    ring = means[:8] + np.array([0.151, 0.0])
    between = np.array([[1.0, 1.0], [-1.0, 3.0], [3.0, -3.0], [0.0, 1.0]] * 2)
    x = jnp.asarray(np.concatenate(hq + [ring, between]), jnp.float32)
    assert x.shape == (160, 2)
    stats = mode_stats(x, m)
    assert int(stats["modes_covered"]) == 24 and int(stats["num_modes"]) == 25
    np.testing.assert_allclose(float(stats["high_quality_frac"]), 144 / 160, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(stats["mode_counts"]), [6] * 24 + [0])
    # Uniform over 24 modes against uniform over 25: KL = log(25 / 24).
    np.testing.assert_allclose(float(stats["mode_kl"]), math.log(25 / 24), rtol=1e-5)


def test_mode_stats_true_samples_in_2d_and_64d():
    """True samples are high quality with probability 1 - exp(-num_std^2 / 2) in any dimension."""
    n = 20_000
    p = 1 - math.exp(-4.5)
    tol = 5 * math.sqrt(p * (1 - p) / n)
    assert hq_radius_factor(3.0, 2) == 3.0
    x = sample_toy("25gaussians", jax.random.key(0), n)
    stats = mode_stats(x, mixture_25gaussians())
    assert int(stats["modes_covered"]) == 25 and abs(float(stats["high_quality_frac"]) - p) < tol
    far = GaussianMixture(
        weights=jnp.array([0.5, 0.5]),
        means=jnp.stack([jnp.zeros(64), jnp.full(64, 5.0)]),
        stds=jnp.array([1.0, 2.0]),
    )
    stats = mode_stats(far.sample(jax.random.key(1), n), far)
    assert abs(float(stats["high_quality_frac"]) - p) < tol
    assert abs(float(stats["mode_kl"])) < 1e-3


def test_mixture_nll_is_entropy_for_a_gaussian():
    """For one N(mu, s^2 I) component, E[-log p(x)] = d/2 log(2 pi e s^2)."""
    d, s = 3, 0.5
    g = GaussianMixture(weights=jnp.ones(1), means=jnp.ones((1, d)), stds=jnp.full(1, s))
    nll = float(mixture_nll(g.sample(jax.random.key(0), 20_000), g))
    # -log p = const + chi2_d / 2 has sd sqrt(d / 2); the mean over 20k samples has sd ~0.009.
    assert abs(nll - d / 2 * math.log(2 * math.pi * math.e * s**2)) < 0.05


@pytest.mark.slow
def test_toy_metrics_separate_good_from_collapsed():
    n, kw = 1000, dict(num_projections=64)
    m = mixture_25gaussians()
    good = toy_metrics(jax.random.key(0), sample_toy("25gaussians", jax.random.key(1), n), m, **kw)
    collapsed = m.means[3] + 0.05 * _normal(2, n, 2)
    bad = toy_metrics(jax.random.key(0), collapsed, "25gaussians", **kw)
    assert good["modes_covered"] == 25 and bad["modes_covered"] == 1
    assert good["sw_ratio"] < 2.0 < 10.0 < bad["sw_ratio"]
    assert abs(good["nll"] - good["nll_ref"]) < 0.1
    assert bad["mmd"] > 100 * abs(good["mmd"])
    moons = toy_metrics(jax.random.key(0), sample_toy("moons", jax.random.key(1), n), "moons", **kw)
    assert set(moons) == {"sw", "sw_floor", "sw_ratio", "mmd"} and moons["sw_ratio"] < 2.0
