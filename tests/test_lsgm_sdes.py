"""LSGM on its other two latent SDEs (``diffusion_continuous.py``): sub-VP and VE. The IS
densities against histograms of their samplers, the IS-weighted objectives against uniform t,
the Normal part of the mixed score against the exact eps of N(0, I) latents, and the VE's
sigma_max from the latents' largest pairwise distance."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.objectives import lsgm as L
from jaxdiff.processes.scalar import VE, SubVP
from jaxdiff.processes.schedules import LinearSchedule

T_MIN = 0.01  # LSGM's time_eps
PROCESSES = {
    "subvp": SubVP(LinearSchedule(0.1, 20.0)),
    "ve": VE(0.01, 30.0),
}


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("weighting", L.IS_WEIGHTINGS)
def test_is_density_normalised_and_histogram_of_samples(name, weighting):
    """r(t) integrates to 1 on [t_min, 1]; 40k inverse-CDF draws against it: chi-square over 40
    equal-probability bins below the 0.1 % critical value (73.4 for 39 d.o.f.), and the claimed
    shape: on a VE r is proportional to w(t) / (1 + sigma^2) (w = w_ll for un, LSGM's choice)."""
    process = PROCESSES[name]
    t = np.linspace(T_MIN, 1.0, 400_001)
    tj = jnp.asarray(t, jnp.float32)
    dens = np.asarray(L.is_density(process, weighting, tj, T_MIN), np.float64)
    assert np.all(dens > 0)
    assert np.trapezoid(dens, t) == pytest.approx(1.0, abs=1e-4)
    if name == "ve":
        w = L.weight(process, "re" if weighting == "re" else "ll", tj)
        ratio = dens / np.asarray(w / (1.0 + L.var(process, tj)), np.float64)
        assert np.std(ratio) / np.mean(ratio) < 1e-3
    else:  # the VP analogue's r, proportional to w_vp(t) (1 - sigma_vp^2)
        vp = L.vp_analogue(process)
        ratio = dens / np.asarray(L.weight(vp, weighting, tj) * (1 - L.var(vp, tj)), np.float64)
        assert np.std(ratio) / np.mean(ratio) < 1e-3
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(t))])
    cdf /= cdf[-1]
    n, bins = 40_000, 40
    s = np.asarray(L.is_sample(process, weighting, jax.random.key(1), n, T_MIN), np.float64)
    assert s.min() >= T_MIN and s.max() <= 1.0
    edges = np.interp(np.linspace(0, 1, bins + 1), cdf, t)
    counts = np.histogram(s, edges)[0]
    chi2 = float(np.sum((counts - n / bins) ** 2 / (n / bins)))
    assert chi2 < 73.4, chi2


def test_inv_var_inverts_var_on_subvp_and_ve():
    for process in PROCESSES.values():
        t = jnp.linspace(T_MIN, 0.8, 1001)
        np.testing.assert_allclose(L.inv_var(process, L.var(process, t)), t, atol=5e-5)


def _normal_eps_fn(process):
    return lambda z, t: L.normal_eps(process, z, t)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("weighting", L.IS_WEIGHTINGS)
def test_is_weighted_objective_matches_uniform_t(name, weighting):
    """The IS estimate of int w(t) E||eps - eps_theta||^2 dt equals the uniform-t estimate
    (Monte Carlo, 4 standard errors), for near-Normal latents and the Normal eps."""
    process = PROCESSES[name]
    eps_fn = _normal_eps_fn(process)
    z0 = 1.3 * jax.random.normal(jax.random.key(0), (512, 4)) + 0.2

    def est(sampling):
        obj = L.LSGMObjective(process, p_weighting=weighting, p_sampling=sampling, t_min=T_MIN)
        keys = jax.random.split(jax.random.key(3), 40)
        vals = jax.vmap(lambda k: obj.sgm_loss(eps_fn, k, z0)[0])(keys)
        return np.asarray(vals, np.float64).reshape(-1)

    iw, un = est("iw"), est("uniform")
    se = math.sqrt(iw.var() / iw.size + un.var() / un.size)
    assert abs(iw.mean() - un.mean()) < 4 * se, (iw.mean(), un.mean(), se)


