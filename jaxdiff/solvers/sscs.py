"""SSCS: the symmetric splitting CLD sampler (Dockhorn et al. 2022, Sec. 3.3, Algorithm 1).

The reverse-time CLD SDE is split into

* A, linear and solved exactly: ``dx = -beta M^-1 v, dv = beta x - beta Gamma M^-1 v
  + sqrt(2 Gamma beta) dW`` (the Hamiltonian part reversed plus the Ornstein-Uhlenbeck part);
* S, the score part: ``dv = 2 Gamma beta (s(x, v, t) + M^-1 v)``.

One step from forward time t_i to t_{i+1} is Strang's ``A/2 -> S -> A/2`` (Eq. 21): an exact
half-step of A with fresh noise (``CLD.reverse_linear_step``), an Euler step of S over the whole
step with the score and beta at the *left* end t_i (one score evaluation), and a second exact
half-step of A with fresh noise. Each A half integrates beta over its own half interval (the
official code reuses the first half's integral for both; identical for constant beta).

Time bookkeeping: diffrax integrates in ``s = -t`` (increasing, and exact: negation does not
round), so the solver reads forward time as ``t = -s``. The noise comes from a PRNG key carried
as the solver state and split at every step (as the PC corrector does); the solve is therefore
reproducible from the key, but not a strong approximation of one Brownian path (SSCS draws the
exact Gaussian increments of the linear flow, not functionals of a given path).
"""

from __future__ import annotations

from typing import ClassVar

import diffrax as dfx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int

from jaxdiff.processes.base import State
from jaxdiff.processes.cld import CLD
from jaxdiff.solvers.reverse import ScoreFn
from jaxdiff.solvers.samplers import Sampler, _fixed_grid_solve


def score_part_term(process: CLD, score_fn: ScoreFn) -> dfx.ODETerm:
    """The S part ``d(x, v)/ds = (0, 2 Gamma beta(t) (s(y, t) + M^-1 v))`` in ``s = -t``."""

    def vf(s, y, args):
        t = -s
        x, v = y
        _, sv = score_fn(y, t)
        c = 2.0 * process.damping * process.beta(t)
        return jnp.zeros_like(x), c * (sv + process.m_inv * v)

    return dfx.ODETerm(vf)


class SSCSSolver(dfx.AbstractSolver):
    """One SSCS step as a diffrax solver over ``s = -t``; the term is ``score_part_term``.

    The solver state is a PRNG key, split into the two A half-steps' noise at every step.
    """

    process: CLD
    key: jax.Array

    term_structure: ClassVar = dfx.AbstractTerm
    interpolation_cls: ClassVar = dfx.LocalLinearInterpolation

    def order(self, terms):
        return 1

    def strong_order(self, terms):
        return 0.5

    def init(self, terms, t0, t1, y0, args):
        return self.key

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        key, k1, k2 = jax.random.split(solver_state, 3)
        t_i, t_next = -t0, -t1
        t_mid = 0.5 * (t_i + t_next)
        # A/2: exact reverse linear flow over [t_mid, t_i] with fresh noise.
        y = self.process.reverse_linear_step(k1, y0, t_i, t_mid)
        # S: Euler over the whole step, score and beta at the left end t_i (one evaluation).
        dy = terms.vf_prod(t0, y, args, terms.contr(t0, t1))
        y = jax.tree.map(jnp.add, y, dy)
        # A/2 again, fresh noise.
        y1 = self.process.reverse_linear_step(k2, y, t_mid, t_next)
        return y1, None, dict(y0=y0, y1=y1), key, dfx.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


class SSCS(Sampler):
    """The SSCS sampler on the fixed grid ``ts`` (uniform or quadratic): one NFE per step.

    Use it through ``jaxdiff.solvers.samplers.sample(process, score_fn, key, shape, SSCS(),
    steps=n - 1, grid='quadratic')``: ``denoise=True`` adds the noise-free Euler step of size
    ``ts[-1]`` (one more NFE), as the paper's NFE counts do.
    """

    def solve(
        self, process: CLD, score_fn: ScoreFn, key: jax.Array, y: State, ts: Array
    ) -> tuple[State, Int[Array, ""]]:
        """Integrates the reverse CLD SDE from ``ts[0]`` down to ``ts[-1]`` (decreasing grid)."""
        ts = jnp.asarray(ts, jnp.float32)
        solver = SSCSSolver(process, key)
        sol = _fixed_grid_solve(score_part_term(process, score_fn), solver, y, -ts)
        nfe = jnp.asarray(ts.shape[0] - 1, jnp.int32)
        return jax.tree.map(lambda a: a[0], sol.ys), nfe
