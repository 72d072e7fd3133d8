"""What every sampler shares: the ``Sampler`` contract, fixed-grid diffrax solves, NFE counts.

A sampler is a frozen pytree with ``solve(process, score_fn, key, y_init, ts) -> (y, nfe)``: it
integrates from ``ts[0]`` (the prior's time) to ``ts[-1]`` over the given grid (adaptive ODE
solvers use only the end points) and returns the exact number of score evaluations. Its fields
are its options; ``requires`` names the process capabilities it needs (``jaxdiff.processes.base``).
"""

from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
from jaxtyping import Array, Float, Int

from jaxdiff.processes.base import SDE, Process, State
from jaxdiff.solvers.reverse import ScoreFn

# Score evaluations of a diffrax solver: (per step, once at the start). FSAL Runge-Kutta methods
# reuse their last stage, so they cost one evaluation more than their steps times new stages.
_EVALS: dict[type, tuple[int, int]] = {
    dfx.Euler: (1, 0),
    dfx.Heun: (2, 0),
    dfx.Midpoint: (2, 0),
    dfx.Ralston: (2, 0),
    dfx.Bosh3: (3, 1),
    dfx.Tsit5: (6, 1),
    dfx.Dopri5: (6, 1),
    dfx.Dopri8: (12, 1),
}


def solver_evals(solver: dfx.AbstractSolver) -> tuple[int, int]:
    """(evaluations per step, evaluations at the start) of a diffrax solver."""
    try:
        return _EVALS[type(solver)]
    except KeyError:
        raise ValueError(
            f"unknown NFE cost of {type(solver).__name__}; known: "
            f"{sorted(s.__name__ for s in _EVALS)}"
        ) from None


class IncompatibleSamplerError(ValueError):
    """A sampler needs a capability that the process does not declare."""


class Sampler(eqx.Module):
    """Integrates the reverse process from ``ts[0]`` to ``ts[-1]``.

    Subclasses declare ``requires``, the process capabilities they rely on; their fields (with
    defaults) are the options ``jaxdiff.solvers.samplers.make_sampler`` accepts.
    """

    requires: ClassVar[frozenset[str]] = frozenset({SDE})

    @abc.abstractmethod
    def solve(
        self, process: Process, score_fn: ScoreFn, key: jax.Array, y: State, ts: Array
    ) -> tuple[State, Int[Array, ""]]:
        """Returns the final state and the number of score evaluations."""


def fixed_grid_solve(terms, solver, y, ts, args=None) -> dfx.Solution:
    """``diffeqsolve`` over exactly the grid ``ts`` (``StepTo``), saving only the end point."""
    return dfx.diffeqsolve(
        terms,
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=y,
        args=args,
        stepsize_controller=dfx.StepTo(ts=ts),
        saveat=dfx.SaveAt(t1=True),
        adjoint=dfx.ForwardMode(),
        max_steps=ts.shape[0] - 1,
        # exactly len(ts) - 1 steps cannot run out; no error check, whose host callback makes
        # XLA replicate the whole sharded batch onto one device (issue #14, 8 CPU devices)
        throw=False,
    )


class SampleOutput(NamedTuple):
    data: Float[Array, "b ..."]
    state: State
    nfe: Int[Array, ""]
