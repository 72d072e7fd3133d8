"""Parameterisations: the eps / x0 / score / v identities, exact outputs for Gaussian data, the DSM
minimiser in every parameterisation, CLD's and LSGM's mixed scores."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.objectives import lsgm as L
from jaxdiff.objectives.dsm import DenoisingScoreMatching
from jaxdiff.objectives.parameterisation import (
    X0,
    CLDMixed,
    Eps,
    EpsSkip,
    LSGMMixed,
    Score,
    V,
    make_parameterisation,
)
from jaxdiff.processes import VE, VP, GeometricSchedule, SubVP
from jaxdiff.processes.cld import CLD

PROCESSES = {"vp": VP(), "subvp": SubVP(), "ve": VE(sigma_max=5.0)}
MEAN, VAR = 0.3, 0.5  # the Gaussian data N(MEAN, VAR I) of the exact-output tests
PARAMS = {
    "eps": Eps(),
    "score": Score(),
    "eps_skip": EpsSkip(data_mean=MEAN, data_var=VAR),
    "x0": X0(),
    "v": V(),
}


def coefs(process, t):
    """(alpha_t, sigma_t) as (b, 1) columns, straight from the process."""
    return jnp.exp(process.log_alpha(t))[:, None], jnp.sqrt(process.kernel_var(t))[:, None]


def random_inputs(seed, b=64, d=3):
    k_t, k_x, k_o, k_e = jax.random.split(jax.random.key(seed), 4)
    t = jax.random.uniform(k_t, (b,), minval=0.1, maxval=1.0)
    return t, jax.random.normal(k_x, (b, d)), jax.random.normal(k_o, (b, d)), k_e


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------------------
# Identities between eps, x0, score and v


@pytest.mark.parametrize("pname", PARAMS)
@pytest.mark.parametrize("proc", PROCESSES)
def test_eps_x0_score_v_of_one_output_agree(proc, pname):
    """x0 = (x_t - sigma eps) / alpha, score = -eps / sigma, v = alpha eps - sigma x0."""
    process, p = PROCESSES[proc], PARAMS[pname]
    t, x_t, out, _ = random_inputs(0)
    alpha, sigma = coefs(process, t)
    eps, x0 = p.eps(process, out, x_t, t), p.x0(process, out, x_t, t)
    close(x0, (x_t - sigma * eps) / alpha)
    close(p.score(process, out, x_t, t), -eps / sigma)
    close(p.v(process, out, x_t, t), alpha * eps - sigma * x0)


@pytest.mark.parametrize("pname", PARAMS)
@pytest.mark.parametrize("proc", PROCESSES)
def test_target_round_trips_and_residual_is_the_eps_error(proc, pname):
    """With x_t = alpha x0 + sigma eps, F = target(x0, eps) gives back eps and x0, and
    residual(F') = eps(F') - eps for any F' (computed there without the cancellation)."""
    process, p = PROCESSES[proc], PARAMS[pname]
    t, x0, out, k_e = random_inputs(1)
    eps = jax.random.normal(k_e, x0.shape)
    alpha, sigma = coefs(process, t)
    x_t = alpha * x0 + sigma * eps
    f = p.target(process, x_t, t, x0, eps)
    close(p.eps(process, f, x_t, t), eps, 1e-4)
    close(p.x0(process, f, x_t, t), x0, 1e-4)
    close(p.residual(process, f, x_t, t, x0, eps), 0.0, 1e-4)
    close(p.residual(process, out, x_t, t, x0, eps), p.eps(process, out, x_t, t) - eps, 1e-4)


def test_v_is_salimans_and_ho_on_vp():
    """On VP (alpha^2 + sigma^2 = 1): eps = alpha v + sigma x_t, x0 = alpha x_t - sigma v."""
    process = VP()
    t, x_t, out, _ = random_inputs(2)
    alpha, sigma = coefs(process, t)
    close(V().eps(process, out, x_t, t), alpha * out + sigma * x_t)
    close(V().x0(process, out, x_t, t), alpha * x_t - sigma * out)


# ----------------------------------------------------------------------------------------------
# Exact network outputs for Gaussian data N(MEAN, VAR I)


