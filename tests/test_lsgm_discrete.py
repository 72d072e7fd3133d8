"""LSGM's discretised diffusion (``diffusion_discretized.py``; ``jaxdiff.solvers.ancestral``):
the chain's betas against the continuous marginals, the ancestral sampler's moments on Gaussian
data with the exact score, and the discrete -ELBO against its closed form by another route."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.processes.scalar import VE, VP, SubVP
from jaxdiff.processes.schedules import GeometricSchedule, LinearSchedule
from jaxdiff.solvers import ancestral as A
from jaxdiff.solvers.samplers import make_sampler, sample

PROCESSES = {
    "linear": VP(LinearSchedule(0.1, 20.0)),
    "geometric": VP(GeometricSchedule(3e-5, 0.999)),
    "subvp": SubVP(LinearSchedule(0.1, 20.0)),
    "ve": VE(0.01, 10.0),
}


def _official_var(name: str, t: np.ndarray) -> np.ndarray:
    """sigma^2(t) of LSGM's diffusion_continuous.py (sigma2_0 = 0 / sigma2_min), float64."""
    if name == "linear":
        return 1.0 - np.exp(-0.1 * t - 0.5 * 19.9 * t * t)
    return 3e-5 * (0.999 / 3e-5) ** t


@pytest.mark.parametrize("name", ["linear", "geometric"])
def test_vp_betas_are_lsgms_and_reproduce_the_continuous_variances(name):
    """abar_k = prod_{j<=k} (1 - beta_j) equals 1 - sigma^2(k / T) at every grid point, and the
    betas are LSGM's (1 - abar_1, then 1 - abar_k / abar_{k-1}) computed in float64."""
    steps = 1000
    c = A.chain(PROCESSES[name], A.uniform_times(steps))
    beta = np.asarray(c.trans, np.float64)[::-1]  # k = 1 .. T
    t = np.arange(1, steps + 1) / steps
    var = _official_var(name, t)
    abar = np.cumprod(1.0 - beta)
    np.testing.assert_allclose(1.0 - abar, var, rtol=2e-5)
    abar_official = 1.0 - var
    beta_official = np.concatenate(
        [[1.0 - abar_official[0]], 1 - abar_official[1:] / abar_official[:-1]]
    )
    np.testing.assert_allclose(beta, beta_official, rtol=2e-4)
    # posterior variances: beta_k (1 - abar_{k-1}) / (1 - abar_k), k = 1 takes k = 2's
    post = np.asarray(c.post, np.float64)[::-1]
    expect = beta_official[1:] * var[:-1] / var[1:]
    np.testing.assert_allclose(post[1:], expect, rtol=2e-4)
    assert post[0] == pytest.approx(post[1], rel=1e-6)


@pytest.mark.parametrize("name", ["subvp", "ve"])
def test_chain_composes_to_the_kernel_on_subvp_and_ve(name):
    """The transitions N(a x_s, trans) composed from the clean state give the kernel's
    (alpha_t, sigma_t^2) at every grid point."""
    process, steps = PROCESSES[name], 200
    ts = A.uniform_times(steps)
    c = A.chain(process, ts)
    log_a = np.asarray(c.log_a, np.float64)[::-1]
    trans = np.asarray(c.trans, np.float64)[::-1]
    alpha, var = [], []
    la, v = 0.0, 0.0
    for k in range(steps):
        la, v = la + log_a[k], math.exp(2 * log_a[k]) * v + trans[k]
        alpha.append(la)
        var.append(v)
    t = jnp.asarray(np.arange(1, steps + 1) / steps, jnp.float32)
    np.testing.assert_allclose(alpha, np.asarray(process.log_alpha(t)), atol=1e-5)
    np.testing.assert_allclose(var, np.asarray(process.kernel_var(t)), rtol=1e-4, atol=1e-7)


def _gauss_score(process, s0):
    """The exact score of N(0, s0^2 I) data at time t."""

    def score(y, t):
        a2 = jnp.exp(2.0 * process.log_alpha(t))
        return -y / (a2 * s0**2 + process.kernel_var(t))

    return score


