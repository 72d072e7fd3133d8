"""LSGM: IS densities and samplers, IS vs uniform estimates, the alpha = 0 cross entropy, the ELBO
as a bound on a model with a known density, and the stage 1 -> 2 transition through checkpoints."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.objectives import lsgm as L
from jaxdiff.objectives.parameterisation import LSGMMixed
from jaxdiff.processes import VP, GeometricSchedule, LinearSchedule

PROCESSES = {
    "linear": (VP(LinearSchedule()), 0.01),  # LSGM's VPSDE, time_eps 0.01
    "geometric": (VP(GeometricSchedule(3e-5, 0.999)), 0.0),  # LSGM's geometric VPSDE, eps 0
}


def _alpha0_eps_fn(process):
    """The mixed score with alpha = 0: the analytic eps of N(0, I) latents, sigma_t z_t."""

    def eps_fn(z, t):
        mixed = LSGMMixed(jnp.full((z.shape[-1],), -jnp.inf))
        return mixed.eps(process, jnp.zeros_like(z), z, t)

    return eps_fn


# ----------------------------------------------------------------------------------------------
# Importance sampling of t


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("weighting", L.IS_WEIGHTINGS)
def test_is_density_integrates_to_one_and_sampler_matches(name, weighting):
    process, t_min = PROCESSES[name]
    t = np.linspace(t_min, 1.0, 200_001)
    dens = np.asarray(L.is_density(process, weighting, jnp.asarray(t, jnp.float32), t_min), float)
    assert np.all(dens > 0)
    assert np.trapezoid(dens, t) == pytest.approx(1.0, abs=1e-4)
    # r(t) is proportional to w(t) (1 - sigma^2): the ratio is constant on the grid
    ratio = dens / np.asarray(
        L.weight(process, weighting, jnp.asarray(t, jnp.float32))
        * (1 - L.var(process, jnp.asarray(t, jnp.float32)))
    )
    assert np.std(ratio) / np.mean(ratio) < 1e-3
    # Kolmogorov-Smirnov distance of 20k inverse-CDF draws to the integrated density
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(t))])
    n = 20_000
    s = np.sort(np.asarray(L.is_sample(process, weighting, jax.random.key(1), n, t_min)))
    assert s.min() >= t_min and s.max() <= 1.0
    ks = np.max(np.abs(np.interp(s, t, cdf) - np.arange(1, n + 1) / n))
    assert ks < 1.63 / math.sqrt(n)  # the 1% critical value


def test_inv_var_inverts_var():
    for process, t_min in PROCESSES.values():
        # near t = 1 the linear VP's sigma^2 = 1 - 4e-5 is at float32 resolution: test there in
        # sigma^2 space
        t = jnp.linspace(t_min, 0.8, 1001)
        np.testing.assert_allclose(L.inv_var(process, L.var(process, t)), t, atol=2e-5)
        s2 = L.var(process, jnp.linspace(t_min, 1.0, 1001))
        np.testing.assert_allclose(L.var(process, L.inv_var(process, s2)), s2, rtol=2e-5)
    geo = PROCESSES["geometric"][0]
    assert float(L.var(geo, 0.0)) == pytest.approx(3e-5, rel=1e-5)
    assert float(L.var(geo, 1.0)) == pytest.approx(0.999, rel=1e-6)


def _estimates(objective_fn, key, z0, reps):
    keys = jax.random.split(key, reps)
    vals = jax.vmap(lambda k: objective_fn(k, z0))(keys)  # (reps, b)
    return np.asarray(vals, np.float64).reshape(-1)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("weighting", L.IS_WEIGHTINGS)
def test_is_estimate_matches_uniform_with_lower_variance(name, weighting):
    process, t_min = PROCESSES[name]
    eps_fn = _alpha0_eps_fn(process)
    z0 = 1.3 * jax.random.normal(jax.random.key(0), (512, 4)) + 0.2  # near-Normal latents

    def est(sampling):
        obj = L.LSGMObjective(process, p_weighting=weighting, p_sampling=sampling, t_min=t_min)
        return _estimates(lambda k, z: obj.sgm_loss(eps_fn, k, z)[0], jax.random.key(3), z0, 40)

    iw, un = est("iw"), est("uniform")
    se = math.sqrt(iw.var() / iw.size + un.var() / un.size)
    assert abs(iw.mean() - un.mean()) < 4 * se
    assert iw.var() < un.var()


# ----------------------------------------------------------------------------------------------
# The cross entropy with alpha = 0 equals the analytic Normal cross entropy


def _cutoff_expectation(process, t_min, mu, s):
    """Exact E of the DSM CE estimator for q = N(mu, s^2), alpha = 0, per example (derivation:
    int w_ll E||(1 - sigma^2) eps - sigma m z0||^2 dt with d sigma^2 = g^2 (1 - sigma^2) dt,
    plus the constant); it tends to the analytic CE as sigma^2(eps) -> 0, sigma^2(1) -> 1."""
    lo, hi = float(L.var(process, t_min)), float(L.var(process, 1.0))
    c = mu**2 + s**2
    per_dim = 0.5 * math.log(2 * math.pi) + 0.5 * (1 + math.log(hi) - hi + lo) + 0.5 * c * (hi - lo)
    return per_dim.sum(-1)


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("q_sampling,p_weighting", [("iw", "ll"), ("reweight_p", "un")])
def test_alpha0_cross_entropy_is_the_analytic_normal_cross_entropy(name, q_sampling, p_weighting):
    """Also with q on p's drop_all_iw draws reweighted by w_ll / r_un (reweight_p_samples)."""
    process, t_min = PROCESSES[name]
    d = 6
    mu = np.linspace(-1.5, 1.5, d)[None]
    log_s = np.linspace(-2.0, 0.3, d)[None]
    obj = L.LSGMObjective(process, q_sampling, p_weighting, "iw", t_min=t_min)
    eps_fn = _alpha0_eps_fn(process)
    n = 4096

    def one(k):
        k_z, k_ce = jax.random.split(k)
        z0 = mu + np.exp(log_s) * jax.random.normal(k_z, (n, d))
        return obj.cross_entropy(eps_fn, k_ce, z0)[0]

    vals = _estimates(lambda k, _: one(k), jax.random.key(7), None, 25)
    analytic = float(L.normal_cross_entropy(jnp.asarray(mu), jnp.asarray(log_s))[0])
    exact = float(_cutoff_expectation(process, t_min, mu, np.exp(log_s))[0])
    se = vals.std() / math.sqrt(vals.size)
    assert abs(vals.mean() - exact) < 4 * se
    assert abs(exact - analytic) < 2e-3 * abs(analytic)  # the time cut-offs' bias
    assert abs(vals.mean() - analytic) < 4 * se + 2e-3 * abs(analytic)


