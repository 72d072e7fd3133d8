"""CLD: kernel, objectives, SSCS / EM / ODE samplers and the likelihood bound.

Achieved float32 accuracy of the kernel (``CLD.kernel_cov``, relative, against 50-digit mpmath
evaluations of Eq. (54)-(56) at the float32 value of t; M^-1 = 4, gamma = 0.04, beta = 4):

    t       Sigma_xx  Sigma_xv  Sigma_vv  ell_t (HSM, DSM, eps = 1e-9, var0 > 0, linear beta)
    1e-6    <1e-7     <6e-8     <6e-8     <6e-8
    1e-5    <1e-7     <8e-8     <4e-8     <9e-8
    1e-4    <1.2e-7   <1e-7     <6e-8     <8e-8
    1e-3    <1.6e-7   <1.8e-7   <8e-8     <7e-8
    1e-2    <1.2e-7   <1e-7     <1.4e-7   <4e-8
    0.1     <3.2e-7   <6.4e-7   <1.8e-7   <8e-8
    1       <3e-8     <2e-8     <5e-8     <1.1e-7

so every entry is checked to 1e-6 relative below (the closed form of the paper, evaluated in
float32, has no correct digit of ell_t^HSM at t = 1e-5).
"""

from __future__ import annotations

import math

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.data.toy import GaussianMixture
from jaxdiff.eval.metrics import sliced_wasserstein, sw_noise_floor
from jaxdiff.objectives.cld import HybridScoreMatching, augmented_nll, velocity_entropy
from jaxdiff.objectives.parameterisation import CLDMixed
from jaxdiff.processes.cld import CLD
from jaxdiff.processes.mixture import mixture_score_fn
from jaxdiff.solvers.samplers import (
    AdaptiveProbabilityFlow,
    ProbabilityFlow,
    ReverseSDE,
    make_sampler,
    sample,
)
from jaxdiff.solvers.sscs import SSCS