def _output_variance(process, ts, s0, stddev, prior_var):
    """Var of the sampler's output by the linear recursion, float64: each step is
    x' = m x + s n with m = (1 - trans / v_t) / a, v_t = alpha^2 s0^2 + sigma^2."""
    c = A.chain(process, jnp.asarray(ts))
    log_a, trans, post = (np.asarray(x, np.float64) for x in (c.log_a, c.trans, c.post))
    alpha2 = np.exp(2 * np.asarray(c.log_alpha, np.float64))
    var = np.asarray(c.var, np.float64)
    v = prior_var
    for i in range(len(trans) - 1):
        m = (1.0 - trans[i] / (alpha2[i] * s0**2 + var[i])) / math.exp(log_a[i])
        v = m * m * v + (trans[i] if stddev == "beta" else post[i])
    m = (1.0 - var[-1] / (alpha2[-1] * s0**2 + var[-1])) / math.sqrt(alpha2[-1])
    return m * m * v


@pytest.mark.parametrize(
    ("name", "stddev"),
    [("linear", "beta"), ("linear", "beta_post"), ("geometric", "beta"), ("ve", "beta")],
)
def test_ancestral_sampler_moments_with_the_exact_gaussian_score(name, stddev):
    """N(0, s0^2) data, exact score, LSGM's 1000-step grid: the samples' mean and variance are
    the analytic ones of the (linear) chain; that variance converges to s0^2 at first order in
    1 / T (the error halves from T = 1000 to 2000), from above with ``beta`` (more noise than
    the posterior's) and from below with ``beta_post``; NFE = T."""
    process, s0, steps, n = PROCESSES[name], 0.5, 1000, 16384
    sampler = make_sampler("ancestral", stddev=stddev)
    fn = lambda k: sample(
        process, _gauss_score(process, s0), k, (n, 2), sampler, steps=steps, t_min=0.0,
        denoise=False,
    )  # fmt: skip
    out = jax.jit(fn)(jax.random.key(0))
    assert int(out.nfe) == steps
    x = np.asarray(out.data, np.float64)
    v = _output_variance(process, np.asarray(A.uniform_times(steps)), s0, stddev,
                         process.prior_std**2)  # fmt: skip
    se = v * math.sqrt(2.0 / x.size)
    assert abs(x.var() - v) < 4 * se, (x.var(), v)
    assert abs(x.mean()) < 4 * math.sqrt(v / x.size)
    v2 = _output_variance(process, np.asarray(A.uniform_times(2 * steps)), s0, stddev,
                          process.prior_std**2)  # fmt: skip
    assert 0.4 < (v2 - s0**2) / (v - s0**2) < 0.6
    assert (v > s0**2) == (stddev == "beta")


def _normal_eps(process):
    """The exact eps of N(0, I) latents (LSGM's mixed score at alpha = 0 on a VP)."""

    def eps_fn(z, t):
        a2 = jnp.exp(2.0 * process.log_alpha(t))[:, None]
        var = process.kernel_var(t)[:, None]
        return jnp.sqrt(var) * z / (a2 + var)

    return eps_fn


def _nelbo_forward_route(process, steps, z0, stddev, prior_var):
    """E_q[log q(z_{1:T} | z_0) - log p(z_{0:T})] for the forward Markov chain
    q(z_k | z_{k-1}) = N(a_k z_{k-1}, trans_k) and the linear model p(z_{k-1} | z_k) =
    N(m_k z_k, s_k^2) of the Normal eps, each expectation written out (float64, per dimension)."""
    c = A.chain(process, A.uniform_times(steps))
    f = lambda x: np.asarray(x, np.float64)[::-1]  # noqa: E731  k = 1 .. T
    log_a, trans, post, var = f(c.log_a), f(c.trans), f(c.post), f(c.var)
    alpha2 = np.exp(2 * f(c.log_alpha))
    s2 = trans if stddev == "beta" else post
    z2 = z0.astype(np.float64) ** 2
    second = lambda k: z2 if k == 0 else alpha2[k - 1] * z2 + var[k - 1]  # noqa: E731 E[z_k^2]
    total = 0.5 * math.log(2 * math.pi * prior_var) + second(steps) / (2 * prior_var)
    for k in range(1, steps + 1):
        j = k - 1
        a = math.exp(log_a[j])
        v_t = alpha2[j] + var[j]  # the Normal latent's marginal variance
        if k == 1:  # Tweedie's mean
            m = (1.0 - var[j] / v_t) / math.sqrt(alpha2[j])
        else:
            m = (1.0 - trans[j] / v_t) / a
        r2 = (1.0 - m * a) ** 2 * second(k - 1) + m * m * trans[j]
        total = total + 0.5 * np.log(2 * math.pi * s2[j]) + r2 / (2 * s2[j])
        total = total - 0.5 * math.log(2 * math.pi * trans[j]) - 0.5
    return total


