"""SSCS: the symmetric splitting CLD sampler (Dockhorn et al. 2022, Sec. 3.3, Algorithm 1).

The reverse-time CLD SDE is split into

* A, linear and solved exactly: ``dx = -beta M^-1 v, dv = beta x - beta Gamma M^-1 v
  + sqrt(2 Gamma beta) dW`` (the Hamiltonian part reversed plus the Ornstein-Uhlenbeck part);
* S, the score part: ``dv = 2 Gamma beta (s(x, v, t) + M^-1 v)``.

Written against the process contract: A is the reverse SDE with the prior's score
``grad log p_T = (-x, -M^-1 v)`` in place of the data score (the capability
``exact_linear_flow``, ``reverse_linear_step``), and S is the rest,
``g^2 (s - grad log p_T)``, which is the line above for CLD.

One step from forward time t_i to t_{i+1} is Strang's ``A/2 -> S -> A/2`` (Eq. 21): an exact
half-step of A with fresh noise (``CLD.reverse_linear_step``), an Euler step of S over the whole
step with the score and beta at the *left* end t_i (one score evaluation), and a second exact
half-step of A with fresh noise. Each A half integrates beta over its own half interval (the
official code reuses the first half's integral for both; identical for constant beta).
The half-steps add ``num_stab`` to the diagonal of their covariance, as the official sampler adds
``sscs_num_stab`` (default 0); the process's ``numerical_eps`` is for its kernels only (with the
toy config's 1e-6 it made the last half-step's x-variance 185 times the exact one).

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

from jaxdiff.processes.base import EXACT_LINEAR_FLOW, SDE, Process, State
from jaxdiff.solvers.base import Sampler, fixed_grid_solve
from jaxdiff.solvers.reverse import ScoreFn


def score_part_term(process: Process, score_fn: ScoreFn) -> dfx.ODETerm:
    """The S part ``dy/ds = g(t)^2 (s(y, t) - grad log p_T(y))`` in ``s = -t``.

    For CLD: ``d(x, v)/ds = (0, 2 Gamma beta(t) (s_v(y, t) + M^-1 v))`` (g_x = 0).
    """

    def vf(s, y, args):
        t = -s
        g = process.diffusion(y, t)
        score = score_fn(y, t)
        prior_score = process.prior(process.data(y).shape).score(y)
        return jax.tree.map(lambda gi, si, pi: gi**2 * (si - pi), g, score, prior_score)

    return dfx.ODETerm(vf)


class SSCSSolver(dfx.AbstractSolver):
    """One SSCS step as a diffrax solver over ``s = -t``; the term is ``score_part_term``.

    The solver state is a PRNG key, split into the two A half-steps' noise at every step.
    """

    process: Process
    key: jax.Array
    num_stab: float = 0.0

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
        y = self.process.reverse_linear_step(k1, y0, t_i, t_mid, self.num_stab)
        # S: Euler over the whole step, score and beta at the left end t_i (one evaluation).
        dy = terms.vf_prod(t0, y, args, terms.contr(t0, t1))
        y = jax.tree.map(jnp.add, y, dy)
        # A/2 again, fresh noise.
        y1 = self.process.reverse_linear_step(k2, y, t_mid, t_next, self.num_stab)
        return y1, None, dict(y0=y0, y1=y1), key, dfx.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


class SSCS(Sampler):
    """The SSCS sampler on the fixed grid ``ts`` (uniform or quadratic): one NFE per step.

    Use it through ``jaxdiff.solvers.samplers.sample(process, score_fn, key, shape, SSCS(),
    steps=n - 1, grid='quadratic')``: ``denoise=True`` adds the noise-free Euler step of size
    ``ts[-1]`` (one more NFE), as the paper's NFE counts do.

    Args:
      num_stab: added to Sigma_xx and Sigma_vv of each A half-step (official ``sscs_num_stab``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({SDE, EXACT_LINEAR_FLOW})

    num_stab: float = 0.0

    def solve(
        self, process: Process, score_fn: ScoreFn, key: jax.Array, y: State, ts: Array
    ) -> tuple[State, Int[Array, ""]]:
        """Integrates the reverse SDE from ``ts[0]`` down to ``ts[-1]`` (decreasing grid)."""
        ts = jnp.asarray(ts, jnp.float32)
        solver = SSCSSolver(process, key, self.num_stab)
        sol = fixed_grid_solve(score_part_term(process, score_fn), solver, y, -ts)
        nfe = jnp.asarray(ts.shape[0] - 1, jnp.int32)
        return jax.tree.map(lambda a: a[0], sol.ys), nfe
