"""Singlestep DPM-Solver (orders 1-3, noise prediction) and DPM-Solver++ (data prediction).

Lu et al. 2022a (DPM-Solver, Alg. 1-2) and 2022b (DPM-Solver++, Alg. 1 "2S"). In the half log-SNR
``lambda = log(alpha / sigma)`` one step from ``s`` to ``t`` (``h = lambda_t - lambda_s``) of order
p evaluates the model at ``s`` and at p - 1 intermediate times ``s_k`` with
``lambda_{s_k} = lambda_s + r_k h`` (r = 1/2 for order 2; 1/3, 2/3 for order 3), so it costs p NFE
and nothing is carried from one step to the next. With ``m`` the noise prediction ``E = -sigma s``
(DPM-Solver) or the data prediction ``D = (y + sigma^2 s) / alpha`` (DPM-Solver++), every stage
has the form ``u = a(s -> u) x + base(s -> u) m_s + c (m_k - m_s)``:

* noise: ``a = alpha_u / alpha_s``, ``base = -sigma_u (e^h - 1)``, first-order term
  ``B = -sigma_u ((e^h - 1) / h - 1)`` (DPM-Solver Eq. 3.7 and Alg. 2);
* data: ``a = sigma_u / sigma_s``, ``base = alpha_u (1 - e^{-h})``, ``B = alpha_u ((e^{-h} - 1) / h
  + 1)`` (DPM-Solver++ Eq. 9 and its 3S counterpart).

Order 2 ends with ``x_t = a x + base m_s + base / (2 r_1) (m_1 - m_s)`` (DPM-Solver-2, Alg. 1;
DPM-Solver++(2S), Alg. 1 of 2022b); order 3 with ``u_2 = ... + (r_2 / r_1) B(s -> s_2) (m_1 -
m_s)`` and ``x_t = a x + base m_s + B(s -> t) / r_2 (m_2 - m_s)`` (DPM-Solver-3, Alg. 2).

**Step allocation** ("DPM-Solver-fast", Lu et al. 2022a Sec. 3.4): the grid ``ts`` of ``N + 1``
points is the NFE budget ``N``. For order 3, ``K = N // 3 + 1`` steps: orders ``3, ..., 3, 2, 1``
(N = 0 mod 3), ``3, ..., 3, 1`` (1 mod 3) or ``3, ..., 3, 2`` (2 mod 3); for order 2, ``2, ..., 2``
and a final 1 for odd N; order 1 is N first-order steps. The outer time points are the grid's
points at the cumulative orders (the official code's rule for every grid but its own uniform
log-SNR one, where it respaces the K outer points uniformly in log-SNR instead). With
``fast=False`` every step has the full order, and N must be a multiple of it. The intermediate
times are found by bisection of the log-SNR before the loop, and each run of equal orders is one
``lax.scan``.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxdiff.processes.base import SCALAR_KERNEL, SDE, Process
from jaxdiff.solvers.base import Sampler
from jaxdiff.solvers.grids import time_of_log_snr
from jaxdiff.solvers.reverse import ScoreFn

# Intermediate points of a step, as fractions of h in lambda (Lu et al. 2022a, Alg. 1-2).
RATIOS = {1: (), 2: (0.5,), 3: (1.0 / 3.0, 2.0 / 3.0)}
PREDICTIONS = ("eps", "data")


def fast_orders(nfe: int, order: int) -> list[int]:
    """DPM-Solver-fast's orders of the steps for an NFE budget (Lu et al. 2022a, Sec. 3.4)."""
    if order not in RATIOS:
        raise ValueError(f"singlestep DPM-Solver has orders 1, 2 and 3, got {order}")
    if nfe < 1:
        raise ValueError(f"an NFE budget of at least 1 is needed, got {nfe}")
    if order == 3:
        k = nfe // 3 + 1
        tail = {0: [2, 1], 1: [1], 2: [2]}[nfe % 3]
        return [3] * (k - len(tail)) + tail
    if order == 2:
        return [2] * (nfe // 2) + [1] * (nfe % 2)
    return [1] * nfe


def step_orders(nfe: int, order: int, fast: bool) -> list[int]:
    """The orders of the outer steps: DPM-Solver-fast's, or ``order`` for every step."""
    if fast:
        return fast_orders(nfe, order)
    if order not in RATIOS:
        raise ValueError(f"singlestep DPM-Solver has orders 1, 2 and 3, got {order}")
    if nfe % order:
        raise ValueError(
            f"with fast=False every step has order {order}, so the grid's {nfe} intervals must "
            f"be a multiple of {order}"
        )
    return [order] * (nfe // order)


class Stage(NamedTuple):
    """Coefficients of one point (an intermediate time or the step's end) over a run of steps:
    ``u = a x + base m_s + sum_k c_k (m_k - m_s)``."""

    t: Float[Array, " K"]
    a: Float[Array, " K"]
    base: Float[Array, " K"]
    c: Float[Array, "K 2"]


def _kernel(process: Process, t: Array) -> tuple[Array, Array, Array]:
    """(alpha_t, sigma_t, lambda_t)."""
    log_a = process.log_alpha(t)
    var = process.kernel_var(t)
    return jnp.exp(log_a), jnp.sqrt(var), log_a - 0.5 * jnp.log(var)


def _coefficients(prediction: str, s, u, h):
    """(a, base, B) from ``s`` to ``u`` (each an (alpha, sigma, lambda) triple) over ``h``."""
    a_s, sig_s, _ = s
    a_u, sig_u, _ = u
    if prediction == "eps":
        return a_u / a_s, -sig_u * jnp.expm1(h), -sig_u * (jnp.expm1(h) / h - 1.0)
    return sig_u / sig_s, -a_u * jnp.expm1(-h), a_u * (jnp.expm1(-h) / h + 1.0)


def stages(
    process: Process, prediction: str, order: int, t0: Float[Array, " K"], t1: Float[Array, " K"]
) -> tuple[Stage, ...]:
    """The ``order`` stages (intermediate points, then the end) of steps ``t0 -> t1`` (shape K)."""
    s = _kernel(process, t0)
    end = _kernel(process, t1)
    h = end[2] - s[2]
    ratios = RATIOS[order]
    zero = jnp.zeros_like(h)
    out = []
    for k, r in enumerate(ratios):
        # the intermediate time where lambda = lambda_s + r h (bisection on the full log-SNR)
        tk = time_of_log_snr(process, 2.0 * (s[2] + r * h), t0[0], t1[-1])
        tk = jnp.clip(tk, t1, t0)
        a, base, big_b = _coefficients(prediction, s, _kernel(process, tk), r * h)
        c1 = (ratios[1] / ratios[0]) * big_b if k == 1 else zero  # u_2 of DPM-Solver-3
        out.append(Stage(tk, a, base, jnp.stack([c1, zero], axis=-1)))
    a, base, big_b = _coefficients(prediction, s, end, h)
    if order == 1:
        c = jnp.stack([zero, zero], axis=-1)
    elif order == 2:  # Alg. 1: base / (2 r_1) on the midpoint's difference
        c = jnp.stack([base / (2.0 * ratios[0]), zero], axis=-1)
    else:  # Alg. 2: B / r_2 on the second intermediate point's difference
        c = jnp.stack([zero, big_b / ratios[1]], axis=-1)
    out.append(Stage(t1, a, base, c))
    return tuple(out)


class DPMSolverSinglestep(Sampler):
    """Singlestep DPM-Solver-p (``prediction="eps"``, Lu et al. 2022a) or DPM-Solver++(pS)
    (``prediction="data"``, Lu et al. 2022b; order 2 is their 2S), with DPM-Solver-fast's step
    allocation for the NFE budget ``len(ts) - 1`` (``fast=True``) or order ``order`` in every step.

    NFE: exactly ``len(ts) - 1`` (the sum of the step orders).
    """

    requires: ClassVar[frozenset[str]] = frozenset({SDE, SCALAR_KERNEL})

    order: int = 3
    prediction: str = "eps"
    fast: bool = True

    def solve(
        self,
        process: Process,
        score_fn: ScoreFn,
        key: jax.Array | None,
        y: Float[Array, "b ..."],
        ts: Float[Array, " N+1"],
    ) -> tuple[Float[Array, "b ..."], Int[Array, ""]]:
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"DPM-Solver's prediction is one of {PREDICTIONS}, got {self.prediction!r}"
            )
        ts = jnp.asarray(ts)
        n = ts.shape[0] - 1
        orders = step_orders(n, self.order, self.fast)
        outer = ts[np.concatenate([[0], np.cumsum(orders)])]

        def model(x, t):
            a, sig, _ = _kernel(process, t)
            s = score_fn(x, t)
            if self.prediction == "data":
                return (x + sig**2 * s) / a
            return -sig * s

        start = 0
        for p, run in _runs(orders):  # each run of equal orders: one scan
            t0, t1 = outer[start : start + run], outer[start + 1 : start + run + 1]
            start += run
            table = stages(process, self.prediction, p, t0, t1)

            def step(x, xs, p=p):
                t_s, st = xs
                m = [model(x, t_s)]
                for k in range(p):
                    g = st[k]
                    u = g.a * x + g.base * m[0]
                    for j in range(1, len(m)):
                        u = u + g.c[j - 1] * (m[j] - m[0])
                    if k < p - 1:
                        m.append(model(u, g.t))
                return u, None

            y, _ = jax.lax.scan(step, y, (t0, table))
        return y, jnp.asarray(n, jnp.int32)


def _runs(orders: list[int]) -> list[tuple[int, int]]:
    """(order, length) of the runs of equal consecutive orders."""
    runs: list[tuple[int, int]] = []
    for p in orders:
        if runs and runs[-1][0] == p:
            runs[-1] = (p, runs[-1][1] + 1)
        else:
            runs.append((p, 1))
    return runs