@pytest.mark.parametrize(
    ("name", "stddev", "steps"),
    [("linear", "beta", 1000), ("geometric", "beta", 1000), ("linear", "beta_post", 50),
     ("geometric", "beta_post", 50), ("ve", "beta", 50)],
)  # fmt: skip
def test_discrete_nelbo_of_a_normal_prior_matches_its_closed_form(name, stddev, steps):
    """LSGM's posterior-KL form of the -ELBO (Monte Carlo, 2048 draws per point) against the
    forward-chain form computed exactly, for a Normal prior (its exact eps), at fixed z0."""
    process, reps = PROCESSES[name], 2048
    z0 = np.array([-1.5, 0.0, 0.7, 2.0], np.float32)
    zb = jnp.asarray(np.repeat(z0, reps)[:, None])
    fn = jax.jit(lambda k: A.nelbo(process, _normal_eps(process), k, zb, steps, stddev))
    vals, nfe = fn(jax.random.key(3))
    assert int(nfe) == steps
    vals = np.asarray(vals, np.float64).reshape(len(z0), reps)
    expect = _nelbo_forward_route(process, steps, z0, stddev, process.prior_std**2)
    se = vals.std(axis=1) / math.sqrt(reps)
    np.testing.assert_array_less(np.abs(vals.mean(axis=1) - expect), 4 * se + 2e-4 * np.abs(expect))


@pytest.mark.slow  # ~30 s of CPU (108 s of wall time on the loaded 2 cores)
def test_lsgm_samples_and_bounds_with_the_discrete_chain():
    """The toy LSGM: the ancestral sampler as its latent sampler (NFE = T), and the NLL bound with
    ``nll_prior='discrete'``: recon + log q + the chain's -ELBO of the encoded latent (NFE = T),
    on the same draws as ``nll``'s."""
    from jaxdiff.methods.sampling import SamplingSpec
    from tests.test_lsgm_eval import _tiny_method

    steps = 50
    method, state = _tiny_method(nll_prior="discrete", diffusion_steps=steps)
    spec = SamplingSpec(make_sampler("ancestral"), steps=steps, t_min=0.0, denoise=False)
    params = method.sampling_params(state)
    x, nfe = method.with_sampling(spec).sample_fn(params, jax.random.key(0), 8)
    assert x.shape == (8, 2) and int(nfe) == steps and bool(jnp.all(jnp.isfinite(x)))
    xs = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    disc = method.nll(state, jax.random.key(1), xs)
    assert disc["nfe"] == steps
    k_e, k_l = jax.random.split(jax.random.split(jax.random.key(1), 1)[0])
    recon, log_q, top, ce_rest, _ = method.latent_terms(
        state.params["vae"], jnp.asarray(xs), k_e, None, train=False
    )
    eps_fn = method.eps_fn(state.ema["prior"])
    nelbo, _ = A.nelbo(method.process, eps_fn, k_l, top, steps, "beta")
    expect = float(jnp.mean(recon + log_q + nelbo + ce_rest))
    assert disc["nll"] == pytest.approx(expect, rel=1e-4, abs=1e-3)
    with pytest.raises(ValueError, match="nll_prior"):
        _tiny_method(nll_prior="nope")[0].nll(state, jax.random.key(1), xs)