def exact_output(pname, process, x, t, mean=MEAN, var=VAR):
    """The F of each parameterisation whose model is exact for N(mean, var I) data, from the
    closed-form score s* = -(x - alpha m) / (alpha^2 v + sigma^2) and the definitions of F
    (``eps_skip``'s is 0 for the Gaussian it was built for, N(MEAN, VAR I))."""
    alpha, sigma = coefs(process, t)
    s = -(x - alpha * mean) / (alpha**2 * var + sigma**2)
    eps, x0 = -sigma * s, (x + sigma**2 * s) / alpha
    return {
        "eps": eps,
        "score": s,
        "eps_skip": PARAMS["eps_skip"].target(process, x, t, x0, eps),
        "x0": x0,
        "v": alpha * eps - sigma * x0,
    }[pname]


@pytest.mark.parametrize("pname", PARAMS)
@pytest.mark.parametrize("proc", PROCESSES)
def test_exact_outputs_give_the_analytic_score(proc, pname):
    """The exact F gives the analytic score and Tweedie's x0. In float32, x0-prediction's score,
    (alpha x0 - x_t) / sigma^2, loses digits as sigma -> 0, and eps-prediction's x0,
    (x_t - sigma eps) / alpha, as alpha -> 0: each is checked where it is well conditioned."""
    process, p = PROCESSES[proc], PARAMS[pname]
    t = jnp.array([1e-3, 0.05, 0.3, 0.7, 1.0])
    x = 2.0 * jax.random.normal(jax.random.key(3), (5, 3))
    f = exact_output(pname, process, x, t)
    analytic = process.marginal(jnp.full_like(x, MEAN), t, var0=VAR).score(x)
    tweedie = process.denoise(x, analytic, t)
    s_ok = slice(2, None) if pname == "x0" else slice(None)
    x0_ok = slice(None) if pname == "x0" else slice(None, 4)
    close(p.score(process, f, x, t)[s_ok], analytic[s_ok], 1e-4)
    close(p.x0(process, f, x, t)[x0_ok], tweedie[x0_ok], 1e-4)
    score_fn = DenoisingScoreMatching(process, p).score_fn(
        lambda y, tb, key=None: exact_output(pname, process, y, tb)
    )
    close(score_fn(x, t)[s_ok], analytic[s_ok], 1e-4)


@pytest.mark.parametrize("pname", PARAMS)
@pytest.mark.parametrize("proc", PROCESSES)
def test_dsm_is_lowest_at_the_exact_output(proc, pname):
    """DSM's loss (sigma^2 weighting, same key, 20000 examples) rises when the exact F moves.

    Each example's loss change is 2 r* d + d^2 with d = scale(t) dF and E[r* | x_t] = 0; the
    perturbations are sized so that the mean change is >= 4 of its standard errors, except for
    x0, whose change is carried by a few examples at tiny t (weight alpha^2 / sigma^2) where d^2
    dominates."""
    process, p = PROCESSES[proc], PARAMS[pname]
    obj = DenoisingScoreMatching(process, p)
    x0 = MEAN + np.sqrt(VAR) * jax.random.normal(jax.random.key(4), (20000, 2))

    @jax.jit
    def loss(scale, shift):  # F = F* (1 + scale) + scale x + shift
        def net(x, t, key=None):
            return exact_output(pname, process, x, t) * (1 + scale) + scale * x + shift

        return obj.loss(net, jax.random.key(5), x0)[0]

    l_best = loss(0.0, 0.0)
    for c in (0.3, -0.3):
        for d in (loss(c, 0.0) - l_best, loss(0.0, c) - l_best):
            assert float(jnp.mean(d)) > 0
            z = float(jnp.mean(d) / jnp.std(d) * np.sqrt(d.size))
            assert z > (1.0 if pname == "x0" else 4.0), z