# (t, Sigma_xx, Sigma_xv, Sigma_vv, ell_t): mpmath, 50 digits, Eq. (54)-(56), t = float32(t).
EXACT = {
    "hsm": [
        (1e-6, 2.560641685871e-12, 1.600601586127e-7, 0.01000767987646, 612.3940693287),
        (1e-5, 2.566416150457e-10, 1.606014976316e-6, 0.01007678764722, 193.7174567592),
        (1e-4, 2.624091939928e-8, 1.660061731695e-5, 0.01076676593705, 61.44940555189),
        (1e-3, 3.193893135731e-6, 0.0002191848498986, 0.0175576302162, 19.93709818347),
        (1e-2, 0.0008239130624228, 0.006708075661333, 0.07553548798634, 6.913810321161),
        (0.1, 0.2218100672336, 0.1298598411001, 0.2157583506328, 2.675181436462),
        (1.0, 0.9999839704897, 7.076211786347e-6, 0.2499968760235, 2.000012496223),
    ],
    "dsm": [
        (1e-6, 6.826584695485e-16, 6.399897568503e-11, 7.999871980997e-6, 707.1081962928),
        (1e-5, 6.825847001808e-13, 6.398975758638e-9, 7.998719917427e-5, 223.6112727133),
        (1e-4, 6.818479390676e-10, 6.389767865053e-7, 0.000798721173771, 70.72482124151),
        (1e-3, 6.745269589772e-7, 6.298415441885e-5, 0.007873187560147, 22.40540358007),
        (1e-2, 0.0006057642614193, 0.005453720025087, 0.0683229429027, 7.212581767277),
        (0.1, 0.2166415163421, 0.1292137722868, 0.2156775920372, 2.685986760472),
        (1.0, 0.9999836823997, 7.202251182033e-6, 0.2499968208813, 2.000012716804),
    ],
    "hsm_var0": [  # data widened by var0x = 0.0025 (the mixture-score case)
        (1e-6, 0.002500000002401, 1.50060238638e-7, 0.0100076798765, 9.996162276602),
        (1e-5, 0.002500000240642, 1.506022978842e-6, 0.01007678765122, 9.961826330261),
        (1e-4, 0.002500024641773, 1.560141734184e-5, 0.01076676633641, 9.637387459633),
        (1e-3, 0.002503034746432, 0.0002092648460451, 0.01755766958129, 7.550627579007),
        (1e-2, 0.003308764351707, 0.006616044134005, 0.07553889656136, 4.006101073815),
        (0.1, 0.223445429012, 0.1294964273685, 0.2158391092405, 2.665101237798),
        (1.0, 0.9999839932781, 7.066083620622e-6, 0.249996880525, 2.000012478217),
    ],
    "hsm_eps1e-9": [  # the official CIFAR-10 numerical_eps: reproduces ell = 11.2, 39, 19.9
        (1e-6, 1.002560641686e-9, 1.600601586127e-7, 0.01000768087646, 10.00894846882),
        (1e-5, 1.256641615046e-9, 1.606014976316e-6, 0.01007678864722, 11.16342127889),
        (1e-4, 2.724091939928e-8, 1.660061731695e-5, 0.01076676693705, 39.21266777359),
        (1e-3, 3.194893135731e-6, 0.0002191848498986, 0.0175576312162, 19.9184651628),
        (1e-2, 0.0008239140624228, 0.006708075661333, 0.07553548898634, 6.913799202393),
        (0.1, 0.2218100682336, 0.1298598411001, 0.2157583516328, 2.675181423608),
        (1.0, 0.9999839714897, 7.076211786347e-6, 0.2499968770235, 2.000012492223),
    ],
    "hsm_linear": [  # beta(t) = 0.1 + 6.9 t (post-paper CelebA-HQ-256)
        (1e-6, 1.600120421526e-15, 4.000175592479e-9, 0.01000019200655, 3872.91996504),
        (1e-5, 1.601204479681e-13, 4.00175615681e-8, 0.01000192065463, 1224.544492932),
        (1e-4, 1.61207201121e-11, 4.017585731624e-7, 0.01001926546219, 386.6662268591),
        (1e-3, 1.723401693039e-9, 4.178222358751e-6, 0.01019854141107, 120.5244130576),
        (1e-2, 3.137399357733e-7, 6.056466015043e-5, 0.01256847815334, 33.76726037618),
        (0.1, 0.001088160169994, 0.007986590377069, 0.08163958400201, 6.590693645506),
        (1.0, 0.9999223865618, 3.372932661097e-5, 0.2499853404419, 2.000058645363),
    ],
}
CASES = {
    "hsm": (CLD(), 0.0, 0.01),
    "dsm": (CLD(), 0.0, 0.0),
    "hsm_var0": (CLD(), 0.0025, 0.01),
    "hsm_eps1e-9": (CLD(numerical_eps=1e-9), 0.0, 0.01),
    "hsm_linear": (CLD(beta0=0.1, beta1=6.9), 0.0, 0.01),
}


def rel_err(a, b):
    return np.abs(np.asarray(a, np.float64) - b) / np.abs(b)


# ----------------------------------------------------------------------------------------------
# Kernel


@pytest.mark.parametrize("case", sorted(EXACT))
def test_kernel_matches_exact_values(case):
    process, var0x, var0v = CASES[case]
    rows = np.array(EXACT[case])
    t = jnp.asarray(rows[:, 0], jnp.float32)
    s_xx, s_xv, s_vv, det = process.kernel_cov(t, var0x, var0v)
    ell = np.sqrt(np.asarray(s_xx, np.float64) / np.asarray(det, np.float64))
    assert s_xx.dtype == jnp.float32
    for got, col in ((s_xx, 1), (s_xv, 2), (s_vv, 3), (ell, 4)):
        np.testing.assert_array_less(rel_err(got, rows[:, col]), 1e-6)
    # The Gaussian built by kernel() agrees, and so does CLD.ell for the HSM / DSM cases.
    x0 = jnp.zeros((t.shape[0], 1))
    kern = process.kernel(x0, None, t, var0x, var0v)
    np.testing.assert_array_less(rel_err(kern.ell[:, 0], rows[:, 4]), 1e-6)
    np.testing.assert_array_less(rel_err(kern.cov_vv[:, 0], rows[:, 3]), 1e-6)
    if var0x == 0.0:
        np.testing.assert_array_less(rel_err(process.ell(t, var0v), rows[:, 4]), 1e-6)