@pytest.mark.parametrize("p_weighting", ["un", "re"])
def test_reweight_p_draws_q_times_from_r_p_and_shares_them_with_p(p_weighting):
    """reweight_p_samples: q's times follow p's density r_p (Kolmogorov-Smirnov), its weights
    are w_ll / r_p, and p's loss with the same key sees the same t."""
    process, t_min = PROCESSES["linear"]
    obj = L.LSGMObjective(process, "reweight_p", p_weighting, "iw", t_min=t_min)
    assert obj.shares_draws and not obj.joint
    n = 20_000
    t, inv_r = obj.q_times(jax.random.key(4), n)
    np.testing.assert_allclose(inv_r, 1.0 / L.is_density(process, p_weighting, t, t_min), rtol=1e-6)
    grid = np.linspace(t_min, 1.0, 200_001)
    dens = np.asarray(L.is_density(process, p_weighting, jnp.asarray(grid, jnp.float32), t_min))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    s = np.sort(np.asarray(t, np.float64))
    assert np.max(np.abs(np.interp(s, grid, cdf) - np.arange(1, n + 1) / n)) < 1.63 / math.sqrt(n)
    eps_fn = _alpha0_eps_fn(process)
    z0 = jax.random.normal(jax.random.key(5), (64, 3))
    _, aux_q = obj.cross_entropy(eps_fn, jax.random.key(6), z0)
    _, aux_p = obj.sgm_loss(eps_fn, jax.random.key(6), z0)
    np.testing.assert_array_equal(aux_q["t"], aux_p["t"])
    joint = L.LSGMObjective(process, "reweight_p", "ll", "uniform", t_min=t_min)
    assert joint.joint  # CIFAR best NLL: ll_uniform / reweight_p_samples, one backward pass


