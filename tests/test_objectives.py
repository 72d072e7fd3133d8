"""DSM objectives, weightings and importance sampling of t."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.objectives.dsm import DenoisingScoreMatching
from jaxdiff.objectives.parameterisation import Eps, EpsSkip, Score, make_parameterisation
from jaxdiff.objectives.time_sampling import likelihood_is_density, likelihood_is_t
from jaxdiff.processes import VE, VP, GeometricSchedule, SubVP


def true_eps_net(process, var_data=1.0):
    """The optimal eps-network for N(0, var_data I) data: eps* = sigma_t * (-score)."""

    def net(x, t, key=None):
        a2 = jnp.exp(2 * process.log_alpha(t))[:, None]
        s2 = process.kernel_var(t)[:, None]
        return jnp.sqrt(s2) * x / (a2 * var_data + s2)

    return net


# Uniform-t likelihood weighting (g^2/sigma^2 ~ 1e5 at t = 1e-5) is too heavy-tailed for a
# Monte-Carlo comparison at this size; its IS twin estimates the same integral (tested below).
@pytest.mark.parametrize("weighting", ["sigma2", "likelihood_is"])
def test_dsm_is_lowest_at_the_true_score(weighting):
    process = VP()
    obj = DenoisingScoreMatching(process, Eps(), weighting)
    x0 = jax.random.normal(jax.random.key(0), (20000, 2))
    best = true_eps_net(process)

    def loss(net):
        return float(jnp.mean(obj.loss(net, jax.random.key(1), x0)[0]))

    l_true = loss(best)
    for delta in (0.1, -0.1):
        perturbed = lambda x, t, key=None, d=delta: best(x, t) * (1 + d)
        assert loss(perturbed) > l_true
    assert loss(lambda x, t, key=None: best(x, t) + 0.05) > l_true


def test_score_parameterisation_matches_eps():
    """|sigma s + eps|^2 with s = -eps_net / sigma equals |eps_net - eps|^2."""
    process = VE(sigma_max=5.0)
    x0 = jax.random.normal(jax.random.key(0), (64, 3))
    eps_net = true_eps_net(process)
    score_net = lambda x, t, key=None: -eps_net(x, t) / jnp.sqrt(process.kernel_var(t))[:, None]
    l_eps = DenoisingScoreMatching(process, Eps()).loss(eps_net, jax.random.key(2), x0)[0]
    l_score = DenoisingScoreMatching(process, Score()).loss(score_net, jax.random.key(2), x0)[0]
    np.testing.assert_allclose(l_eps, l_score, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("process", [VP(), SubVP(), VP(GeometricSchedule())])
def test_eps_skip_with_a_zero_network_is_the_exact_gaussian_score(process):
    """eps_skip with F = 0 is the score of the marginal of N(mu, v I) data,
    -(x - a mu) / (a^2 v + s^2), and the DSM minimiser there: the loss rises when F leaves 0."""
    mu, v = -0.6, 0.3
    obj = DenoisingScoreMatching(process, EpsSkip(data_mean=mu, data_var=v))
    zero = lambda x, t, key=None: jnp.zeros_like(x)
    t = jnp.array([1e-4, 0.01, 0.3, 0.7, 1.0])
    y = jax.random.normal(jax.random.key(0), (5, 3)) * 2.0
    a = jnp.exp(process.log_alpha(t))[:, None]
    expected = -(y - a * mu) / (a**2 * v + process.kernel_var(t)[:, None])
    np.testing.assert_allclose(obj.score_fn(zero)(y, t), expected, rtol=1e-5, atol=1e-6)

    x0 = mu + np.sqrt(v) * jax.random.normal(jax.random.key(1), (20000, 2))
    loss = lambda net: float(jnp.mean(obj.loss(net, jax.random.key(2), x0)[0]))
    l0 = loss(zero)
    for c in (0.1, -0.1):
        assert loss(lambda x, t, key=None, c=c: jnp.full_like(x, c)) > l0
        assert loss(lambda x, t, key=None, c=c: c * x) > l0


def test_eps_skip_residual_is_unit_scale_for_gaussian_data():
    """For Gaussian data, eps - eps_lin is the posterior noise of eps given x_t, with variance
    alpha^2 v / (alpha^2 v + sigma^2) = c_out^2: F's target has unit scale at every t (EDM's
    property, in eps form)."""
    process, v = VP(), 0.25
    param = EpsSkip(data_var=v)
    x0 = np.sqrt(v) * jax.random.normal(jax.random.key(3), (40000, 1))
    for t in (0.02, 0.2, 0.6, 1.0):
        tb = jnp.full((x0.shape[0],), t)
        xt, eps = process.marginal(x0, tb).sample(jax.random.key(4))
        resid = eps - param.eps(process, jnp.zeros_like(xt), xt, tb)
        a2, s2 = jnp.exp(2 * process.log_alpha(t)), process.kernel_var(t)
        c_out = jnp.sqrt(a2 * v / (a2 * v + s2))
        np.testing.assert_allclose(float(jnp.var(resid / c_out)), 1.0, rtol=0.03)


@pytest.mark.parametrize("process", [VP(), SubVP(), VE(sigma_max=50.0), VP(GeometricSchedule())])
def test_is_density_integrates_to_one_and_matches_samples(process):
    t_min = 1e-5
    grid = jnp.linspace(t_min, process.t_max, 200001)
    q = likelihood_is_density(process, grid, t_min)
    assert abs(float(jnp.trapezoid(q, grid)) - 1.0) < 2e-3
    t, w = likelihood_is_t(jax.random.key(0), process, 50000, t_min)
    assert float(t.min()) >= t_min and float(t.max()) <= process.t_max
    # Kolmogorov-Smirnov against the CDF F(t) = (logSNR(t_min) - logSNR(t)) / Z.
    z = process.log_snr(jnp.float32(t_min)) - process.log_snr(jnp.float32(process.t_max))
    ts = jnp.sort(t)
    cdf = (process.log_snr(jnp.float32(t_min)) - process.log_snr(ts)) / z
    emp = jnp.arange(1, ts.size + 1) / ts.size
    assert float(jnp.max(jnp.abs(cdf - emp))) < 1.63 / np.sqrt(ts.size) + 1e-3  # 1% level
    np.testing.assert_allclose(w, z, rtol=1e-6)


def test_is_and_uniform_likelihood_losses_agree_with_lower_variance():
    process = VP()
    x0 = jax.random.normal(jax.random.key(0), (100000, 2)) * 0.7
    net = true_eps_net(process, var_data=1.0)  # not optimal for var 0.49: nonzero excess loss
    uni = DenoisingScoreMatching(process, Eps(), "likelihood").loss(net, jax.random.key(1), x0)[0]
    imp = DenoisingScoreMatching(process, Eps(), "likelihood_is").loss(net, jax.random.key(1), x0)
    imp = imp[0]
    se = np.sqrt(uni.var() / uni.size + imp.var() / imp.size)
    assert abs(float(uni.mean() - imp.mean())) < 4 * se
    assert float(imp.var()) < 0.1 * float(uni.var())


def test_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="data_var"):
        EpsSkip(data_var=0.0)
    with pytest.raises(ValueError, match="unknown weighting"):
        DenoisingScoreMatching(VP(), Eps(), "snr")
    with pytest.raises(ValueError, match="unknown parameterisation 'x_0'.*'eps_skip', 'x0', 'v'"):
        make_parameterisation("x_0")
    with pytest.raises(TypeError, match="make_parameterisation"):
        DenoisingScoreMatching(VP(), "eps")


def test_eps_skip_is_built_from_the_config():
    from configs.base import base_config
    from jaxdiff.build import build_objective

    cfg = base_config().objective
    cfg.parameterisation, cfg.data_mean, cfg.data_var = "eps_skip", -0.8, 0.3
    obj = build_objective(cfg, VP())
    assert obj.parameterisation == EpsSkip(data_mean=-0.8, data_var=0.3)
