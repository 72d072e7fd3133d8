"""Exponential integrators for processes with a scalar kernel ``N(alpha_t x0, sigma_t^2 I)``.

Every sampler here sees only ``score_fn(y, t)`` and the process: the data prediction is Tweedie's
``D = (y + sigma^2 s) / alpha`` and the noise prediction ``E = -sigma s``. In the half log-SNR
``lambda = log(alpha / sigma)`` the probability-flow ODE has the exact solution (Lu et al. 2022,
DPM-Solver++ Eq. 9)

    x_t = (sigma_t / sigma_s) x_s + alpha_t int_{lambda_s}^{lambda_t} e^{-(lambda_t - l)} D(l) dl,

and the samplers differ in how they approximate ``D`` (or ``E``) over a step. All of them are
linear multistep rules: one step is ``x_{i+1} = a_i x_i + sum_k c_ik m_{i-k} (+ noise_i z)`` over
the model outputs ``m`` of the last steps, with coefficients that depend on the grid only. They
are computed for the whole grid before the loop (``_Tables``), so a step costs one score
evaluation and a few axpys; UniPC adds a corrector that reuses the next step's evaluation.

The loop is a ``lax.scan`` rather than a diffrax solver: the coefficients of step i depend on the
grid points before it (a multistep history), which a diffrax ``step(t0, t1)`` does not see, and
precomputing them keeps each step at the cost of Euler-Maruyama (``experiments/fast_samplers.py``
measures it against diffrax EM). The grid must end at ``t_min > 0`` (lambda is infinite at 0);
``sample``'s denoising step then finishes with Tweedie's formula.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxdiff.processes.base import SCALAR_KERNEL, SDE, Process
from jaxdiff.solvers.base import Sampler
from jaxdiff.solvers.grids import time_of_log_snr
from jaxdiff.solvers.reverse import ScoreFn

# Gauss-Legendre nodes and weights on [0, 1]: exact for polynomials of degree 31, and to float
# rounding for e^{-h (1 - v)} v^j with h up to ~10 (one step of a 5-NFE log-SNR grid is ~2.5).
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
GL_NODES, GL_WEIGHTS = (_GL_X + 1) / 2, _GL_W / 2

# Adams-Bashforth coefficients (uniform steps), newest output first: iPNDM's multistep rule.
_AB = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


class Schedule(NamedTuple):
    """alpha_t, sigma_t and lambda_t = log(alpha_t / sigma_t) at the grid points."""

    alpha: Array
    sigma: Array
    lam: Array


def schedule(process: Process, ts: Float[Array, " n+1"]) -> Schedule:
    """The scalar kernel at ``ts`` (in ``ts``'s dtype: float64 under ``enable_x64``)."""
    log_a = process.log_alpha(ts)
    var = process.kernel_var(ts)
    return Schedule(jnp.exp(log_a), jnp.sqrt(var), log_a - 0.5 * jnp.log(var))


def exp_moments(h: Array, order: int, rate: float = 1.0) -> Array:
    """``I_j = int_0^1 e^{-rate h (1 - v)} v^j dv`` for j < order, shape ``h.shape + (order,)``
    (16-point Gauss-Legendre: no cancellation at small h, unlike the phi-function recursion)."""
    v = jnp.asarray(GL_NODES, h.dtype)
    w = jnp.asarray(GL_WEIGHTS, h.dtype)
    e = jnp.exp(-rate * h[..., None] * (1.0 - v))  # (..., q)
    powers = v[None, :] ** jnp.arange(order, dtype=h.dtype)[:, None]  # (order, q)
    return jnp.einsum("...q,jq,q->...j", e, powers, w)


def history_nodes(lam: Array, order: int) -> Array:
    """``u_ik = (lambda_{i-k} - lambda_i) / h_i`` for k < order (shape (n, order)); points before
    the grid's start are filled with -k (never used: those steps run at a lower order)."""
    n = lam.shape[0] - 1
    h = lam[1:] - lam[:-1]
    cols = []
    for k in range(order):
        idx = jnp.arange(n) - k
        prev = lam[jnp.maximum(idx, 0)]
        cols.append(jnp.where(idx >= 0, (prev - lam[:-1]) / h, -float(k)))
    return jnp.stack(cols, axis=-1)


def lagrange_weights(nodes: Array, moments: Array) -> Array:
    """Weights w with ``sum_k w_k P(u_k) = sum_j I_j beta_j`` for every polynomial
    ``P = sum_j beta_j v^j`` of degree < p through the p nodes: ``V^T w = I``."""
    p = nodes.shape[-1]
    vander = nodes[..., :, None] ** jnp.arange(p, dtype=nodes.dtype)  # (..., k, j)
    return jnp.linalg.solve(jnp.swapaxes(vander, -1, -2), moments[..., None])[..., 0]


def step_orders(n: int, order: int, lower_order_final: bool) -> np.ndarray:
    """Order of each step: warm-up from 1, and (DPM-Solver++'s ``lower_order_final``, for grids
    of fewer than 15 steps) no more than the number of steps left."""
    i = np.arange(n)
    p = np.minimum(order, i + 1)
    if lower_order_final and n < 15:
        p = np.minimum(p, n - i)
    return p


def _select(orders: np.ndarray, per_order: dict[int, Array], width: int) -> Array:
    """Row i from ``per_order[orders[i]]``, each padded with zeros to ``width`` columns."""
    out = jnp.zeros((orders.shape[0], width), next(iter(per_order.values())).dtype)
    for p, coeffs in per_order.items():
        padded = jnp.pad(coeffs, ((0, 0), (0, width - coeffs.shape[1])))
        out = jnp.where(jnp.asarray(orders == p)[:, None], padded, out)
    return out


class Tables(NamedTuple):
    """One multistep rule over a grid of n steps (history width K).

    ``x_{i+1} = a_i x_i + sum_k c_ik m_{i-k} + noise_i z_i``; with a corrector (UniPC), the new
    output ``m_{i+1}`` evaluated at that prediction gives the final
    ``x_{i+1} = a_i x_i + sum_k cc_ik m_{i-k} + cn_i m_{i+1} + noise_i z_i``.
    """

    a: Float[Array, " n"]
    c: Float[Array, "n K"]
    noise: Float[Array, " n"] | None = None
    cc: Float[Array, "n K"] | None = None
    cn: Float[Array, " n"] | None = None


def run_multistep(
    process: Process,
    score_fn: ScoreFn,
    key: jax.Array | None,
    y: Array,
    ts: Array,
    tables: Tables,
    prediction: str,
) -> tuple[Array, Int[Array, ""]]:
    """Runs a multistep rule; ``prediction`` is ``'data'`` (m = D) or ``'eps'`` (m = E).

    NFE: one evaluation at ``ts[0]`` and one per step but the last (whose output no later step
    needs; UniPC skips its last corrector for the same reason): ``n`` in all.
    """
    sch = schedule(process, ts)
    n = ts.shape[0] - 1
    width = tables.c.shape[1]
    stochastic = tables.noise is not None
    if stochastic and key is None:
        raise ValueError("a stochastic sampler needs a PRNG key")
    keys = jax.random.split(key, n) if stochastic else None

    def model(x, i):
        s = score_fn(x, ts[i])
        if prediction == "data":
            return (x + sch.sigma[i] ** 2 * s) / sch.alpha[i]
        return -sch.sigma[i] * s

    def combine(x, hist, i, coeffs, extra=None):
        out = tables.a[i] * x
        for k in range(width):
            out = out + coeffs[i, k] * hist[k]
        if extra is not None:
            out = out + tables.cn[i] * extra
        if stochastic:
            out = out + tables.noise[i] * jax.random.normal(keys[i], x.shape, x.dtype)
        return out

    def body(carry, i):
        x, hist = carry
        x_pred = combine(x, hist, i, tables.c)
        m_new = model(x_pred, i + 1)
        x_new = x_pred if tables.cc is None else combine(x, hist, i, tables.cc, m_new)
        return (x_new, (m_new, *hist[:-1])), None

    m0 = model(y, 0)
    hist = (m0,) + tuple(jnp.zeros_like(m0) for _ in range(width - 1))
    (y, hist), _ = jax.lax.scan(body, (y, hist), jnp.arange(n - 1))
    y = combine(y, hist, n - 1, tables.c)
    return y, jnp.asarray(n, jnp.int32)


class ScalarKernelSampler(Sampler):
    """A multistep rule over a scalar-kernel process: subclasses give ``tables``."""

    requires: ClassVar[frozenset[str]] = frozenset({SDE, SCALAR_KERNEL})
    prediction: ClassVar[str] = "data"

    @abc.abstractmethod
    def tables(self, process: Process, ts: Array) -> Tables:
        """The rule's coefficients over the grid ``ts``."""

    def solve(self, process, score_fn, key, y, ts):
        ts = jnp.asarray(ts)
        tables = self.tables(process, ts)
        return run_multistep(process, score_fn, key, y, ts, tables, self.prediction)


def _steps(sch: Schedule):
    """(h_i, alpha_{i+1}, sigma_{i+1} / sigma_i) over the n steps."""
    h = sch.lam[1:] - sch.lam[:-1]
    return h, sch.alpha[1:], sch.sigma[1:] / sch.sigma[:-1]


# ----------------------------------------------------------------------------------------------
# DDIM (Song, Meng, Ermon 2021, Eq. 12) with stochasticity eta.


class DDIM(Sampler):
    """DDIM: ``x' = alpha' D + sqrt(sigma'^2 - c^2) E + c z``, ``c = eta sigma' sqrt(1 - e^{-2h})``
    (Eq. 16 of the paper in lambda). eta = 0 is the deterministic DDIM (first-order exponential
    integrator of the probability-flow ODE); eta = 1 is ancestral DDPM sampling."""

    requires: ClassVar[frozenset[str]] = frozenset({SDE, SCALAR_KERNEL})

    eta: float = 0.0

    def solve(self, process, score_fn, key, y, ts):
        ts = jnp.asarray(ts)
        sch = schedule(process, ts)
        h, alpha1, _ = _steps(sch)
        sigma1 = sch.sigma[1:]
        c = self.eta * sigma1 * jnp.sqrt(-jnp.expm1(-2.0 * h))
        a = jnp.sqrt(sigma1**2 - c**2) / sch.sigma[:-1]
        coef = (alpha1 - a * sch.alpha[:-1])[:, None]
        tables = Tables(a, coef, c if self.eta else None)
        return run_multistep(process, score_fn, key, y, ts, tables, "data")


# ----------------------------------------------------------------------------------------------
# DPM-Solver++ multistep (Lu et al. 2022, Algorithm 2) and its SDE variant.


class DPMSolverPP(ScalarKernelSampler):
    """DPM-Solver++ multistep with data prediction: order 1 is DDIM, order 2 is 2M
    (``D = (1 + 1/2r) D_i - 1/2r D_{i-1}``, r = h_{i-1} / h_i), order 3 (3M) integrates the
    quadratic through the last three outputs exactly against ``e^{-(lambda_t - l)}`` (the
    exponential Adams-Bashforth rule, third order in h)."""

    order: int = 2
    lower_order_final: bool = True

    def tables(self, process, ts):
        if self.order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver++ has orders 1, 2 and 3, got {self.order}")
        sch = schedule(process, ts)
        h, alpha1, ratio = _steps(sch)
        n = h.shape[0]
        phi1 = -jnp.expm1(-h)  # 1 - e^{-h}
        nodes = history_nodes(sch.lam, 3)
        r = -nodes[:, 1]  # h_{i-1} / h_i
        per = {1: (alpha1 * phi1)[:, None]}
        per[2] = jnp.stack([alpha1 * phi1 * (1 + 0.5 / r), -alpha1 * phi1 * 0.5 / r], axis=-1)
        per[3] = (alpha1 * h)[:, None] * lagrange_weights(nodes, exp_moments(h, 3))
        orders = step_orders(n, self.order, self.lower_order_final)
        return Tables(ratio, _select(orders, per, 3))


class DPMSolverPPSDE(ScalarKernelSampler):
    """SDE-DPM-Solver++ (Lu et al. 2022, Sec. 5, "2M" with the midpoint difference):
    ``x' = (sigma'/sigma) e^{-h} x + alpha' (1 - e^{-2h}) (D_i + (D_i - D_{i-1}) / 2r)
    + sigma' sqrt(1 - e^{-2h}) z``; order 1 is DDIM with eta = 1."""

    order: int = 2
    lower_order_final: bool = True

    def tables(self, process, ts):
        if self.order not in (1, 2):
            raise ValueError(f"SDE-DPM-Solver++ has orders 1 and 2, got {self.order}")
        sch = schedule(process, ts)
        h, alpha1, ratio = _steps(sch)
        one_m = -jnp.expm1(-2.0 * h)
        r = -history_nodes(sch.lam, 2)[:, 1]
        per = {
            1: (alpha1 * one_m)[:, None],
            2: jnp.stack([alpha1 * one_m * (1 + 0.5 / r), -alpha1 * one_m * 0.5 / r], axis=-1),
        }
        orders = step_orders(h.shape[0], self.order, self.lower_order_final)
        noise = sch.sigma[1:] * jnp.sqrt(one_m)
        return Tables(ratio * jnp.exp(-h), _select(orders, per, 2), noise)


# ----------------------------------------------------------------------------------------------
# UniPC (Zhao et al. 2023): UniP-p predictor and UniC corrector, data prediction, B(h) = e^h - 1.


class UniPC(ScalarKernelSampler):
    """UniPC-p with the bh2 variant: the predictor uses the p - 1 previous outputs, the corrector
    the output at the predicted point, which the next step reuses (no extra NFE), so the order is
    p + 1 wherever the corrector runs (not on the last step: that evaluation would cost one NFE).

    With ``r_k = (lambda_{i-k} - lambda_i) / h`` and ``D_k = (m_{i-k} - m_i) / r_k``, the rule is
    ``x' = (sigma'/sigma) x + alpha' (1 - e^{-h}) m_i - alpha' B(h) sum_k rho_k D_k`` with
    ``sum_k rho_k r_k^{j-1} = b_j = -h I_j(h) / B(h)``, j = 1..p (Alg. 1-2 of the paper; ``I_j`` the
    moments of ``exp_moments``). The paper fixes rho = 1/2 for UniP-2; solving the system instead
    is the same to O(h).
    """

    order: int = 2
    lower_order_final: bool = True

    def tables(self, process, ts):
        if self.order not in (1, 2, 3):
            raise ValueError(f"UniPC has orders 1, 2 and 3, got {self.order}")
        p_max = self.order
        sch = schedule(process, ts)
        h, alpha1, ratio = _steps(sch)
        n = h.shape[0]
        b_h = jnp.expm1(-h)
        b = -h[:, None] * exp_moments(h, p_max + 1)[:, 1:] / b_h[:, None]  # b_1..b_p
        nodes = history_nodes(sch.lam, p_max)  # r_k for k < p (k = 0 is 0)
        base = (alpha1 * -b_h)[:, None]  # coefficient of m_i

        def rule(p, with_new):
            """(coefficients on m_i..m_{i-p+1}, coefficient on the new output)."""
            rks = [nodes[:, k] for k in range(1, p)] + ([jnp.ones_like(h)] if with_new else [])
            c = jnp.zeros((n, p), h.dtype).at[:, 0].set(base[:, 0])
            if not rks:
                return c, jnp.zeros_like(h)
            r = jnp.stack(rks, axis=-1)  # (n, m)
            m = r.shape[-1]
            mat = jnp.swapaxes(r[..., :, None] ** jnp.arange(m, dtype=h.dtype), -1, -2)
            rho = jnp.linalg.solve(mat, b[:, :m, None])[..., 0]  # (n, m)
            scale = -(alpha1 * b_h)[:, None] * rho / r  # on (m_{i-k} - m_i)
            new = scale[:, -1] if with_new else jnp.zeros_like(h)
            olds = scale[:, : p - 1]
            c = c.at[:, 1:p].add(olds)
            c = c.at[:, 0].add(-jnp.sum(olds, axis=-1) - new)
            return c, new

        orders = step_orders(n, p_max, self.lower_order_final)
        pred = {p: rule(p, False)[0] for p in range(1, p_max + 1)}
        corr = {p: rule(p, True) for p in range(1, p_max + 1)}
        cc = _select(orders, {p: v[0] for p, v in corr.items()}, p_max)
        cn = jnp.zeros_like(h)
        for p, (_, new) in corr.items():
            cn = jnp.where(jnp.asarray(orders == p), new, cn)
        return Tables(ratio, _select(orders, pred, p_max), None, cc, cn)


# ----------------------------------------------------------------------------------------------
# DEIS (Zhang & Chen 2023, tAB) and iPNDM, in the variables xbar = x / alpha, sigmabar = e^{-lambda}
# where the probability-flow ODE is d xbar = E d sigmabar.


def _sigmabar(process: Process, t: Array) -> Array:
    return jnp.sqrt(process.kernel_var(t)) / jnp.exp(process.log_alpha(t))


class DEIS(ScalarKernelSampler):
    """DEIS-tAB-p: the noise prediction extrapolated by the polynomial in t through the last p
    outputs, integrated exactly against ``d sigmabar`` (Eq. 14 of Zhang & Chen 2023): weights
    ``int_{t_i}^{t_{i+1}} l_k(t) sigmabar'(t) dt`` by Gauss-Legendre in log t, which smooths the
    ``t^{-1/2}`` of sigmabar' near 0."""

    prediction: ClassVar[str] = "eps"
    order: int = 2
    lower_order_final: bool = True

    def tables(self, process, ts):
        if self.order not in (1, 2, 3):
            raise ValueError(f"DEIS-tAB has orders 1, 2 and 3, got {self.order}")
        sch = schedule(process, ts)
        t0, t1 = ts[:-1], ts[1:]
        n = t0.shape[0]
        v = jnp.asarray(GL_NODES, ts.dtype)
        w = jnp.asarray(GL_WEIGHTS, ts.dtype)
        log_ratio = jnp.log(t1 / t0)
        tau = t0[:, None] * jnp.exp(v[None] * log_ratio[:, None])  # (n, q)
        dsig = jax.vmap(jax.vmap(jax.grad(lambda t: _sigmabar(process, t))))(tau)
        dens = dsig * tau * log_ratio[:, None] * w[None]  # d sigmabar at the nodes
        idx = jnp.arange(n)[:, None] - jnp.arange(self.order)[None]
        hist_t = jnp.where(idx >= 0, ts[jnp.maximum(idx, 0)], t0[:, None] + idx)  # (n, p)
        per = {}
        for p in range(1, self.order + 1):
            nodes = hist_t[:, :p]
            basis = []
            for k in range(p):
                term = jnp.ones_like(tau)
                for j in range(p):
                    if j != k:
                        term = (
                            term
                            * (tau - nodes[:, j : j + 1])
                            / (nodes[:, k : k + 1] - nodes[:, j : j + 1])
                        )
                basis.append(jnp.sum(term * dens, axis=-1))
            per[p] = sch.alpha[1:, None] * jnp.stack(basis, axis=-1)
        orders = step_orders(n, self.order, self.lower_order_final)
        return Tables(sch.alpha[1:] / sch.alpha[:-1], _select(orders, per, self.order))


class IPNDM(ScalarKernelSampler):
    """iPNDM (Zhang & Chen 2023, App.; Zhou et al. 2024's diff-sampler): Adams-Bashforth with
    the fixed uniform-step coefficients on the noise prediction in sigmabar, warming up from
    Euler (order up to 4); ``xbar' = xbar + (sigmabar' - sigmabar) sum_k ab_k E_{i-k}``."""

    prediction: ClassVar[str] = "eps"
    order: int = 4

    def tables(self, process, ts):
        if self.order not in _AB:
            raise ValueError(f"iPNDM has orders 1 to 4, got {self.order}")
        sch = schedule(process, ts)
        dsig = jnp.exp(-sch.lam[1:]) - jnp.exp(-sch.lam[:-1])
        n = dsig.shape[0]
        per = {p: (sch.alpha[1:] * dsig)[:, None] * jnp.asarray(_AB[p], ts.dtype)[None]
               for p in range(1, self.order + 1)}  # fmt: skip
        orders = step_orders(n, self.order, False)
        return Tables(sch.alpha[1:] / sch.alpha[:-1], _select(orders, per, self.order))


# ----------------------------------------------------------------------------------------------
# EDM's second-order Heun sampler with stochastic churn (Karras et al. 2022, Algorithm 2).


class EDMHeun(Sampler):
    """EDM's Heun sampler in ``xbar = x / alpha`` and ``sigmabar`` (Algorithm 2): with churn,
    each step first raises the noise to ``sigmabar (1 + gamma)``, gamma = min(s_churn / n,
    sqrt 2 - 1) for sigmabar in [s_tmin, s_tmax], adding fresh noise scaled by ``s_noise``; then
    an Euler step and Heun's trapezoidal correction. Two NFE per step; s_churn = 0 is the
    deterministic second-order ODE solver."""

    requires: ClassVar[frozenset[str]] = frozenset({SDE, SCALAR_KERNEL})

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def solve(self, process, score_fn, key, y, ts):
        ts = jnp.asarray(ts)
        sch = schedule(process, ts)
        sig = jnp.exp(-sch.lam)
        n = ts.shape[0] - 1
        churn = self.s_churn > 0
        if churn and key is None:
            raise ValueError("EDM's stochastic churn needs a PRNG key")
        keys = jax.random.split(key, n) if churn else None
        t_hi, t_lo = ts[0], ts[-1]

        def eps(xbar, t):
            alpha = jnp.exp(process.log_alpha(t))
            return -jnp.sqrt(process.kernel_var(t)) * score_fn(alpha * xbar, t)

        def step(xbar, i):
            t_cur, s_cur = ts[i], sig[i]
            if churn:
                in_range = (s_cur >= self.s_tmin) & (s_cur <= self.s_tmax)
                gamma = jnp.where(in_range, min(self.s_churn / n, math.sqrt(2.0) - 1.0), 0.0)
                target = -2.0 * jnp.log(s_cur * (1.0 + gamma))
                t_cur = jnp.where(gamma > 0, time_of_log_snr(process, target, t_hi, t_lo), t_cur)
                s_hat = _sigmabar(process, t_cur)
                z = jax.random.normal(keys[i], xbar.shape, xbar.dtype)
                xbar = xbar + jnp.sqrt(jnp.maximum(s_hat**2 - s_cur**2, 0.0)) * self.s_noise * z
                s_cur = s_hat
            d = eps(xbar, t_cur)
            x_next = xbar + (sig[i + 1] - s_cur) * d
            d_next = eps(x_next, ts[i + 1])
            return xbar + (sig[i + 1] - s_cur) * 0.5 * (d + d_next), None

        xbar, _ = jax.lax.scan(step, y / sch.alpha[0], jnp.arange(n))
        return xbar * sch.alpha[-1], jnp.asarray(2 * n, jnp.int32)
