"""Probability-flow likelihood against analytic log-densities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from jaxdiff.processes import VE, VP, SubVP
from jaxdiff.solvers.likelihood import bits_per_dim, dequantize, log_likelihood

COV = np.array([[1.0, 0.8], [0.8, 1.5]])  # correlated: Hutchinson is not exact here


def gaussian_score(process, cov):
    """Exact score of N(0, cov) data under a scalar linear process."""

    def score(y, t):
        a2 = jnp.exp(2 * process.log_alpha(t))
        s = a2 * cov + process.kernel_var(t) * jnp.eye(cov.shape[0])
        return -jnp.linalg.solve(s, y.T).T

    return score


def data(n, seed=1):
    return (np.linalg.cholesky(COV) @ np.asarray(jax.random.normal(jax.random.key(seed), (2, n)))).T


# VE's prior N(0, sigma_max^2) differs from the true p_T = N(0, C + sigma_T^2) by about
# tr(C) / (2 sigma_max^2) nats: sigma_max = 200 keeps that below 1e-4.
@pytest.mark.parametrize("process", [VP(), SubVP(), VE(sigma_min=0.01, sigma_max=200.0)])
def test_exact_trace_matches_analytic_density(process):
    x = jnp.asarray(data(300), jnp.float32)
    truth = multivariate_normal(np.zeros(2), COV).logpdf(np.asarray(x))
    out = jax.jit(lambda x: log_likelihood(process, gaussian_score(process, COV), x))(x)
    # The model density at t_min = 1e-5 differs from p_0 by O(t_min); the solve is at 1e-5 tol.
    assert float(jnp.max(jnp.abs(out.logp - truth))) < 1e-3


@pytest.mark.parametrize("probe", ["hutchinson_gaussian", "hutchinson_rademacher"])
def test_hutchinson_is_unbiased(probe):
    process = VP()
    x = jnp.asarray(data(2000), jnp.float32)
    truth = multivariate_normal(np.zeros(2), COV).logpdf(np.asarray(x))
    out = jax.jit(
        lambda x, k: log_likelihood(process, gaussian_score(process, COV), x, k, divergence=probe)
    )(x, jax.random.key(4))
    err = np.asarray(out.logp) - truth
    assert np.mean(np.abs(err)) > 1e-2  # a real estimator (not the exact trace) ...
    assert abs(err.mean()) < 4 * err.std() / np.sqrt(len(err))  # ... with zero mean


def test_bits_per_dim_of_uniform_density():
    """A uniform model density on [-1, 1]^D, i.e. 2^-D, is 8 bits per 8-bit pixel."""
    d = 3 * 4 * 4
    logp = jnp.full((5,), -d * np.log(2.0))
    np.testing.assert_allclose(bits_per_dim(logp, d), 8.0, rtol=1e-6)
    x = dequantize(jax.random.key(0), jnp.array([[0, 255, 128]], jnp.uint8))
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert -1.0 <= float(x[0, 0]) < -1.0 + 2 / 256 and float(x[0, 1]) >= 1.0 - 2 / 256


def test_unknown_divergence():
    with pytest.raises(ValueError, match="unknown divergence"):
        log_likelihood(VP(), lambda y, t: y, jnp.zeros((2, 2)), divergence="trace")


def test_pytree_states_are_supported():
    """A state split into two arrays gives the same log-density as the single array."""
    from jaxdiff.processes.base import DiagonalGaussian, Process

    class Split(Process):
        """VP on a state (x[:, :1], x[:, 1:]): the same process, a two-leaf pytree."""

        inner: VP = VP()

        def drift(self, y, t):
            return tuple(self.inner.drift(a, t) for a in y)

        def diffusion(self, y, t):
            return tuple(self.inner.diffusion(a, t) for a in y)

        def marginal(self, x0, t, var0=0.0):
            raise NotImplementedError

        def prior(self, shape):
            return DiagonalGaussian(jnp.zeros(shape), 1.0)

        def prior_logp(self, y):
            return self.inner.prior_logp(jnp.concatenate(y, axis=-1))

    x = jnp.asarray(data(50), jnp.float32)
    score = gaussian_score(VP(), COV)

    def split_score(y, t):
        s = score(jnp.concatenate(y, axis=-1), t)
        return (s[:, :1], s[:, 1:])

    whole = log_likelihood(VP(), score, x).logp
    parts = jax.jit(lambda x: log_likelihood(Split(), split_score, (x[:, :1], x[:, 1:])).logp)(x)
    np.testing.assert_allclose(parts, whole, atol=1e-4)
