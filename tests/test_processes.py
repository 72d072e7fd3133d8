"""Closed-form kernels of the scalar processes against simulation of the forward SDE."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.processes import VE, VP, CosineSchedule, GeometricSchedule, SubVP
from jaxdiff.solvers.reverse import DiagonalNoiseTerm, brownian_path

PROCESSES = {
    "vp": VP(),
    "subvp": SubVP(),
    "ve": VE(sigma_min=0.01, sigma_max=5.0),
    "vp_cosine": VP(CosineSchedule(), end_time=0.99),
    "vp_geometric": VP(GeometricSchedule()),
}


def simulate_forward(process, y0, t1, key, steps=500):
    """Euler-Maruyama of the forward SDE from 0 to t1 (diffrax)."""
    drift = dfx.ODETerm(lambda t, y, a: process.drift(y, t))
    noise = DiagonalNoiseTerm(lambda t, y, a: process.diffusion(y, t), brownian_path(key, y0))
    sol = dfx.diffeqsolve(
        dfx.MultiTerm(drift, noise),
        dfx.Euler(),
        0.0,
        t1,
        t1 / steps,
        y0,
        adjoint=dfx.ForwardMode(),
        max_steps=steps + 1,
    )
    return sol.ys[0]


@pytest.mark.parametrize("name", sorted(PROCESSES))
@pytest.mark.parametrize("var0", [0.0, 0.25])
def test_marginal_matches_simulation(name, var0):
    process = PROCESSES[name]
    n = 20000
    x0 = jnp.array([1.5, -0.5])
    k0, k1 = jax.random.split(jax.random.key(0))
    start = x0 + np.sqrt(var0) * jax.random.normal(k0, (n, 2))
    for t in (0.3, 0.9 * process.t_max):  # geometric VP: beta(1) ~ 1e4 is too stiff for EM
        y = simulate_forward(process, start, t, jax.random.fold_in(k1, int(100 * t)))
        kernel = process.marginal(x0[None], jnp.array([t]), var0=var0)
        mean, std = np.asarray(kernel.mean[0]), float(np.asarray(kernel.std).reshape(-1)[0])
        emp_mean, emp_var = np.asarray(y.mean(0)), np.asarray(y.var(0))
        se_mean = std / np.sqrt(n)
        # Monte-Carlo error plus the O(dt) bias of Euler-Maruyama (relative 1e-3 of the scale).
        np.testing.assert_allclose(emp_mean, mean, atol=5 * se_mean + 2e-3 * (std + 1))
        np.testing.assert_allclose(emp_var, std**2, rtol=5 * np.sqrt(2 / n) + 5e-3)


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_log_snr_derivative_is_likelihood_weight(name):
    """g^2 / sigma^2 = -d/dt log SNR for every scalar linear SDE (the IS identity)."""
    p = PROCESSES[name]
    t = jnp.linspace(0.05, 0.95 * p.t_max, 7)
    dlog = jax.vmap(jax.grad(lambda s: -p.log_snr(s)))(t)
    np.testing.assert_allclose(dlog, p.g2(t) / p.kernel_var(t), rtol=2e-3)


def test_small_t_kernel_is_accurate_in_float32():
    """1 - alpha^2 via expm1: relative accuracy at t = 1e-6 where 1 - exp(.) cancels."""
    p = VP()
    t = jnp.float32(1e-6)
    exact = -np.expm1(2 * (-0.25 * 1e-12 * 19.9 - 0.5 * 1e-6 * 0.1))
    assert abs(float(p.kernel_var(t)) / exact - 1) < 1e-5


def test_priors():
    y = jnp.zeros((3, 4))
    np.testing.assert_allclose(VP().prior_logp(y), -2 * np.log(2 * np.pi) * np.ones(3), rtol=1e-6)
    ve = VE(sigma_max=50.0)
    expected = 4 * (-0.5 * np.log(2 * np.pi) - np.log(50.0))
    np.testing.assert_allclose(ve.prior_logp(y), expected * np.ones(3), rtol=1e-6)
    draws = ve.prior_sample(jax.random.key(0), (20000, 1))
    assert abs(float(draws.std()) / 50.0 - 1) < 0.02
