"""Reverse-time SDE and probability-flow ODE of any process and score (Song et al. Eqs. 6, 13).

Both are written as diffrax terms over the process state (any pytree). Diffusion is diagonal, so
the noise term multiplies leaf by leaf (``DiagonalNoiseTerm``); the Brownian path has the shape
of the whole batch state, which keeps a fixed-grid solve as cheap as a hand-written scan.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import diffrax as dfx
import jax
from jaxtyping import Array, Float

from jaxdiff.processes.base import Process, State

ScoreFn = Callable[[State, Float[Array, "..."]], State]


def reverse_drift(process: Process, score_fn: ScoreFn, y: State, t, ode: bool = False) -> State:
    """``f(y, t) - c g(t)^2 score(y, t)`` with c = 1 (reverse SDE) or 1/2 (probability flow)."""
    c = 0.5 if ode else 1.0
    f = process.drift(y, t)
    g = process.diffusion(y, t)
    s = score_fn(y, t)
    return jax.tree.map(lambda fi, gi, si: fi - c * gi**2 * si, f, g, s)


class DiagonalNoiseTerm(dfx.AbstractTerm):
    """``g(t, y) dW`` with a diagonal g given as a pytree matching the state."""

    diffusion: Callable
    path: dfx.AbstractPath

    def vf(self, t, y, args):
        return self.diffusion(t, y, args)

    def contr(self, t0, t1, **kwargs):
        return self.path.evaluate(t0, t1, **kwargs)

    def prod(self, vf, control):
        return jax.tree.map(operator.mul, vf, control)


def brownian_path(key: jax.Array, y: State) -> dfx.UnsafeBrownianPath:
    """Brownian motion with the shape of the whole batch state (fast fixed-grid path)."""
    shape = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), y)
    return dfx.UnsafeBrownianPath(shape=shape, key=key)


def reverse_sde_terms(process: Process, score_fn: ScoreFn, key: jax.Array, y: State):
    """``MultiTerm(ODETerm(reverse drift), DiagonalNoiseTerm(g, W))`` for diffrax."""
    drift = dfx.ODETerm(lambda t, y, args: reverse_drift(process, score_fn, y, t))
    noise = DiagonalNoiseTerm(lambda t, y, args: process.diffusion(y, t), brownian_path(key, y))
    return dfx.MultiTerm(drift, noise)


def probability_flow_term(process: Process, score_fn: ScoreFn) -> dfx.ODETerm:
    """The probability-flow ODE ``dy/dt = f - g^2 score / 2`` as a diffrax term."""
    return dfx.ODETerm(lambda t, y, args: reverse_drift(process, score_fn, y, t, ode=True))
