"""Toy data: mixture moments, exact densities (quadrature, scipy) and the (seed, step) contract."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from PIL import Image

from jaxdiff.data.toy import (
    TOY_NAMES,
    GaussianMixture,
    ToyData,
    mixture_8gaussians,
    mixture_25gaussians,
    random_mixture,
    sample_toy,
    toy_mixture,
)
from jaxdiff.eval.plots import save_scatter


def _nearest(x, means):
    return np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), axis=1)


def test_25gaussians_moments():
    n = 50_000
    x = np.asarray(sample_toy("25gaussians", jax.random.key(0), n))
    means = np.asarray(mixture_25gaussians().means)
    grid = np.arange(-4, 5, 2)
    assert {tuple(m) for m in means} == {(a, b) for a in grid for b in grid}
    comp = _nearest(x, means)
    counts = np.bincount(comp, minlength=25)
    # Equal weights: each count is Binomial(n, 1/25).
    sd = math.sqrt(n * (1 / 25) * (24 / 25))
    assert np.all(np.abs(counts - n / 25) < 5 * sd)
    for k in range(25):
        xk = x[comp == k]
        # Mean within 5 standard errors of the centre; std within 5 standard errors of 0.05.
        assert np.all(np.abs(xk.mean(0) - means[k]) < 5 * 0.05 / math.sqrt(len(xk)))
        assert np.all(np.abs(xk.std(0) - 0.05) < 5 * 0.05 / math.sqrt(2 * len(xk)))


def test_8gaussians_on_circle_of_radius_2():
    x = np.asarray(sample_toy("8gaussians", jax.random.key(1), 20_000))
    m = mixture_8gaussians()
    np.testing.assert_allclose(np.linalg.norm(np.asarray(m.means), axis=1), 2.0, rtol=1e-6)
    angles = np.sort(np.mod(np.arctan2(m.means[:, 1], m.means[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(8) / 8, atol=1e-6)
    r = np.linalg.norm(x, axis=1)
    assert abs(r.mean() - 2.0) < 0.002 and abs(r.std() - 0.02) < 0.001


def test_named_samplers_use_the_mixtures():
    key = jax.random.key(3)
    assert set(TOY_NAMES) == {"25gaussians", "8gaussians", "checkerboard", "swissroll", "moons"}
    for name, mixture in [
        ("25gaussians", mixture_25gaussians()),
        ("8gaussians", mixture_8gaussians()),
    ]:
        np.testing.assert_array_equal(sample_toy(name, key, 100), mixture.sample(key, 100))
        assert toy_mixture(name) is not None
    for name in ("checkerboard", "swissroll", "moons"):
        assert toy_mixture(name) is None
    with pytest.raises(ValueError, match="25gaussians"):
        sample_toy("nope", key, 3)


def _quadrature(mixture: GaussianMixture, lim: float, h: float) -> float:
    g = jnp.arange(-lim, lim, h) + h / 2
    xx = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return float(jnp.sum(jnp.exp(mixture.log_prob(xx))) * h**2)


def test_log_prob_integrates_to_one():
    lopsided = GaussianMixture(
        weights=jnp.array([0.2, 0.5, 0.3]),
        means=jnp.array([[0.0, 0.0], [1.0, -1.0], [-2.0, 1.5]]),
        stds=jnp.array([0.3, 0.1, 0.7]),
    )
    assert abs(_quadrature(mixture_25gaussians(), 5.0, 0.02) - 1) < 1e-3
    assert abs(_quadrature(mixture_8gaussians(), 2.5, 0.01) - 1) < 1e-3
    assert abs(_quadrature(lopsided, 6.0, 0.02) - 1) < 1e-3


def _scipy_log_prob(mixture, x):
    w, mu, s = (np.asarray(a, np.float64) for a in (mixture.weights, mixture.means, mixture.stds))
    d = mu.shape[1]
    comps = [
        np.log(w[k]) + scipy.stats.multivariate_normal(mu[k], s[k] ** 2 * np.eye(d)).logpdf(x)
        for k in range(len(w))
    ]
    return scipy.special.logsumexp(np.stack(comps), axis=0)


def test_log_prob_matches_scipy_d5():
    k1, k2 = jax.random.split(jax.random.key(4))
    m1 = random_mixture(k1, dim=5, num_components=7, separation=3.0, std=0.8, random_weights=True)
    m2 = GaussianMixture(
        weights=jnp.array([0.1, 0.2, 0.3, 0.4]),
        means=jax.random.normal(k2, (4, 5)),
        stds=jnp.array([0.5, 1.0, 1.5, 0.7]),
    )
    rng = np.random.default_rng(0)
    for m in (m1, m2):
        # Points near every centre and far from all of them.
        near = np.repeat(np.asarray(m.means), 30, axis=0) + rng.normal(
            size=(30 * m.num_components, 5)
        )
        x = np.concatenate([near, 4 * rng.normal(size=(50, 5))])
        ref = _scipy_log_prob(m, x)
        np.testing.assert_allclose(
            np.asarray(m.log_prob(jnp.asarray(x))), ref, rtol=1e-4, atol=1e-4
        )


def test_random_mixture_separation_and_sampling():
    m = random_mixture(jax.random.key(5), dim=64, num_components=20, separation=10.0)
    d = np.linalg.norm(np.asarray(m.means)[:, None] - np.asarray(m.means)[None], axis=-1)
    off = d[~np.eye(20, dtype=bool)]
    assert np.all((np.abs(off - 10) < 1e-3) | (np.abs(off - 10 * math.sqrt(2)) < 1e-3))
    with pytest.raises(ValueError):
        random_mixture(jax.random.key(0), dim=3, num_components=7)

    w = random_mixture(jax.random.key(6), dim=8, num_components=5, random_weights=True)
    n = 40_000
    x = np.asarray(w.sample(jax.random.key(7), n))
    freq = np.bincount(_nearest(x, np.asarray(w.means)), minlength=5) / n
    np.testing.assert_allclose(freq, w.weights, atol=5 * math.sqrt(0.25 / n))
    x0 = x[_nearest(x, np.asarray(w.means)) == 0] - np.asarray(w.means[0])
    assert abs(x0.std() - 1.0) < 5 / math.sqrt(2 * x0.size)


def test_checkerboard_black_cells_uniform():
    x = np.asarray(sample_toy("checkerboard", jax.random.key(8), 40_000))
    assert np.all(np.abs(x) <= 4)
    cells = np.floor(x / 2).astype(int)
    assert np.all((cells.sum(1) % 2) == 0)  # only black cells
    _, counts = np.unique(cells, axis=0, return_counts=True)
    assert len(counts) == 8 and np.all(np.abs(counts / 40_000 - 1 / 8) < 0.01)


def test_moons_lie_on_two_arcs():
    x = np.asarray(sample_toy("moons", jax.random.key(9), 10_000))
    u = x / 2 + np.array([0.5, 0.25])  # undo centring and scaling
    d_upper = np.abs(np.linalg.norm(u, axis=1) - 1)
    d_lower = np.abs(np.linalg.norm(u - np.array([1.0, 0.5]), axis=1) - 1)
    # Noise std 0.1 per coordinate: the mean distance to the nearer arc is below E|N(0, .1)|.
    assert np.mean(np.minimum(d_upper, d_lower)) < 0.1 * math.sqrt(2 / math.pi)


def test_swissroll_radius_tracks_angle():
    x = np.asarray(sample_toy("swissroll", jax.random.key(10), 10_000))
    r = 5 * np.linalg.norm(x, axis=1)  # noise-free radius is t ~ U[1.5 pi, 4.5 pi]
    assert abs(r.mean() - 3 * math.pi) < 0.15
    # Var = (3 pi)^2 / 12 of the uniform angle plus ~1 from the radial part of the noise.
    assert abs(r.std() - math.sqrt((3 * math.pi) ** 2 / 12 + 1)) < 0.1


@pytest.mark.parametrize("source", ["8gaussians", "moons", "random"])
def test_toy_data_is_a_pure_function_of_seed_and_step(source):
    if source == "random":
        source = random_mixture(jax.random.key(0), dim=16, num_components=4)
    data = ToyData(source, seed=11)
    b = data.batch(7, 64)["x"]
    assert b.shape == (64, data.shape[0]) and b.dtype == np.float32
    np.testing.assert_array_equal(b, ToyData(source, seed=11).batch(7, 64)["x"])
    expected = data.sample(jax.random.fold_in(jax.random.key(11), 7), 64)
    np.testing.assert_array_equal(b, np.asarray(expected))
    assert not np.allclose(b, data.batch(8, 64)["x"])
    assert not np.allclose(b, ToyData(source, seed=12).batch(7, 64)["x"])
    for count in (2, 4):
        parts = [data.batch(7, 64, process_index=i, process_count=count)["x"] for i in range(count)]
        np.testing.assert_array_equal(np.concatenate(parts), b)
    with pytest.raises(ValueError):
        data.batch(0, 10, process_index=0, process_count=3)


def test_save_scatter_writes_png(tmp_path):
    x = np.asarray(sample_toy("moons", jax.random.key(0), 500))
    path = tmp_path / "s.png"
    save_scatter(path, x, ref=x[::-1], title="moons")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (500, 500)