@pytest.mark.parametrize("name", PROCESSES)
def test_normal_eps_is_the_exact_eps_of_normal_latents(name):
    """E[eps | z_t] for z_0 ~ N(0, I): regressing eps on z_t over draws gives the slope
    sigma_t / (alpha_t^2 + sigma_t^2) of ``normal_eps``; with alpha = 0 (logit -inf) the mixed
    eps is it."""
    process = PROCESSES[name]
    n = 200_000
    k0, k1 = jax.random.split(jax.random.key(5))
    z0 = jax.random.normal(k0, (n, 1))
    for t in (0.05, 0.3, 0.9):
        tb = jnp.full((n,), t, jnp.float32)
        z_t, eps = process.marginal(z0, tb).sample(k1)
        slope = float(jnp.sum(z_t * eps) / jnp.sum(z_t * z_t))
        resid = eps - slope * z_t
        se = float(jnp.sqrt(jnp.mean(resid**2) / jnp.sum(z_t * z_t)))  # OLS standard error
        expect = float(L.normal_eps(process, jnp.ones((1, 1)), jnp.full((1,), t))[0, 0])
        assert abs(slope - expect) < 4 * se, (t, slope, expect, se)
        mixed = L.process_mixed_eps(process, jnp.zeros((2, 1)), jnp.array([-jnp.inf]),
                                    z_t[:2], tb[:2])  # fmt: skip
        np.testing.assert_allclose(mixed, L.normal_eps(process, z_t[:2], tb[:2]), rtol=1e-6)


def test_subvp_and_ve_need_t_min_and_rescale_rules():
    with pytest.raises(ValueError, match="t_min > 0"):
        L.LSGMObjective(PROCESSES["ve"], t_min=0.0)
    with pytest.raises(ValueError, match="not on a VE"):
        L.weight(PROCESSES["ve"], "rescale", jnp.ones((2,)))
    sub = PROCESSES["subvp"]
    t = jnp.linspace(0.1, 0.9, 5)
    np.testing.assert_allclose(L.weight(sub, "rescale", t), 0.5 / (1.0 - L.var(sub, t)))


def test_ve_sigma2_max_is_the_largest_pairwise_squared_distance():
    """Against the brute-force maximum over all pairs, and on the toy LSGM's encoder over two
    batches: the same as the brute force on the latents encoded with the same keys."""
    from jaxdiff.methods.lsgm_vae_io import max_pairwise_sq_distance, ve_sigma2_max
    from tests.test_lsgm_eval import _tiny_method

    z = np.random.default_rng(0).normal(size=(300, 2, 3)) * np.array([1.0, 3.0, 0.5])
    flat = z.reshape(300, -1)
    brute = max(float(np.sum((a - b) ** 2)) for a in flat for b in flat)
    assert max_pairwise_sq_distance(z, block=64) == pytest.approx(brute, rel=1e-10)
    method, state = _tiny_method()
    xs = [np.random.default_rng(i).normal(size=(32, 2)).astype(np.float32) for i in range(2)]
    got = ve_sigma2_max(method, state.params["vae"], None, xs, jax.random.key(4))
    vae = method.vae(state.params["vae"])
    lat = [vae.top_latent(vae.encode(jnp.asarray(x), jax.random.fold_in(jax.random.key(4), i))["z"])
           for i, x in enumerate(xs)]  # fmt: skip
    flat = np.concatenate([np.asarray(v, np.float64) for v in lat])
    brute = max(float(np.sum((a - b) ** 2)) for a in flat for b in flat)
    assert got == pytest.approx(brute, rel=1e-5)


@pytest.mark.slow  # ~15 s of CPU each (105 s of wall time on the loaded 2 cores)
@pytest.mark.parametrize("name", ["subvp", "ve"])
def test_toy_lsgm_stage2_step_on_subvp_and_ve(name):
    """The toy LSGM builds on a sub-VP / VE latent SDE (t_min 0.01) and its stage-2 gradients and
    metrics are finite; p's loss uses the IS weights of that SDE."""
    from configs.toy.lsgm import get_config
    from jaxdiff.build import build_method

    c = get_config()
    c.lsgm.vae.hidden, c.lsgm.vae.depth = 16, 1
    c.lsgm.score.hidden, c.lsgm.score.depth, c.lsgm.score.embed_dim = 16, 1, 8
    c.lsgm.stage1_steps, c.lsgm.stage2_steps = 1, 1
    c.process.name = name
    if name == "subvp":
        c.process.schedule = "linear"
        c.process.beta_min, c.process.beta_max = 0.1, 20.0
    else:
        c.process.sigma_min, c.process.sigma_max = 0.01, 5.0
    c.lsgm.t_min = T_MIN
    method = build_method(c)
    assert type(method.process).__name__ == {"subvp": "SubVP", "ve": "VE"}[name]
    state = method.init(jax.random.key(0), {})
    state = state.replace(step=jnp.ones((), jnp.int32))  # stage 2
    x = jax.random.normal(jax.random.key(1), (16, 2))
    keys = jax.random.split(jax.random.key(2), 16)
    out = jax.jit(lambda s, x, k: method.grads(0, s, {"x": x}, k))(state, x, keys)
    assert float(out.metrics["stage"]) == 2.0
    for leaf in jax.tree.leaves(out.grads):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    assert all(np.isfinite(float(v)) for v in out.metrics.values())