def test_reference_table_of_ell():
    """The reference's table (cld.md, pitfall 2), to its printed digits."""
    hsm, dsm = CLD(), CLD()
    t = jnp.array([1e-6, 1e-5, 1e-4, 1e-3, 1e-2])
    np.testing.assert_allclose(hsm.ell(t), [612, 194, 61, 19.9, 6.9], rtol=0.01)
    np.testing.assert_allclose(dsm.ell(t[:3], var0v=0.0), [707, 224, 71], rtol=0.01)
    eps = CLD(numerical_eps=1e-9)
    np.testing.assert_allclose(eps.ell(t[1:4]), [11.2, 39, 19.9], rtol=0.01)
    np.testing.assert_allclose(hsm.ell(jnp.float32(1.0)), 2.0, rtol=1e-4)


def lyapunov_solution(process, ts, mean0, var0x, var0v):
    """Mean and covariance of the 2x2 linear SDE at times ``ts``: d mu = beta A mu and the
    Lyapunov ODE d Sigma = beta (A Sigma + Sigma A^T + diag(0, 2 Gamma)), Tsit5, rtol 1e-7."""
    gam, m_inv = process.damping, process.m_inv
    a = jnp.array([[0.0, m_inv], [-1.0, -gam * m_inv]])
    noise = jnp.array([[0.0, 0.0], [0.0, 2.0 * gam]])

    def vf(t, state, args):
        mu, sig = state
        b = process.beta(t)
        return b * a @ mu, b * (a @ sig + sig @ a.T + noise)

    ts = jnp.asarray(ts, jnp.float32)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vf),
        dfx.Tsit5(),
        jnp.float32(0.0),
        ts[-1],
        jnp.float32(1e-4),
        (jnp.asarray(mean0), jnp.diag(jnp.array([var0x, var0v]))),
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=1e-7, atol=1e-9),
        max_steps=100_000,
    )
    return sol.ys


@pytest.mark.parametrize(
    "process", [CLD(), CLD(beta0=0.1, beta1=6.9), CLD(m_inv=16.0)], ids=["const", "linear", "m16"]
)
def test_kernel_matches_lyapunov_ode(process):
    x0, v0, var0x, var0v = 1.3, -0.4, 0.04, 0.02
    ts = jnp.array([0.02, 0.2, 0.7])
    mu, sig = lyapunov_solution(process, ts, jnp.array([x0, v0]), var0x, var0v)
    kern = process.kernel(jnp.full((3, 1), x0), jnp.full((3, 1), v0), ts, var0x, var0v)
    got_mu = jnp.stack([kern.mean_x[:, 0], kern.mean_v[:, 0]], -1)
    got_sig = jnp.stack([kern.cov_xx[:, 0], kern.cov_xv[:, 0], kern.cov_vv[:, 0]], -1)
    np.testing.assert_allclose(got_mu, mu, rtol=2e-5, atol=1e-6)
    want = jnp.stack([sig[:, 0, 0], sig[:, 0, 1], sig[:, 1, 1]], -1)
    np.testing.assert_allclose(got_sig, want, rtol=2e-5, atol=1e-7)


def test_kernel_matches_sde_simulation():
    """HSM marginal with var0 against Euler-Maruyama paths of Eq. (5), dt = 2.5e-4, 40k paths."""
    process = CLD()
    n, dt, mean0, var0x = 40_000, 2.5e-4, 1.5, 0.04
    kx, kv, kw = jax.random.split(jax.random.key(0), 3)
    x = mean0 + math.sqrt(var0x) * jax.random.normal(kx, (n,))
    v = math.sqrt(process.var0v) * jax.random.normal(kv, (n,))
    checkpoints = (0.05, 0.3, 1.0)
    steps = [round(t / dt) for t in checkpoints]

    def em(carry, i):
        x, v = carry
        t = i * dt
        fx, fv = process.drift((x, v), t)
        _, g = process.diffusion((x, v), t)
        dw = math.sqrt(dt) * jax.random.normal(jax.random.fold_in(kw, i), (n,))
        return (x + fx * dt, v + fv * dt + g * dw), None

    state, done = (x, v), 0
    for t, s in zip(checkpoints, steps, strict=True):
        state, _ = jax.lax.scan(em, state, jnp.arange(done, s))
        done = s
        kern = process.marginal(jnp.full((1, 1), mean0), jnp.float32(t), var0=var0x)
        xs, vs = np.asarray(state[0], np.float64), np.asarray(state[1], np.float64)
        cov = np.cov(np.stack([xs, vs]))
        sxx, sxv, svv = float(kern.cov_xx), float(kern.cov_xv), float(kern.cov_vv)
        se_mean = np.sqrt([sxx / n, svv / n])
        se_cov = np.sqrt([2 * sxx**2 / n, (sxx * svv + sxv**2) / n, 2 * svv**2 / n])
        bias = 5e-3  # Euler-Maruyama's O(dt) bias, relative (dt beta = 1e-3)
        mean_err = np.abs([xs.mean() - kern.mean_x[0, 0], vs.mean() - kern.mean_v[0, 0]])
        np.testing.assert_array_less(mean_err, 5 * se_mean + bias * abs(mean0) * 0.1 + 1e-5)
        cov_err = np.abs([cov[0, 0] - sxx, cov[0, 1] - sxv, cov[1, 1] - svv])
        np.testing.assert_array_less(cov_err, 5 * se_cov + bias * np.abs([sxx, sxv, svv]))