def test_rescale_weighting_is_half_over_m2_with_uniform_t():
    """rescale_iw: w = 1 / (2 (1 - sigma_t^2)), only with uniform t."""
    process, t_min = PROCESSES["linear"]
    t = jnp.linspace(t_min, 1.0, 7)
    m = process.marginal(jnp.ones((7, 1)), t).mean[:, 0]  # m_t: the mean of x0 = 1
    np.testing.assert_allclose(L.weight(process, "rescale", t), 0.5 / m**2, rtol=1e-5)
    with pytest.raises(ValueError, match="uniformly"):
        L.LSGMObjective(process, "iw", "rescale", "iw", t_min=t_min)
    with pytest.raises(ValueError, match="q_sampling"):
        L.LSGMObjective(process, "reweight", "ll", "iw", t_min=t_min)


# ----------------------------------------------------------------------------------------------
# The ELBO bounds log p(x) on a model with a known density


def test_elbo_is_a_lower_bound_of_the_known_log_likelihood():
    """Linear-Gaussian decoder x = W z + b + s_x eps, prior = the alpha = 0 score model (N(0, I)).

    The marginal N(b, W W^T + s_x^2 I) is known, so for any Gaussian encoder
    ELBO(x) = log p(x) - KL(q(z|x) || p(z|x)): checked for the exact posterior (tight) and two
    wrong encoders (strictly below, by the analytic KL), with LSGM's estimator of the CE."""
    process, t_min = PROCESSES["geometric"]
    obj = L.LSGMObjective(process, q_sampling="iw", t_min=t_min)
    eps_fn = _alpha0_eps_fn(process)
    W = np.array([[1.2, 0.4], [-0.3, 0.8]])
    b = np.array([0.5, -1.0])
    sx2 = 0.3
    cov_x = W @ W.T + sx2 * np.eye(2)
    x = np.random.default_rng(0).multivariate_normal(b, cov_x, size=64)
    log_px = -0.5 * np.einsum("bi,ij,bj->b", x - b, np.linalg.inv(cov_x), x - b)
    log_px -= 0.5 * np.linalg.slogdet(2 * np.pi * cov_x)[1]
    # exact posterior p(z | x) = N(P W^T (x - b) / sx2, P), P = (I + W^T W / sx2)^-1
    P = np.linalg.inv(np.eye(2) + W.T @ W / sx2)
    post_mu = (x - b) @ W @ P.T / sx2

    def elbo(mu_q, var_q, reps=1000):
        def one(k):
            k_z, k_ce = jax.random.split(k)
            z = mu_q + np.sqrt(var_q) * jax.random.normal(k_z, mu_q.shape)
            recon = -L.log_normal(jnp.asarray(x), z @ W.T + b, 0.5 * jnp.log(sx2))
            log_q = L.log_normal(z, mu_q, 0.5 * jnp.log(var_q))
            ce = obj.cross_entropy(eps_fn, k_ce, z)[0]
            return -L.negative_elbo(recon, log_q, ce)[1]

        return np.asarray(jax.vmap(one)(jax.random.split(jax.random.key(5), reps)), float)

    def kl_to_posterior(mu_q, var_q):
        Pi = np.linalg.inv(P)
        d = post_mu - mu_q
        tr = np.sum(np.diag(Pi) * var_q, -1)
        return 0.5 * (tr + np.einsum("bi,ij,bj->b", d, Pi, d) - 2 + np.linalg.slogdet(P)[1]) - (
            0.5 * np.sum(np.log(var_q), -1)
        )

    diag = np.broadcast_to(np.diag(P), x.shape)  # mean-field q: the exact posterior's marginals
    encoders = {
        "mean_field_posterior": (post_mu, diag),
        "shifted": (post_mu + 0.7, diag),
        "too_wide": (post_mu, 3 * diag),
    }
    for name, (mu_q, var_q) in encoders.items():
        vals = elbo(mu_q, np.asarray(var_q))  # (reps, b)
        gap = kl_to_posterior(mu_q, var_q)
        assert np.all(gap >= 0)
        err = vals - (log_px - gap)[None]
        se = err.std() / math.sqrt(err.size)
        # ELBO = log p(x) - KL(q || posterior), up to MC error and the cut-off bias (~1e-3 / dim)
        assert abs(err.mean()) < 4 * se + 5e-3, (name, err.mean(), se)
        assert vals.mean() < log_px.mean() + 4 * se, name
        if name != "mean_field_posterior":
            assert log_px.mean() - vals.mean() > 0.2, name


