"""DDGAN: the discrete chain, its posterior, R1 and its laziness, the sampler, a training smoke."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import ndtr

from jaxdiff.build import build_method
from jaxdiff.data.toy import GaussianMixture, mixture_25gaussians
from jaxdiff.eval.metrics import mode_stats
from jaxdiff.methods.ddgan import ddgan_sample, slerp
from jaxdiff.objectives.ddgan import d_loss, g_loss, lazy_r1_penalty, r1_due, r1_penalty
from jaxdiff.processes.discrete import DiscreteChain, vp_discrete_betas
from jaxdiff.train.sampling import draw
from jaxdiff.train.step import StepSettings, optimizer_step

# ----------------------------------------------------------------------------------------------
# Schedule and posterior coefficients

# ../shared/reference/ddgan.md, section 1.1 (computed from the official formulas, float32)
REFERENCE = {
    4: dict(
        betas=[0.4783, 0.8492, 0.9564, 0.9874],
        sqrt_ab=[0.7223, 0.2805, 0.0586, 0.00657],
        post_var=[0.0, 0.4408, 0.8842, 0.9841],
        coef1=[1.0, 0.6658, 0.2692, 0.0578],
        coef2=[0.0, 0.2016, 0.1930, 0.1119],
    ),
    8: dict(
        betas=[0.156, 0.381, 0.547, 0.667, 0.756, 0.821, 0.869, 0.904],
        sqrt_ab=[0.918, 0.722, 0.486, 0.280, 0.138, 0.059, 0.021, 0.0066],
        post_var=[0.0, 0.125, 0.342, 0.553, 0.710, 0.808, 0.866, 0.904],
        coef1=[1.0, 0.733, 0.517, 0.352, 0.216, 0.114, 0.051, 0.019],
        coef2=[0.0, 0.257, 0.422, 0.478, 0.464, 0.416, 0.361, 0.310],
    ),
}


def _decimals(values):
    """Half a unit in the last printed digit of each reference value."""
    out = []
    for v in values:
        s = f"{v}"
        d = len(s.split(".")[1]) if "." in s else 0
        out.append(0.5 * 10.0**-d + 1e-9)
    return np.array(out)


@pytest.mark.parametrize("T", [4, 8])
def test_coefficients_match_reference_table(T):
    chain = DiscreteChain.vp(T)
    ref = REFERENCE[T]
    got = {
        "betas": chain.betas,
        "sqrt_ab": jnp.sqrt(chain.alphas_cumprod),
        "post_var": chain.posterior_variance,
        "coef1": chain.posterior_coef_x0,
        "coef2": chain.posterior_coef_xt,
    }
    for name, values in ref.items():
        # the table prints 0.00657 / 0.0066 for sqrt(alpha_bar_T): compare to its own digits
        np.testing.assert_array_less(
            np.abs(np.asarray(got[name]) - np.array(values)), _decimals(values), err_msg=name
        )


@pytest.mark.parametrize("T", [1, 2, 4, 8])
def test_coefficients_match_formulas(T):
    """Independent closed forms: the telescoping product and Gaussian conditioning."""
    chain = DiscreteChain.vp(T)
    eps, bmin, bmax = 1e-3, 0.1, 20.0
    t = np.arange(T + 1) / T * (1 - eps) + eps
    log_ab = -0.5 * t**2 * (bmax - bmin) - t * bmin  # log alpha_bar(t) of the VP SDE
    ab = np.exp(log_ab[1:] - log_ab[0])  # prod_{j<=k} (1 - beta_j) = alpha_bar(t_k)/alpha_bar(t_0)
    np.testing.assert_allclose(chain.alphas_cumprod, ab, rtol=1e-5)
    # forward noising includes the dummy beta_0 = 1e-8
    np.testing.assert_allclose(chain.a_cum**2, np.concatenate([[1 - 1e-8], ab * (1 - 1e-8)]), 1e-5)
    np.testing.assert_allclose(chain.a_cum**2 + chain.sigma_cum**2, 1.0, atol=1e-6)
    assert abs(float(chain.sigma_cum[0]) - 1e-4) < 1e-6  # the "clean" member's 1e-4 noise
    assert np.isclose(float(chain.a_cum[-1] ** 2), 4.3e-5, rtol=0.02)  # x_T ~ N(0, I)
    # posterior = conditioning the Gaussian joint of (x_{k-1}, x_k) given x0 (k = 1..T)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    alpha = ab / ab_prev
    var_prev, var_k = 1 - ab_prev, 1 - ab
    cov = np.sqrt(alpha) * var_prev  # Cov(x_{k-1}, x_k | x0)
    gain = cov / var_k
    np.testing.assert_allclose(chain.posterior_coef_xt, gain, atol=1e-6)
    np.testing.assert_allclose(
        chain.posterior_coef_x0, np.sqrt(ab_prev) - gain * np.sqrt(ab), atol=1e-6
    )
    np.testing.assert_allclose(chain.posterior_variance, var_prev - gain * cov, atol=1e-6)
    assert float(chain.posterior_coef_x0[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(chain.posterior_variance[0]) == 0.0
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(chain))


def test_betas_float64_and_validation():
    b = vp_discrete_betas(4)
    assert b.dtype == np.float64 and b.shape == (4,) and np.all((b > 0) & (b < 1))
    with pytest.raises(ValueError):
        vp_discrete_betas(0)


@pytest.mark.parametrize("T", [2, 4, 8])
def test_posterior_consistency_monte_carlo(T):
    """x_k ~ q(x_k|x0), x_{k-1} ~ q(x_{k-1}|x_k,x0) gives q(x_{k-1}|x0) and the forward joint."""
    chain = DiscreteChain.vp(T)
    n = 200_000
    x0 = jnp.full((n, 1), 1.3)
    for label in range(T):
        k = jnp.full((n,), label + 1)
        key = jax.random.fold_in(jax.random.key(0), label)
        k1, k2 = jax.random.split(key)
        x_k = chain.q_sample(k1, x0, k)
        x_prev = chain.posterior_sample(k2, x0, x_k, k - 1)
        ab = np.concatenate([[1.0], np.asarray(chain.alphas_cumprod, np.float64)])
        mean, var = math.sqrt(ab[label]) * 1.3, 1 - ab[label]
        xp = np.asarray(x_prev[:, 0], np.float64)
        xk = np.asarray(x_k[:, 0], np.float64)
        se_mean = math.sqrt(max(var, 1e-12) / n)
        assert abs(xp.mean() - mean) < 5 * se_mean + 1e-5, (label, xp.mean(), mean)
        se_var = var * math.sqrt(2 / n)
        assert abs(xp.var() - var) < 5 * se_var + 1e-7, (label, xp.var(), var)
        # joint: Cov(x_{k-1}, x_k | x0) = sqrt(alpha_k) (1 - alpha_bar_{k-1})
        cov_true = math.sqrt(ab[label + 1] / ab[label]) * var
        cov_hat = np.mean((xp - xp.mean()) * (xk - xk.mean()))
        se_cov = math.sqrt(var * (1 - ab[label + 1]) / n) * 1.5
        assert abs(cov_hat - cov_true) < 5 * se_cov + 1e-7, (label, cov_hat, cov_true)


def test_real_pairs_are_ancestral():
    """q_pair: x_t ~ q(x_t|x0) then x_{t+1} = a x_t + sigma eps (moments of both members)."""
    chain = DiscreteChain.vp(4)
    n = 200_000
    x0 = jnp.full((n, 1), -0.7)
    t = jnp.full((n,), 2)
    x_t, x_next = chain.q_pair(jax.random.key(3), x0, t)
    for x, k in ((x_t, 2), (x_next, 3)):
        m, s = float(chain.a_cum[k]) * -0.7, float(chain.sigma_cum[k])
        assert abs(float(x.mean()) - m) < 5 * s / math.sqrt(n)
        assert abs(float(x.std()) - s) < 5 * s / math.sqrt(2 * n)


# ----------------------------------------------------------------------------------------------
# Losses and R1


def test_gan_losses():
    real, fake = jnp.array([[2.0], [0.0]]), jnp.array([[-1.0], [3.0]])
    loss, parts = d_loss(real, fake)
    sp = lambda v: math.log1p(math.exp(v))
    assert float(parts["d_loss_real"]) == pytest.approx((sp(-2.0) + sp(0.0)) / 2, rel=1e-6)
    assert float(parts["d_loss_fake"]) == pytest.approx((sp(-1.0) + sp(3.0)) / 2, rel=1e-6)
    assert float(loss) == pytest.approx(float(parts["d_loss_real"] + parts["d_loss_fake"]))
    assert float(g_loss(fake)) == pytest.approx((sp(1.0) + sp(-3.0)) / 2, rel=1e-6)


def test_r1_against_known_gradient():
    """D(x) = sum_i c_i x_i^2 / 2 + w.x per example: grad = c x + w, R1 = g/2 mean ||c x + w||^2."""
    key = jax.random.key(0)
    x = jax.random.normal(key, (16, 4, 4, 3))
    c = jnp.linspace(0.5, 2.0, 48).reshape(4, 4, 3)
    w = jnp.linspace(-1.0, 1.0, 48).reshape(4, 4, 3)

    def d_fn(x):
        return jnp.sum(0.5 * c * x**2 + w * x, axis=(1, 2, 3))[:, None]

    expected = 0.5 * 0.02 * np.mean(np.sum(np.asarray(c * x + w) ** 2, axis=(1, 2, 3)))
    assert float(jax.jit(r1_penalty, static_argnums=0)(d_fn, x, 0.02)) == pytest.approx(
        expected, rel=1e-5
    )
    # gradients flow through R1 into D's parameters (here c), as the D step needs
    gc = jax.jit(
        jax.grad(lambda c: r1_penalty(lambda x: jnp.sum(0.5 * c * x**2, (1, 2, 3)), x, 1.0))
    )(c)
    np.testing.assert_allclose(gc, np.mean(np.asarray(c * x**2), axis=0), rtol=1e-4)


def test_lazy_r1_interval():
    """Applied on steps 0, 15, 30, ... (official global_step % lazy_reg == 0), never rescaled."""
    x = jnp.ones((4, 2))
    d_fn = lambda x: jnp.sum(3.0 * x, -1)  # grad 3 per coordinate: R1 = g/2 * 18
    f = jax.jit(lambda s: lazy_r1_penalty(d_fn, x, 0.02, s, 15))
    vals = np.array([float(f(jnp.asarray(s))) for s in range(46)])
    due = np.array([s % 15 == 0 for s in range(46)])
    np.testing.assert_allclose(vals[due], 0.01 * 18, rtol=1e-6)
    assert np.all(vals[~due] == 0.0)
    assert bool(r1_due(jnp.asarray(7), None)) and bool(r1_due(jnp.asarray(7), 1))
    assert float(lazy_r1_penalty(d_fn, x, 0.0, jnp.asarray(0), 15)) == 0.0


# ----------------------------------------------------------------------------------------------
# The sampler with a perfect x0 predictor


def exact_x0_sampler(chain: DiscreteChain, mix: GaussianMixture):
    """G(x_{t+1}, t, z) drawing x0 ~ q(x0 | x_{t+1}) exactly for mixture data, using z as noise.

    z[:, :d] is the within-component Gaussian noise, Phi(z[:, d]) picks the component by inverse
    CDF. q(x_{t+1} | x0) uses the posterior's alpha_bar (the dummy beta_0 changes it by 1e-8).
    """
    K, d = mix.means.shape

    def g(x, t, z):
        ab = chain.alphas_cumprod[t]
        a, s2 = jnp.sqrt(ab)[:, None], (1 - ab)[:, None]
        var_k = a**2 * mix.stds[None] ** 2 + s2  # (b, K): marginal variance per component
        diff = x[:, None, :] - a[..., None] * mix.means[None]
        logw = jnp.log(mix.weights) - 0.5 * d * jnp.log(var_k) - 0.5 * jnp.sum(diff**2, -1) / var_k
        cdf = jnp.cumsum(jax.nn.softmax(logw, -1), -1)
        k = jnp.clip(jnp.sum(cdf < ndtr(z[:, d])[:, None], -1), 0, K - 1)
        prec = 1 / mix.stds[k] ** 2 + a[:, 0] ** 2 / s2[:, 0]
        mean = (mix.means[k] / mix.stds[k, None] ** 2 + a * x / s2) / prec[:, None]
        return mean + z[:, :d] / jnp.sqrt(prec)[:, None]

    return g


@pytest.mark.parametrize(
    "T", [pytest.param(1, marks=pytest.mark.slow), 2, 4, pytest.param(8, marks=pytest.mark.slow)]
)
def test_sampler_with_perfect_predictor_reproduces_data(T):
    chain = DiscreteChain.vp(T)
    mix = mixture_25gaussians()
    n = 10_000
    run = jax.jit(lambda key: ddgan_sample(chain, exact_x0_sampler(chain, mix), key, (n, 2), 3))
    x = run(jax.random.key(T))
    stats = mode_stats(x, mix)
    assert int(stats["modes_covered"]) == 25
    hq_true = 1 - math.exp(-4.5)  # mass of the 3-std disc of a 2-D Gaussian
    assert abs(float(stats["high_quality_frac"]) - hq_true) < 4 * math.sqrt(hq_true / n)
    # mode weights: chi-square of the per-mode counts against uniform, 24 dof (p ~ 1e-4 cut)
    counts = np.asarray(stats["mode_counts"], np.float64)
    expected = counts.sum() / 25
    assert np.sum((counts - expected) ** 2 / expected) < 55.0
    # within-mode spread: the std of the offsets is the component std 0.05
    nearest = np.asarray(mix.means)[
        np.argmin(((np.asarray(x)[:, None] - mix.means) ** 2).sum(-1), 1)
    ]
    assert np.std(np.asarray(x) - nearest) == pytest.approx(0.05, rel=0.03)


def test_sampler_is_exact_at_last_step():
    """The last step (label 0) returns x0 = G(x_1, 0, z) exactly, with no posterior noise."""
    chain = DiscreteChain.vp(4)
    g = lambda x, t, z: jnp.full_like(x, 0.25) + 0 * z[:, :1]
    x = jax.jit(lambda key: ddgan_sample(chain, g, key, (64, 3), 4))(jax.random.key(0))
    np.testing.assert_allclose(x, 0.25, atol=1e-6)


@pytest.mark.parametrize("T", [2, 4])
def test_linear_x0_coefs_are_the_regression_of_x0_on_x_next(T):
    """c_t of ``linear_x0_coefs`` is the least-squares slope of x0 on x_{t+1} (Monte Carlo),
    for non-Gaussian data too (only the variance enters), and E[x0 | x_{t+1}] for Gaussian data."""
    chain = DiscreteChain.vp(T)
    n, var = 400_000, 8.0
    mix = mixture_25gaussians()  # per-coordinate variance 8 + 0.05^2
    coefs = np.asarray(chain.linear_x0_coefs(8.0 + 0.05**2))
    for t in range(T):
        for x0 in (mix.sample(jax.random.key(t), n), math.sqrt(var) * jax.random.normal(
            jax.random.key(100 + t), (n, 2))):  # fmt: skip
            labels = jnp.full((n,), t, jnp.int32)
            _, x_next = chain.q_pair(jax.random.key(200 + t), x0, labels)
            x0, x_next = np.asarray(x0, np.float64), np.asarray(x_next, np.float64)
            slope = np.sum(x0 * x_next) / np.sum(x_next**2)
            # standard error of the slope: residual std / (sqrt(2n) * std(x_next))
            resid = x0 - slope * x_next
            se = resid.std() / (math.sqrt(x0.size) * x_next.std())
            assert abs(slope - coefs[t]) < 5 * se + 1e-4, (t, slope, coefs[t], se)
    # closed form at the extremes: c -> 1 as the noise vanishes, c -> sqrt(ab) v / (ab v + 1 - ab)
    ab = np.asarray(chain.a_cum[1:], np.float64) ** 2
    np.testing.assert_allclose(
        np.asarray(chain.linear_x0_coefs(var)),
        np.sqrt(ab) * var / (ab * var + 1 - ab),
        rtol=1e-5,
    )


def test_toy_generator_skip_adds_the_linear_estimate():
    """``FourierMLPGenerator(skip_coefs=c)``: output = c[t] x_t + the same MLP without the skip."""
    from flax import nnx

    from jaxdiff.nets.fourier_mlp import FourierMLPGenerator
    from jaxdiff.nets.functional import functional

    c = (0.5, 1.5, 3.0)
    kw = dict(dim=2, nz=4, hidden=16, depth=2, t_emb_dim=8, octaves=2)
    g_skip, p = functional(FourierMLPGenerator(**kw, skip_coefs=c, rngs=nnx.Rngs(0)))
    g_plain, p2 = functional(FourierMLPGenerator(**kw, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(0), (6, 2))
    t = jnp.array([0, 1, 2, 0, 1, 2])
    z = jax.random.normal(jax.random.key(1), (6, 4))
    diff = g_skip.apply(p, x, t, z) - g_plain.apply(p2, x, t, z)
    np.testing.assert_allclose(
        diff, np.asarray(c)[np.asarray(t)][:, None] * x, rtol=1e-5, atol=1e-6
    )


def test_slerp_endpoints():
    a, b = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]])
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-6)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-6)
    np.testing.assert_allclose(slerp(a, a, 0.5), a, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# The method: a short training smoke test with tiny nets


def _tiny_toy_config(fourier: bool = True):
    import ml_collections

    from configs.toy.ddgan import get_config

    c = get_config()
    extra = {"octaves": 3, "length": 4.0} if fourier else {}
    prefix = "fourier_mlp" if fourier else "mlp"
    c.model = ml_collections.ConfigDict({"name": f"{prefix}_generator", "hidden": 16, "depth": 2})
    c.model.update(extra)
    if fourier:
        c.model.skip_data_var = 8.0
    c.ddgan.disc = ml_collections.ConfigDict(
        {"name": f"{prefix}_discriminator", "hidden": 16, "depth": 2, **extra}
    )
    c.training.batch_size = 32
    c.training.num_steps = 10
    c.ddgan.lazy_reg = 3
    c.eval.num_samples = 200
    return c


@pytest.mark.slow
def test_method_train_sample_evaluate_smoke():
    from jaxdiff.build import build_data, build_method
    from jaxdiff.methods.ddgan import DDGANMethod

    c = _tiny_toy_config(fourier=True)
    method = build_method(c)
    assert isinstance(method, DDGANMethod) and method.groups == ("G", "D")
    data = build_data(c)
    state = method.init(jax.random.key(0), data.batch(0, 32))
    assert set(state.params) == {"G", "D"} and set(state.ema) == {"G"}
    step = jax.jit(functools.partial(optimizer_step, method, settings=StepSettings()))
    init = state
    r1 = []
    for i in range(7):
        state, m = step(state, data.batch(i, 32), jax.random.key(i))
        assert all(np.isfinite(float(v)) for v in m.values()), m
        r1.append(float(m["r1"]))
    assert int(state.step) == 7
    # lazy R1 (interval 3) on steps 0, 3, 6 only
    assert [v > 0 for v in r1] == [i % 3 == 0 for i in range(7)]
    moved = lambda a, b: any(
        not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    assert moved(state.params["D"], init.params["D"]) and moved(state.params["G"], init.params["G"])
    assert moved(state.ema["G"], state.params["G"])  # EMA lags the parameters
    params = method.sampling_params(state)
    x, info = draw(method.sample_fn, params, jax.random.key(1), 50)
    assert x.shape == (50, 2) and info["nfe"] == 4 and bool(np.all(np.isfinite(x)))
    x2, _ = draw(method.sample_fn, params, jax.random.key(1), 50, batch_size=20)
    assert x2.shape == (50, 2)
    lerp = method.interpolate(state, jax.random.key(2), num_pairs=3, num_points=5)
    assert lerp.shape == (3, 5, 2)
    metrics = method.evaluate(state, jax.random.key(3), data)
    assert metrics["nfe"] == 4 and 0 <= metrics["modes_covered"] <= 25


@pytest.mark.slow
def test_image_method_smoke():
    """The NCSN++ generator with z and the small discriminator, tiny widths, 8x8 images."""
    from configs.ddgan.cifar10 import get_config
    from jaxdiff.methods.ddgan import DDGANMethod
    from jaxdiff.nets import zoo

    c = get_config()
    c.model.nf = 8
    c.model.ch_mult = (1,)
    c.model.num_res_blocks = 1
    c.model.attn_resolutions = ()
    c.model.z_emb_dim = 16
    c.model.n_mlp = 1
    c.ddgan.nz = 8
    c.ddgan.disc = zoo.with_overrides(
        c.ddgan.disc, ngf=4, t_emb_dim=16, widths=(2, 4), downsample=(False, True)
    )
    c.training.batch_size = 4
    method = build_method(c, data_shape=(8, 8, 3))
    assert isinstance(method, DDGANMethod)
    key = jax.random.key(0)
    x = jax.random.uniform(key, (4, 8, 8, 3), minval=-1, maxval=1)
    state = method.init(key, {"x": x})
    state, m = jax.jit(functools.partial(optimizer_step, method, settings=StepSettings()))(
        state, {"x": x}, key
    )
    assert all(np.isfinite(float(v)) for v in m.values()) and float(m["r1"]) > 0
    s, info = draw(method.sample_fn, method.sampling_params(state), key, 3)
    assert s.shape == (3, 8, 8, 3) and info["nfe"] == 4
    assert float(jnp.max(jnp.abs(s))) <= 1.0  # tanh head, and label 0 returns x0 exactly


@pytest.mark.slow
def test_toy_quick_start_meets_the_acceptance_thresholds(tmp_path):
    """Issue 6: ``jaxdiff train --config configs/toy/ddgan.py`` then ``jaxdiff sample`` (T = 4):
    25 / 25 modes with at least 80 % of the samples within 3 std of a centre."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tmp_path / "ddgan"
    cmd = [sys.executable, "-m", "jaxdiff", "train", "--config", "configs/toy/ddgan.py",
           "--workdir", str(work), "--noprogress"]  # fmt: skip
    subprocess.run(cmd, cwd=root, check=True, capture_output=True, timeout=900)
    sample = [sys.executable, "-m", "jaxdiff", "sample", "--workdir", str(work)]
    res = subprocess.run(sample, cwd=root, check=True, capture_output=True, text=True, timeout=300)
    assert "NFE 4" in res.stdout
    metrics = json.loads((work / "eval.json").read_text())
    assert metrics["modes_covered"] == 25
    assert metrics["high_quality_frac"] >= 0.8
    assert metrics["sw_ratio"] <= 2.0


