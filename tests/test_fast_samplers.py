"""Fast samplers (DDIM, DPM-Solver, DPM-Solver++, UniPC, DEIS, iPNDM, EDM, gDDIM) and time grids.

Orders are measured on Gaussian data, whose probability-flow ODE has the closed-form solution
``(x_t - alpha_t m) / std_t = const`` with ``std_t^2 = alpha_t^2 s^2 + sigma_t^2``, in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.data.toy import mixture_8gaussians
from jaxdiff.processes import VE, VP, mixture_score_fn
from jaxdiff.processes.cld import CLD
from jaxdiff.solvers.base import IncompatibleSamplerError
from jaxdiff.solvers.exponential import DDIM, DEIS, DPMSolverPP, EDMHeun, UniPC, schedule
from jaxdiff.solvers.gddim import GDDIM, _l_vv
from jaxdiff.solvers.grids import make_grid, time_of_log_snr
from jaxdiff.solvers.samplers import check_sampler, make_sampler, sample

FAST = ["ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc", "deis", "ipndm", "edm_heun"]
M, S2 = 0.5, 0.3**2  # Gaussian data N(M, S2)


def gaussian_score(process):
    def score(y, t):
        a = jnp.exp(process.log_alpha(t))
        return -(y - a * M) / (a**2 * S2 + process.kernel_var(t))

    return score


def gaussian_flow(process, y, t_from, t_to):
    def moments(t):
        a = jnp.exp(process.log_alpha(t))
        return a * M, jnp.sqrt(a**2 * S2 + process.kernel_var(t))

    (m1, d1), (m0, d0) = moments(t_from), moments(t_to)
    return m0 + (y - m1) * d0 / d1


def logsnr_ts(process, n, t_max=1.0, t_min=0.05):
    lo, hi = process.log_snr(t_max), process.log_snr(t_min)
    ts = time_of_log_snr(process, lo + (hi - lo) * jnp.arange(n + 1) / n, t_max, t_min, 100)
    return ts.at[0].set(t_max).at[-1].set(t_min)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sampler, lo, hi",
    [
        (DDIM(), 0.85, 1.15),
        # At least the order claimed: 2M runs at ~2.5 over these steps on the uniform log-SNR
        # grid (its h^3 term is still comparable), UniC raises UniP-3 to ~4.
        (DPMSolverPP(order=2), 1.8, 5.0),
        (DPMSolverPP(order=3), 2.7, 5.0),
        (UniPC(order=3), 2.7, 5.0),
        (DEIS(order=3), 2.5, 5.0),
        (EDMHeun(), 1.85, 2.3),
    ],
    ids=["ddim", "dpmpp_2m", "dpmpp_3m", "unipc3", "deis3", "edm_heun"],
)
def test_convergence_order_on_gaussian_data(sampler, lo, hi):
    """Slope of log max-error against log steps on the log-SNR grid (float64, exact score)."""
    with jax.enable_x64(True):
        process = VP()
        y1 = jnp.linspace(-2.0, 2.0, 9, dtype=jnp.float64)[:, None]
        ns = [16, 32, 64]
        errs = []
        for n in ns:
            ts = logsnr_ts(process, n)
            y, _ = sampler.solve(process, gaussian_score(process), None, y1, ts)
            errs.append(float(jnp.max(jnp.abs(y - gaussian_flow(process, y1, 1.0, 0.05)))))
        slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
        assert lo <= slope <= hi, (slope, errs)


def test_exponential_integrators_are_exact_for_a_constant_prediction():
    """With a data prediction D constant in time (score ``(alpha D - y) / sigma^2``), every
    data-prediction rule integrates the linear part exactly: one step equals many."""
    process = VE(sigma_max=10.0)
    d = 0.8

    def score(y, t):
        return (d - y) / process.kernel_var(t)

    y1 = jnp.array([[-9.0], [3.0], [12.0]])
    ts = jnp.array([1.0, 0.7, 0.4, 0.2, 0.05])
    # closed form: (x - D) / sigma is constant
    want = d + (y1 - d) * jnp.sqrt(process.kernel_var(0.05) / process.kernel_var(1.0))
    for sampler in (DDIM(), DPMSolverPP(order=2), DPMSolverPP(order=3), UniPC(order=3)):
        y, nfe = sampler.solve(process, score, None, y1, ts)
        np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5, err_msg=type(sampler).__name__)
        assert int(nfe) == 4


@pytest.mark.slow
def test_gddim_is_exact_for_the_linear_part():
    """A CLD score with constant eps_v (``s_v = -c / L_vv(t)``) leaves only the linear ODE, which
    gDDIM integrates exactly: its 3 steps match an adaptive Tsit5 solve at tolerance 1e-7."""
    process = CLD()

    def score(y, t):
        return jnp.zeros_like(y[0]), -0.7 / _l_vv(process, t) * jnp.ones_like(y[1])

    y = (jnp.array([[0.3], [-1.0]]), jnp.array([[0.5], [0.2]]))
    ts = jnp.array([1.0, 0.6, 0.3, 0.05])
    ode = make_sampler("ode_tsit5", rtol=1e-7, atol=1e-7)
    ref, _ = ode.solve(process, score, None, y, ts)
    for order in (1, 2, 3):
        out, nfe = GDDIM(order=order, prediction="eps").solve(process, score, None, y, ts)
        for a, b in zip(out, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5)
        assert int(nfe) == 3


def point_mass_score(process, x0):
    return lambda y, t: process.marginal(jnp.full_like(y[0], x0), t).score(y)


def test_gddim_data_prediction_is_exact_for_a_point_mass():
    """Data x_0 = 0.6: the posterior mean is constant in time, so gDDIM with data prediction
    follows the probability-flow ODE exactly (against Tsit5 at tolerance 1e-7), from the v-score
    alone (the x-score is zeroed, as CLD score models return it)."""
    process = CLD()
    full = point_mass_score(process, 0.6)

    def score(y, t):
        return jnp.zeros_like(y[0]), full(y, t)[1]

    y = (jnp.array([[0.3], [-1.0]]), jnp.array([[0.5], [0.2]]))
    ts = jnp.array([1.0, 0.6, 0.3, 0.05])
    ref, _ = make_sampler("ode_tsit5", rtol=1e-7, atol=1e-7).solve(process, full, None, y, ts)
    for order in (1, 2):
        out, _ = GDDIM(order=order).solve(process, score, None, y, ts)
        for a, b in zip(out, ref, strict=True):
            np.testing.assert_allclose(a, b, atol=2e-5)


def test_stochastic_gddim_keeps_the_kernel_of_a_point_mass():
    """Started from exact draws of p(y_1 | x_0), stochastic gDDIM (4 steps) ends at draws of
    p(y_0.05 | x_0): mean and covariance within Monte-Carlo error (n = 20000)."""
    process = CLD()
    x0, n = 0.6, 20000
    start = process.marginal(jnp.full((n, 1), x0), 1.0).sample(jax.random.key(0))[0]
    ts = jnp.array([1.0, 0.5, 0.2, 0.1, 0.05])
    (x, v), _ = GDDIM(order=1, stochastic=True).solve(
        process, point_mass_score(process, x0), jax.random.key(1), start, ts
    )
    want = process.marginal(jnp.full((1, 1), x0), 0.05)
    np.testing.assert_allclose([x.mean(), v.mean()], [want.mean_x[0, 0], want.mean_v[0, 0]],
                               atol=4 * float(jnp.sqrt(want.cov_vv)) / np.sqrt(n))  # fmt: skip
    cov = jnp.cov(jnp.stack([x[:, 0], v[:, 0]]))
    np.testing.assert_allclose(
        cov, [[want.cov_xx, want.cov_xv], [want.cov_xv, want.cov_vv]], rtol=0.05, atol=1e-4
    )


def test_nfe_is_a_count_of_score_calls():
    """Reported NFE (denoising included) equals a host-side count of score evaluations."""
    process = VP()
    mix = mixture_8gaussians(radius=2.0, std=0.1)
    base = mixture_score_fn(process, mix.weights, mix.means, mix.stds)
    calls = []

    def counted(y, t):
        jax.debug.callback(lambda: calls.append(1), ordered=True)
        return base(y, t)

    for name, steps in [("unipc", 4), ("edm_heun", 3)]:
        calls.clear()
        out = sample(process, counted, jax.random.key(0), (8, 2), name, steps=steps)
        jax.block_until_ready(out.data)
        jax.effects_barrier()
        assert int(out.nfe) == len(calls), (name, int(out.nfe), len(calls))


@pytest.mark.parametrize("name", FAST)
def test_scalar_kernel_samplers_refuse_cld(name):
    with pytest.raises(IncompatibleSamplerError, match="'scalar_kernel'.*CLD lacks it"):
        check_sampler(name, CLD())


@pytest.mark.parametrize("name", ["gddim", "gddim_sde"])
def test_gddim_refuses_vp(name):
    with pytest.raises(IncompatibleSamplerError, match="'cld_kernel'.*VP lacks it"):
        check_sampler(name, VP())


@pytest.mark.slow
def test_fast_samplers_recover_a_mixture_at_ten_nfe():
    """8 Gaussians (std 0.1) under VP with the exact score, 9 steps on the log-SNR grid and the
    denoising step: DPM-Solver++(2M) and UniPC put nearly every sample within 3 std of a centre."""
    from jaxdiff.eval.metrics import mode_stats

    process = VP()
    mix = mixture_8gaussians(radius=2.0, std=0.1)
    score = mixture_score_fn(process, mix.weights, mix.means, mix.stds)
    for name in ("dpmpp_2m", "unipc"):
        out = sample(process, score, jax.random.key(0), (1000, 2), name, steps=9, grid="logsnr")
        stats = mode_stats(out.data, mix)
        assert int(out.nfe) == 10
        assert int(stats["modes_covered"]) == 8 and float(stats["high_quality_frac"]) > 0.9


def test_grids():
    process = VP()
    ts = make_grid("logsnr", 4, 1.0, 1e-3, process)
    lam = process.log_snr(ts)
    np.testing.assert_allclose(jnp.diff(lam), jnp.full(4, (lam[-1] - lam[0]) / 4), rtol=1e-4)
    assert float(ts[0]) == 1.0 and float(ts[-1]) == pytest.approx(1e-3)
    # Karras rho = 7: sigma^(1/7) uniform, sigma = exp(-log_snr / 2).
    tk = make_grid("karras", 5, 1.0, 1e-3, process)
    root = jnp.exp(-process.log_snr(tk) / 14.0)
    np.testing.assert_allclose(jnp.diff(root), jnp.full(5, (root[-1] - root[0]) / 5), rtol=1e-3)
    sch = schedule(process, tk)
    np.testing.assert_allclose(sch.lam, process.log_snr(tk) / 2, rtol=1e-5)
    np.testing.assert_allclose(make_grid([1.0, 0.5, 0.1], 2, 1.0), [1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="strictly decreasing"):
        make_grid([1.0, 0.5, 0.6], 2)
    with pytest.raises(ValueError, match="not steps \\+ 1 = 4"):
        make_grid([1.0, 0.5, 0.1], 3)
    with pytest.raises(ValueError, match="scalar kernel.*CLD"):
        make_grid("logsnr", 4, 1.0, 1e-3, CLD())


# ----------------------------------------------------------------------------------------------
# Singlestep DPM-Solver (Lu et al. 2022a, Alg. 1-2) and DPM-Solver++(2S) (Lu et al. 2022b).


@pytest.mark.slow
@pytest.mark.parametrize(
    "order, prediction, ks, lo, hi",
    [
        (1, "eps", (8, 16, 32), 0.9, 1.1),
        (2, "eps", (8, 16, 32), 1.85, 2.3),
        (3, "eps", (8, 16, 32), 2.8, 3.5),
        (2, "data", (8, 16, 32), 1.8, 2.2),
        # DPM-Solver++(3S): its error changes sign near 10 steps; asymptotically 2.9 (measured
        # up to 128 steps), 2.6 over these
        (3, "data", (16, 32, 64), 2.4, 3.5),
    ],
    ids=["dpm1", "dpm2", "dpm3", "dpmpp_2s", "dpmpp_3s"],
)
def test_singlestep_dpm_solver_order(order, prediction, ks, lo, hi):
    """Slope of log max-error against log steps, every step of full order on a log-SNR grid whose
    interior points are the intermediate times (float64, exact score of Gaussian data)."""
    from jaxdiff.solvers.dpm_singlestep import DPMSolverSinglestep

    sampler = DPMSolverSinglestep(order=order, prediction=prediction, fast=False)
    with jax.enable_x64(True):
        process = VP()
        y1 = jnp.linspace(-2.0, 2.0, 9, dtype=jnp.float64)[:, None]
        errs = []
        for k in ks:
            ts = logsnr_ts(process, k * order)
            y, nfe = sampler.solve(process, gaussian_score(process), None, y1, ts)
            assert int(nfe) == k * order
            errs.append(float(jnp.max(jnp.abs(y - gaussian_flow(process, y1, 1.0, 0.05)))))
        slope = -np.polyfit(np.log(ks), np.log(errs), 1)[0]
        assert lo <= slope <= hi, (slope, errs)


@pytest.mark.slow
def test_dpm_solver_fast_allocation_and_nfe():
    """DPM-Solver-fast (Lu et al. 2022a, Sec. 3.4): K = N // 3 + 1 steps, orders 3..3 then (2, 1),
    (1) or (2) by N mod 3; the reported NFE equals a host-side count of score calls."""
    from jaxdiff.solvers.dpm_singlestep import fast_orders

    assert fast_orders(9, 3) == [3, 3, 2, 1]
    assert fast_orders(10, 3) == [3, 3, 3, 1]
    assert fast_orders(11, 3) == [3, 3, 3, 2]
    assert fast_orders(5, 2) == [2, 2, 1] and fast_orders(4, 1) == [1] * 4
    for n in (9, 10, 11):
        assert sum(fast_orders(n, 3)) == n
    process = VP()
    mix = mixture_8gaussians(radius=2.0, std=0.1)
    base = mixture_score_fn(process, mix.weights, mix.means, mix.stds)
    calls = []

    def counted(y, t):
        jax.debug.callback(lambda: calls.append(1), ordered=True)
        return base(y, t)

    for name, steps in [("dpm_solver", 10), ("dpmpp_2s", 5)]:
        calls.clear()
        out = sample(process, counted, jax.random.key(0), (8, 2), name, steps=steps)
        jax.block_until_ready(out.data)
        jax.effects_barrier()
        assert int(out.nfe) == steps + 1 == len(calls), (name, int(out.nfe), len(calls))
    with pytest.raises(ValueError, match="multiple of 3"):
        make_sampler("dpm_solver", fast=False).solve(
            process, base, None, jnp.zeros((2, 2)), make_grid("uniform", 4)
        )
    with pytest.raises(ValueError, match="orders 1, 2 and 3, got 4"):
        make_sampler("dpm_solver", order=4).solve(
            process, base, None, jnp.zeros((2, 2)), make_grid("uniform", 4)
        )


def test_dpmpp_2s_is_exact_for_a_constant_data_prediction():
    """With D constant in time, DPM-Solver++(2S) integrates the linear part exactly (VE), and the
    singlestep samplers refuse CLD."""
    from jaxdiff.solvers.dpm_singlestep import DPMSolverSinglestep

    process = VE(sigma_max=10.0)
    d = 0.8
    y1 = jnp.array([[-9.0], [3.0], [12.0]])
    ts = jnp.array([1.0, 0.7, 0.4, 0.2, 0.05])
    want = d + (y1 - d) * jnp.sqrt(process.kernel_var(0.05) / process.kernel_var(1.0))
    for order in (2, 3):
        sampler = DPMSolverSinglestep(order=order, prediction="data")
        y, nfe = sampler.solve(process, lambda y, t: (d - y) / process.kernel_var(t), None, y1, ts)
        np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
        assert int(nfe) == 4
    for name in ("dpm_solver", "dpmpp_2s"):
        with pytest.raises(IncompatibleSamplerError, match="'scalar_kernel'.*CLD lacks it"):
            check_sampler(name, CLD())