# ----------------------------------------------------------------------------------------------
# Stages switched by step counts: resumable from checkpoints across transitions


def _tiny_config():
    from configs.toy.lsgm import get_config

    c = get_config()
    c.lsgm.vae.hidden, c.lsgm.vae.depth = 16, 1
    c.lsgm.score.hidden, c.lsgm.score.depth, c.lsgm.score.embed_dim = 16, 1, 8
    c.lsgm.stage1_steps, c.lsgm.stage2_steps, c.lsgm.stage3 = 2, 2, True
    c.lsgm.sr_vae = c.lsgm.sr_prior = 1e-3  # exercises the persistent power-iteration state
    c.optim.vae.optimizer_stage1 = "adamax"  # the VAE's Adamax -> Adam switch across resumes
    c.training.batch_size = 16
    c.training.num_steps = 6
    c.training.n_jitted_steps = 2
    c.training.ckpt_every = 2
    c.training.log_every = 2
    c.training.eval_at_end = False  # the stages are under test, not the toy's metrics
    c.sampling.num, c.sampling.rtol, c.sampling.atol = 16, 1e-3, 1e-3
    return c


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


@pytest.mark.slow
def test_stage_transitions_resume_from_checkpoints(tmp_path):
    """Stage 1 -> 2 -> 3 in three resumed slices equals the uninterrupted run, bit for bit;
    stage 1 leaves the prior at its init, stage 3 re-initialises it and freezes the VAE."""
    from jaxdiff.api import train
    from jaxdiff.build import build_method

    config = _tiny_config()
    full, _ = train(config, str(tmp_path / "full"), progress=False)
    work = str(tmp_path / "sliced")
    s1, info = train(config, work, progress=False, stop_after=2)
    assert info["step"] == 2
    method = build_method(config)
    init = method.init(jax.random.fold_in(jax.random.key(config.seed), -1 & 0x7FFFFFFF), {})
    assert _same(s1.params["prior"], init.params["prior"])  # no prior update in stage 1
    assert not _same(s1.params["vae"], init.params["vae"])
    s2, info = train(config, work, progress=False, stop_after=2)  # restores step 2: stage 2
    assert info["step"] == 4
    assert not _same(s2.params["prior"], s1.params["prior"])
    assert not _same(s2.ema["prior"], s1.ema["prior"])
    s3, info = train(config, work, progress=False)  # restores step 4: stage 3
    assert info["step"] == 6
    assert _same(s3.params["vae"], s2.params["vae"])  # frozen VAE
    assert not _same(s3.params["prior"], s2.params["prior"])
    assert _same(s3.params, full.params) and _same(s3.opt_state, full.opt_state)
    import json

    lines = [json.loads(x) for x in open(tmp_path / "sliced" / "metrics.jsonl")]
    assert [int(r["stage"]) for r in lines if "stage" in r] == [1, 2, 3]


def test_logistic_nll_gradient_is_the_density_gradient_far_in_the_tail():
    """Far in a tail both bin edges round to the same CDF: the NLL falls back to the density at
    the bin centre times its width, and its gradient must be that branch's, not NaN."""
    from jaxdiff.objectives.decoders import decoder_nll

    x = jnp.asarray([0.2, -0.5, 0.6], jnp.float32).reshape(1, 3, 1, 1)
    params = jnp.asarray([[-0.9, 0.9, -0.8], [-6.9, -6.5, -6.0]], jnp.float32).T.reshape(1, 3, 1, 2)

    def density_nll(p):  # -log(pdf(x) * 2/255) of the logistic(mean, e^log_s)
        mean, log_s = p[..., :1], p[..., 1:]
        u = (x - mean) * jnp.exp(-log_s)
        return -jnp.sum(u - log_s - 2.0 * jax.nn.softplus(u) + math.log(2.0 / 255))

    value, grad = jax.value_and_grad(lambda p: decoder_nll("logistic", p, x).sum())(params)
    want_value, want_grad = jax.value_and_grad(density_nll)(params)
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4)