def test_gaussian_log_prob_score_and_prior():
    process = CLD()
    x0 = jnp.array([[0.3, -1.0], [2.0, 0.5]])
    t = jnp.array([1e-3, 0.4])
    kern = process.marginal(x0, t, var0=0.01)
    (x, v), eps = kern.sample(jax.random.key(1))
    # log_prob against a dense 2x2 Gaussian per coordinate (float64 numpy).
    for b in range(2):
        cov = np.array(
            [[kern.cov_xx[b, 0], kern.cov_xv[b, 0]], [kern.cov_xv[b, 0], kern.cov_vv[b, 0]]],
            np.float64,
        )
        lp = 0.0
        for i in range(2):
            d = np.array([x[b, i] - kern.mean_x[b, i], v[b, i] - kern.mean_v[b, i]], np.float64)
            lp += -0.5 * d @ np.linalg.solve(cov, d) - 0.5 * np.log(np.linalg.det(cov))
            lp -= np.log(2 * np.pi)
        np.testing.assert_allclose(kern.log_prob((x, v))[b], lp, rtol=1e-4)
    # score = grad log_prob = score_from_noise(eps).
    auto = jax.grad(lambda y: jnp.sum(kern.log_prob(y)))((x, v))
    for a, b_, c in zip(auto, kern.score((x, v)), kern.score_from_noise(eps), strict=True):
        np.testing.assert_allclose(a, b_, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(a))))
        np.testing.assert_allclose(b_, c, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(a))))
    np.testing.assert_allclose(-eps[1] * kern.ell, kern.score_from_noise(eps)[1], rtol=1e-6)
    # Prior N(0, I) x N(0, M I), the kernel's t -> infinity limit.
    xp, vp = process.prior_sample(jax.random.key(2), (20_000, 2))
    np.testing.assert_allclose([jnp.var(xp), jnp.var(vp)], [1.0, process.mass], rtol=0.03)
    far = process.marginal(jnp.zeros((1, 1)), jnp.float32(4.0))
    np.testing.assert_allclose([far.cov_xx, far.cov_vv], [1.0, process.mass], rtol=1e-5)


def test_sscs_linear_step_is_exact_reverse_linear_flow():
    """A half-step over delta then another equals one step over 2 delta (exact flow property)."""
    process = CLD()
    n = 200_000
    y = (jnp.full((n, 1), 0.7), jnp.full((n, 1), -0.2))
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    two = process.reverse_linear_step(k1, y, jnp.float32(0.5), jnp.float32(0.45))
    two = process.reverse_linear_step(k2, two, jnp.float32(0.45), jnp.float32(0.4))
    one = process.reverse_linear_step(k3, y, jnp.float32(0.5), jnp.float32(0.4))
    for a, b in zip(two, one, strict=True):
        np.testing.assert_allclose(a.mean(), b.mean(), atol=4e-3)
        np.testing.assert_allclose(a.std(), b.std(), rtol=1e-2)
    # Its mean is the reversed Hamiltonian: x decreases along v > 0 (dx = -beta M^-1 v dtau).
    up = process.reverse_linear_step(k1, (jnp.zeros((n, 1)), jnp.ones((n, 1))), 0.5, 0.49)
    assert float(up[0].mean()) < 0