@pytest.mark.parametrize("proc", PROCESSES)
def test_dsm_loss_is_the_same_eps_error_in_every_parameterisation(proc):
    """The exact F of every parameterisation is one model, so DSM gives it one loss: per example
    to float tolerance (x0's residual alpha / sigma (x0 - F) amplifies F's rounding at tiny t,
    so for x0 the batch mean)."""
    process = PROCESSES[proc]
    x0 = MEAN + np.sqrt(VAR) * jax.random.normal(jax.random.key(4), (4096, 2))

    def loss(pname):
        net = lambda x, t, key=None: exact_output(pname, process, x, t)
        return DenoisingScoreMatching(process, PARAMS[pname]).loss(net, jax.random.key(5), x0)[0]

    ref = loss("eps")
    for pname in PARAMS:
        if pname == "x0":
            close(jnp.mean(loss(pname)), jnp.mean(ref), 1e-4)
        else:
            close(loss(pname), ref, 1e-4)


# ----------------------------------------------------------------------------------------------
# CLD's mixed velocity score


@pytest.mark.parametrize("t", [0.05, 0.3, 1.0])
def test_cld_mixed_with_zero_output_is_minus_v_over_sigma_vv(t):
    """F = 0: -v / Sigma~_vv, the exact velocity score of the HSM kernel's v-marginal for data
    at 0; unmixed, 0; any F adds -ell_t F; F = target(eps_v) gives -ell_t eps_v."""
    process = CLD()
    tb = jnp.full((8,), t)
    y = process.marginal(jnp.zeros((8, 3)), tb).sample(jax.random.key(6))[0]
    v, zero = y[1], jnp.zeros_like(y[1])
    ell = process.ell(tb)
    kern = process.marginal(jnp.zeros_like(v), tb)
    mixed, plain = CLDMixed(True), CLDMixed(False)
    close(mixed.velocity_score(process, zero, v, tb, ell), -v / kern.cov_vv)
    close(plain.velocity_score(process, zero, v, tb, ell), 0.0)
    f = jax.random.normal(jax.random.key(7), v.shape)
    close(
        mixed.velocity_score(process, f, v, tb, ell),
        -v / kern.cov_vv - ell[:, None] * f,
    )
    for p in (mixed, plain):
        tgt = p.target(process, v, tb, ell, f)
        close(p.velocity_score(process, tgt, v, tb, ell), -ell[:, None] * f, 1e-4)


# ----------------------------------------------------------------------------------------------
# LSGM's mixed eps


@pytest.mark.parametrize("process", [VP(), VP(GeometricSchedule(3e-5, 0.999))])
def test_lsgm_mixed_all_normal_is_the_normal_eps(process):
    """Mixing weight 1 on the Normal part (logit -inf): eps of N(0, I) latents,
    -sigma_t grad log N(z_t; 0, (alpha^2 + sigma^2) I); weight 0 (logit +inf): F itself."""
    t, z, out, _ = random_inputs(8, b=16, d=4)
    c = z.shape[-1]
    alpha, sigma = coefs(process, t)
    normal_eps = -sigma * process.marginal(jnp.zeros_like(z), t, var0=1.0).score(z)
    close(LSGMMixed(jnp.full((c,), -jnp.inf)).eps(process, out, z, t), normal_eps)
    close(LSGMMixed(jnp.full((c,), jnp.inf)).eps(process, out, z, t), out)
    logit = jnp.linspace(-2.0, 2.0, c)
    mixed = LSGMMixed(logit)
    close(mixed.eps(process, out, z, t), L.mixed_eps(out, logit, z, L.var(process, t)), 0.0)
    eps = jax.random.normal(jax.random.key(9), z.shape)
    close(mixed.eps(process, mixed.target(process, z, t, None, eps), z, t), eps, 1e-4)


# ----------------------------------------------------------------------------------------------
# Construction by name


def test_make_parameterisation():
    for name, p in PARAMS.items():
        kw = {"data_mean": MEAN, "data_var": VAR} if name == "eps_skip" else {}
        assert make_parameterisation(name, **kw) == p
    assert make_parameterisation("eps_skip") == EpsSkip(0.0, 1.0)
    with pytest.raises(ValueError, match="unknown parameterisation 'eps0'.*'eps', 'score'"):
        make_parameterisation("eps0")
    with pytest.raises(TypeError):
        make_parameterisation("x0", data_var=0.5)
    with pytest.raises(ValueError, match="data_var"):
        make_parameterisation("eps_skip", data_var=-1.0)