def test_mlp_nets_on_images_flatten_and_restore_the_shape():
    """``configs/ddgan/digits_mlp.py``: the toy MLPs take (b, h, w, c) images flattened; a train
    step moves G and D, and samples come back as images (NFE = T)."""
    from configs.ddgan.digits_mlp import get_config
    from jaxdiff.methods.ddgan import DDGANMethod

    c = get_config()
    c.model.hidden = c.ddgan.disc.hidden = 16
    c.model.depth = c.ddgan.disc.depth = 1
    method = build_method(c, data_shape=(8, 8, 1))
    assert isinstance(method, DDGANMethod)
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1), minval=-1, maxval=1)
    state = method.init(jax.random.key(1), {"x": x})
    step = jax.jit(functools.partial(optimizer_step, method, settings=StepSettings()))
    new, m = step(state, {"x": x}, jax.random.key(2))
    assert all(np.isfinite(float(v)) for v in m.values())
    for g in ("G", "D"):
        pairs = zip(jax.tree.leaves(new.params[g]), jax.tree.leaves(state.params[g]), strict=True)
        assert any(not np.allclose(a, b) for a, b in pairs)
    samples, info = draw(method.sample_fn, method.sampling_params(new), jax.random.key(3), 5)
    assert samples.shape == (5, 8, 8, 1) and info["nfe"] == 4
    with pytest.raises(ValueError, match="built for"):  # a wrong image shape is named
        method.G.apply(new.params["G"], jnp.zeros((2, 4, 4, 1)), jnp.zeros(2, jnp.int32),
                       jnp.zeros((2, c.ddgan.nz)))  # fmt: skip