def reverse_linear_flow64(process: CLD, t_from: float, t_to: float):
    """(Phi, Q) of the reverse-time linear part in float64, straight from its SDE.

    In tau, ``dy = beta(t) A~ y dtau + sqrt(2 Gamma beta) dW_v`` with
    ``A~ = [[0, -M^-1], [1, -Gamma M^-1]]``, so over ``B = int_{t_to}^{t_from} beta``:
    Phi = expm(B A~), Q = int_0^B expm(s A~) D expm(s A~)^T ds with D = diag(0, 2 Gamma)
    (Van Loan's block exponential, scipy).
    """
    from scipy.linalg import expm

    m_inv, gam = process.m_inv, process.damping
    a = np.array([[0.0, -m_inv], [1.0, -gam * m_inv]])
    big_b = (t_from - t_to) * (process.beta0 + 0.5 * process.beta1 * (t_from + t_to))
    block = np.zeros((4, 4))
    block[:2, :2], block[:2, 2:], block[2:, 2:] = -a, np.diag([0.0, 2.0 * gam]), a.T
    f = expm(block * big_b)
    phi = f[2:, 2:].T
    return phi, phi @ f[:2, 2:]


def replaced(process: CLD, **changes) -> CLD:
    """A copy of ``process`` with some fields changed."""
    import dataclasses

    return dataclasses.replace(process, **changes)


@pytest.mark.parametrize(
    "process, t_from, t_to",
    [
        (CLD(), 0.5, 0.45),
        (CLD(), 1.0, 0.5),
        (CLD(), 0.0013996, 0.0012),  # the toy config's last SSCS half-steps (50 QS steps)
        (CLD(), 0.0012, 0.001),
        (CLD(beta0=0.1, beta1=6.9), 0.3, 0.1),
    ],
)
def test_sscs_half_step_covariance_is_exact_and_num_stab_adds_to_diagonal(process, t_from, t_to):
    """With num_stab = 0 the half-step's law is the exact one (float64 Van Loan, to 1e-6: the
    float32 kernel is accurate to a few ulps); num_stab adds exactly num_stab to Sigma_xx and
    Sigma_vv, whatever the process's numerical_eps, and None falls back to numerical_eps."""
    tf, tt = np.float32(t_from), np.float32(t_to)
    phi, q = reverse_linear_flow64(process, float(tf), float(tt))
    y = (jnp.array([[0.7]]), jnp.array([[-0.2]]))

    def law(proc, num_stab):
        k = proc.reverse_linear_kernel(y, tf, tt, num_stab)
        cov = np.array([[k.cov_xx, k.cov_xv], [k.cov_xv, k.cov_vv]], np.float64).reshape(2, 2)
        return np.array([k.mean_x[0, 0], k.mean_v[0, 0]], np.float64), cov

    mean, cov = law(process, 0.0)
    np.testing.assert_allclose(mean, phi @ [0.7, -0.2], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(cov, q, rtol=1e-6)
    noisy = replaced(process, numerical_eps=1e-6)
    np.testing.assert_array_equal(law(noisy, 0.0)[1], cov)  # the kernel's eps stays out
    for s in (1e-6, 1e-3):
        np.testing.assert_allclose(law(process, s)[1], q + s * np.eye(2), rtol=1e-6)
    np.testing.assert_allclose(law(noisy, None)[1], q + 1e-6 * np.eye(2), rtol=1e-6)


@pytest.mark.parametrize("num_stab", [0.0, 0.05])
def test_sscs_passes_num_stab_to_both_half_steps(num_stab):
    """One SSCS step from a point with the stationary score (so the S part is exactly 0) is the
    two exact A half-steps: N(Phi2 Phi1 y0, Phi2 (Q1 + s I) Phi2^T + Q2 + s I). 200k draws:
    every moment within 4 standard errors. The process's numerical_eps does not reach SSCS."""
    process = CLD()
    n, y0 = 200_000, np.array([0.7, -0.2])

    def score(y, t):
        return -y[0], -y[1] / process.mass

    ts = jnp.array([0.5, 0.4], jnp.float32)
    y = (jnp.full((n, 1), y0[0]), jnp.full((n, 1), y0[1]))
    key = jax.random.key(0)
    out, nfe = SSCS(num_stab=num_stab).solve(process, score, key, y, ts)
    assert int(nfe) == 1
    t_mid = float(np.float32(0.5 * (ts[0] + ts[1])))
    phi1, q1 = reverse_linear_flow64(process, float(ts[0]), t_mid)
    phi2, q2 = reverse_linear_flow64(process, t_mid, float(ts[1]))
    eye = num_stab * np.eye(2)
    cov = phi2 @ (q1 + eye) @ phi2.T + q2 + eye
    draws = np.concatenate([np.asarray(a, np.float64) for a in out], axis=1)
    se_mean = np.sqrt(np.diag(cov) / n)
    np.testing.assert_array_less(np.abs(draws.mean(0) - phi2 @ phi1 @ y0), 4 * se_mean)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(draws.T) - cov), 4 * se_cov)
    noisy, _ = SSCS(num_stab=num_stab).solve(
        replaced(process, numerical_eps=1e-2), score, key, y, ts
    )
    for a, b in zip(out, noisy, strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# Samplers with the exact score of a Gaussian mixture

MIX = GaussianMixture(
    weights=jnp.array([0.4, 0.3, 0.2, 0.1]),
    means=jnp.array([[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]]),
    stds=jnp.full((4,), 0.3),
)


def mode_weights(x):
    d2 = jnp.sum((x[:, None] - MIX.means[None]) ** 2, -1)
    return np.bincount(np.asarray(jnp.argmin(d2, -1)), minlength=4) / x.shape[0]


SAMPLERS = {
    "em": (ReverseSDE(dfx.Euler()), 500, "uniform"),
    "sscs": (SSCS(), 200, "quadratic"),
    "ode_heun": (ProbabilityFlow(dfx.Heun()), 200, "quadratic"),
    "ode_tsit5": (AdaptiveProbabilityFlow(dfx.Tsit5(), rtol=1e-5, atol=1e-5), 1, "uniform"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_recover_mixture(name):
    process = CLD()
    sampler, steps, grid = SAMPLERS[name]
    score = mixture_score_fn(process, MIX.weights, MIX.means, MIX.stds)
    n = 4000
    out = jax.jit(lambda k: sample(process, score, k, (n, 2), sampler, steps=steps, grid=grid))(
        jax.random.key(0)
    )
    x = out.data
    assert int(out.nfe) > 0 and not bool(jnp.isnan(x).any())
    # Mode weights within 4 binomial standard errors, and the within-mode spread.
    w = np.asarray(MIX.weights)
    np.testing.assert_array_less(np.abs(mode_weights(x) - w), 4 * np.sqrt(w * (1 - w) / n))
    nearest = MIX.means[jnp.argmin(jnp.sum((x[:, None] - MIX.means[None]) ** 2, -1), -1)]
    np.testing.assert_allclose(jnp.std(x - nearest), 0.3, rtol=0.05)
    floor = sw_noise_floor(jax.random.key(3), MIX.sample, n, num_repeats=3)
    sw = float(sliced_wasserstein(jax.random.key(4), x, MIX.sample(jax.random.key(5), n)))
    assert sw / floor < 1.6, (sw, floor)


@pytest.mark.slow
def test_sscs_error_falls_with_nfe_and_beats_em_at_low_nfe():
    """Gaussian data N(1, 0.5^2), exact score, quadratic grid, 100k samples (MC standard error
    of the std 0.2 %): the error |mean - 1| / 0.5 + |std / 0.5 - 1| falls as the number of SSCS
    steps grows; at 10 steps EM's error is more than twice SSCS's (measured: 0.46 vs 0.16)."""
    process = CLD()
    mu, sd = 1.0, 0.5
    score = mixture_score_fn(process, jnp.ones(1), jnp.full((1, 1), mu), jnp.full((1,), sd))

    def error(sampler, n_steps):
        out = jax.jit(
            lambda k: sample(
                process, score, k, (100_000, 1), sampler, steps=n_steps, grid="quadratic"
            )
        )(jax.random.key(0))
        assert int(out.nfe) == n_steps + 1
        x = out.data[:, 0]
        return abs(float(jnp.mean(x)) - mu) / sd + abs(float(jnp.std(x)) / sd - 1)

    errs = [error(SSCS(), n) for n in (10, 20, 40, 80)]
    assert all(a > b for a, b in zip(errs, errs[1:], strict=False)), errs
    assert errs[-1] < 0.04 and errs[0] > 4 * errs[-1], errs
    assert error(ReverseSDE(dfx.Euler()), 10) > 2 * errs[0]


def test_sscs_by_name_counts_nfe():
    process = CLD()

    def score(y, t):  # the stationary score: samples stay N(0, I) x N(0, M I)
        return -y[0], -y[1] / process.mass

    out = jax.jit(lambda k: sample(process, score, k, (16, 2), "sscs", steps=9, grid="quadratic"))(
        jax.random.key(0)
    )
    assert int(out.nfe) == 10
    assert out.data.shape == (16, 2) and len(out.state) == 2
    assert not bool(jnp.isnan(out.data).any())
    assert isinstance(make_sampler("sscs"), SSCS)


# ----------------------------------------------------------------------------------------------
# Objectives


def true_score_net(obj: HybridScoreMatching, sd: float, mean: float):
    """A 'network' whose mixed score is the exact velocity score of N(mean, sd^2) data."""
    process = obj.process

    def net(inp, t, key=None):
        d = inp.shape[-1] // 2
        y = (inp[:, :d], inp[:, d:])
        kern = process.marginal(jnp.full_like(y[0], mean), t, var0=sd**2)
        s_v = kern.score(y)[1]
        base = y[1] / obj.base_var_vv(t)[:, None] if obj.parameterisation.mixed else 0.0
        return -(s_v + base) / obj.ell(t)[:, None]

    return net


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "objective,weighting",
    [
        ("hsm", "reweightedv2"),
        pytest.param("hsm", "reweightedv1", marks=SLOW),
        pytest.param("hsm", "likelihood", marks=SLOW),
        pytest.param("dsm", "reweightedv2", marks=SLOW),
        pytest.param("dsm", "reweightedv1", marks=SLOW),
        pytest.param("dsm", "likelihood", marks=SLOW),
    ],
)
def test_loss_minimised_by_true_score(objective, weighting):
    """d/dc E[loss(s* + c h)] at c = 0 is zero (within 4 MC standard errors) for the true
    score s* of Gaussian data, in three directions h, and clearly not for a wrong score."""
    obj = HybridScoreMatching(CLD(), objective=objective, weighting=weighting)
    sd, mean, n = 0.7, 0.5, 100_000
    x0 = mean + sd * jax.random.normal(jax.random.key(0), (n, 2))
    key = jax.random.key(1)

    directions = (lambda y: y[1], lambda y: y[0] - mean, lambda y: jnp.ones_like(y[0]))

    @jax.jit
    def slopes(x0, sd_net, mean_net):
        net0 = true_score_net(obj, sd_net, mean_net)
        out = []
        for h in directions:

            def loss(c, h=h):
                def net(inp, t, key=None):
                    d = inp.shape[-1] // 2
                    # A change c h of the score is a change -c h / ell of the net output.
                    return net0(inp, t) - c * h((inp[:, :d], inp[:, d:])) / obj.ell(t)[:, None]

                return obj.loss(net, key, x0)[0]

            # Each example's loss is quadratic in c: this is exactly its slope at c = 0.
            diff = (loss(0.05) - loss(-0.05)) / 0.1
            out.append(jnp.mean(diff) / (jnp.std(diff) / math.sqrt(n)))
        return jnp.stack(out)

    z_true = np.asarray(slopes(x0, sd, mean))
    assert np.all(np.abs(z_true) < 4), z_true
    z_wrong = np.asarray(slopes(x0, 1.5 * sd, mean + 0.3))
    assert np.max(np.abs(z_wrong)) > 10, z_wrong


@pytest.mark.slow
def test_mixed_score_with_zero_net():
    """With net = 0 the mixed score is -v / Sigma~_vv: the exact velocity score of the v-marginal
    of the HSM kernel for data at 0. At t -> 1 that is the stationary (Normal-data) score -v/M;
    at small t it is *not* the joint score of N(0, I) data (the paper's description is loose)."""
    process = CLD()
    obj = HybridScoreMatching(process)
    zero = obj.score_fn(lambda inp, t, key=None: jnp.zeros_like(inp[:, : inp.shape[-1] // 2]))
    y = process.marginal(jnp.zeros((64, 3)), jnp.full((64,), 0.3)).sample(jax.random.key(0))[0]

    @jax.jit
    def check(t):
        sx, sv = zero(y, t)
        kern = process.marginal(jnp.zeros_like(y[0]), jnp.full((64,), t))
        marg = jax.grad(lambda v: jnp.sum(-0.5 * v**2 / kern.cov_vv))(y[1])
        return sx, sv, marg

    for t in (1e-3, 0.05, 0.3, 1.0):
        sx, sv, marg = check(jnp.float32(t))
        assert float(jnp.max(jnp.abs(sx))) == 0.0
        np.testing.assert_allclose(sv, marg, rtol=1e-5)
    normal = jax.jit(mixture_score_fn(process, jnp.ones(1), jnp.zeros((1, 3)), jnp.ones(1)))
    sv1 = check(jnp.float32(1.0))[1]
    np.testing.assert_allclose(sv1, normal(y, jnp.float32(1.0))[1], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(sv1, -y[1] / process.mass, rtol=1e-3, atol=1e-3)
    # At t = 0.05 the joint Normal-data score differs from -v / Sigma~_vv by O(1) relative.
    sv05 = check(jnp.float32(0.05))[1]
    assert float(jnp.max(jnp.abs(sv05 - normal(y, jnp.float32(0.05))[1]))) > 0.1 * float(
        jnp.max(jnp.abs(sv05))
    )


def test_net_channels_and_objective_from_config():
    import ml_collections

    from jaxdiff.build import build_objective

    cfg = ml_collections.ConfigDict(
        dict(
            name="hsm",
            cld_objective="dsm",
            weighting="likelihood",
            mixed_score=False,
            t_min=1e-5,
            reduce="sum",
        )
    )
    obj = build_objective(cfg, CLD())
    assert (obj.objective, obj.weighting) == ("dsm", "likelihood")
    assert obj.parameterisation == CLDMixed(mixed=False)
    assert obj.net_channels(3) == (6, 3)
    with pytest.raises(ValueError):
        HybridScoreMatching(CLD(), weighting="sigma2")


# ----------------------------------------------------------------------------------------------
# Likelihood


@pytest.mark.slow
def test_likelihood_bound_on_gaussian_data():
    """With the exact score, the augmented ODE gives log p_{t_min}(x, v_0) exactly; the bound
    averages to -log p(x) + KL(q(v_0) || p(v_0 | x)) >= -log p(x)."""
    process = CLD()
    sd, d, b = 0.8, 2, 8
    score = mixture_score_fn(process, jnp.ones(1), jnp.zeros((1, d)), jnp.full((1,), sd))
    kx, kv = jax.random.split(jax.random.key(0))
    x0 = sd * jax.random.normal(kx, (b, d))
    v0 = math.sqrt(process.var0v) * jax.random.normal(kv, (b, d))
    out = jax.jit(
        lambda x, v: augmented_nll(process, score, jax.random.key(2), x, v, divergence="exact")
    )(x0, v0)
    t_min = jnp.full((b,), 1e-5)
    joint = -process.marginal(jnp.zeros_like(x0), t_min, var0=sd**2).log_prob((x0, v0))
    np.testing.assert_allclose(out.nll_joint, joint, rtol=1e-3)
    np.testing.assert_allclose(out.nll, out.nll_joint - velocity_entropy(process, d), rtol=1e-6)
    # The bound in expectation over v_0 (analytic joint, many v_0) is above -log N(x; 0, sd^2).
    vs = math.sqrt(process.var0v) * jax.random.normal(jax.random.key(3), (4000, 1, d))
    marg = process.marginal(jnp.zeros_like(x0), t_min, var0=sd**2)
    bound = jnp.mean(jax.vmap(lambda v: -marg.log_prob((x0, v)))(vs), 0) - velocity_entropy(
        process, d
    )
    exact = 0.5 * jnp.sum(x0**2, -1) / sd**2 + d * (math.log(sd) + 0.5 * math.log(2 * math.pi))
    gap = np.asarray(bound - exact)
    assert np.all(gap > -0.05) and np.all(gap < 1.0), gap


# ----------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize("name", ["toy.cld", "cld.cifar10", "cld.celebahq256"])
def test_configs_build_process_and_objective(name):
    import importlib

    from jaxdiff.build import build_objective, build_process

    cfg = importlib.import_module(f"configs.{name}").get_config()
    process = build_process(cfg.process)
    obj = build_objective(cfg.objective, process)
    assert isinstance(process, CLD) and isinstance(obj, HybridScoreMatching)
    assert (process.m_inv, process.gamma) == (4.0, 0.04)
    assert obj.weighting == "reweightedv2" and obj.objective == "hsm"
    assert obj.parameterisation == CLDMixed(mixed=True)
    if name == "cld.celebahq256":
        assert (process.beta0, process.beta1, obj.t_min) == (0.1, 6.9, 1e-3)
    else:
        assert (process.beta0, process.beta1, obj.t_min) == (4.0, 0.0, 1e-5)
    assert make_sampler(cfg.sampling.sampler) is not None
