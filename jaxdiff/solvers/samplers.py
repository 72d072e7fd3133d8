"""Samplers over the reverse process, all on diffrax, swappable by name or passed as objects.

``Sampler`` (``jaxdiff.solvers.base``) integrates from ``ts[0]`` to ``ts[-1]`` and counts score
evaluations; ``sample`` adds the prior draw and the optional final denoising step. The name table
``SAMPLERS`` is the one place where config names meet sampler classes: ``make_sampler(name,
**options)`` builds one, and its options are exactly the sampler's own fields (their defaults are
the field defaults). Each sampler class declares the process capabilities it ``requires``;
``check_sampler`` refuses a process that lacks one, in one line, before anything is traced.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax as dfx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from jaxdiff.processes.base import CAPABILITIES, NOISE_IN_EVERY_COORDINATE, SDE, Process
from jaxdiff.solvers.ancestral import Ancestral
from jaxdiff.solvers.base import (
    IncompatibleSamplerError,
    SampleOutput,
    Sampler,
    fixed_grid_solve,
    solver_evals,
)
from jaxdiff.solvers.dpm_singlestep import DPMSolverSinglestep
from jaxdiff.solvers.exponential import (
    DDIM,
    DEIS,
    IPNDM,
    DPMSolverPP,
    DPMSolverPPSDE,
    EDMHeun,
    UniPC,
)
from jaxdiff.solvers.gddim import GDDIM
from jaxdiff.solvers.grids import make_grid
from jaxdiff.solvers.reverse import (
    ScoreFn,
    probability_flow_term,
    reverse_drift,
    reverse_sde_terms,
)
from jaxdiff.solvers.sscs import SSCS

# ----------------------------------------------------------------------------------------------
# Reverse-time SDE on a fixed grid (Euler-Maruyama, or any diffrax SDE solver).


class ReverseSDE(Sampler):
    """The reverse SDE (Song et al. Eq. 6) on the fixed grid ``ts``.

    ``solver=diffrax.Euler()`` is Euler-Maruyama; ``diffrax.Heun()`` is the Stratonovich Heun
    method, which coincides with Ito here because the noise is additive (g depends on t only).
    """

    requires: ClassVar[frozenset[str]] = frozenset({SDE})

    solver: dfx.AbstractSolver = dfx.Euler()

    def solve(self, process, score_fn, key, y, ts):
        per_step, start = solver_evals(self.solver)
        terms = reverse_sde_terms(process, score_fn, key, y)
        sol = fixed_grid_solve(terms, self.solver, y, ts)
        nfe = start + per_step * (ts.shape[0] - 1)
        return jax.tree.map(lambda a: a[0], sol.ys), jnp.asarray(nfe, jnp.int32)


# ----------------------------------------------------------------------------------------------
# Predictor-corrector (Song et al. Algorithm 2/3): Langevin corrector + Euler-Maruyama predictor.


class _PCSolver(dfx.AbstractItoSolver):
    """One PC step: ``n_corrector`` Langevin steps at t0 (snr-controlled), then an EM step.

    The corrector's noise comes from a PRNG key carried as the solver state. The Langevin step
    size follows score_sde: eps = 2 (snr ||z|| / ||s||)^2 with norms averaged over the batch.
    It treats the whole state as noisy, so it suits processes that inject noise into every
    coordinate (VP, sub-VP, VE), not CLD.
    """

    term_structure = dfx.MultiTerm[tuple[dfx.ODETerm, dfx.AbstractTerm]]
    interpolation_cls = dfx.LocalLinearInterpolation
    score_fn: Any
    key: jax.Array
    snr: float
    n_corrector: int

    def order(self, terms):
        return 1

    def strong_order(self, terms):
        return 0.5

    def init(self, terms, t0, t1, y0, args):
        return self.key

    def _langevin(self, y, t, key):
        def norm(tree):
            sq = sum(jnp.sum(a.reshape(a.shape[0], -1) ** 2, -1) for a in jax.tree.leaves(tree))
            return jnp.mean(jnp.sqrt(sq))

        leaves, treedef = jax.tree.flatten(y)
        keys = jax.random.split(key, len(leaves))
        z = jax.tree.unflatten(
            treedef, [jax.random.normal(k, a.shape) for k, a in zip(keys, leaves, strict=True)]
        )
        s = self.score_fn(y, t)
        step = 2.0 * (self.snr * norm(z) / norm(s)) ** 2
        return jax.tree.map(lambda a, si, zi: a + step * si + jnp.sqrt(2.0 * step) * zi, y, s, z)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        key = solver_state
        y = y0
        for _ in range(self.n_corrector):
            key, sub = jax.random.split(key)
            y = self._langevin(y, t0, sub)
        drift, noise = terms.terms
        dy = drift.vf_prod(t0, y, args, drift.contr(t0, t1))
        dw = noise.vf_prod(t0, y, args, noise.contr(t0, t1))
        y1 = jax.tree.map(lambda a, b, c: a + b + c, y, dy, dw)
        return y1, None, dict(y0=y0, y1=y1), key, dfx.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


class PredictorCorrector(Sampler):
    """Predictor-corrector sampling: EM predictor + ``n_corrector`` Langevin steps (snr).

    Requires noise in every coordinate: the corrector moves the whole state along the score, so
    on CLD (whose score models return a zero x-score) it would random-walk the data x.
    """

    requires: ClassVar[frozenset[str]] = frozenset({SDE, NOISE_IN_EVERY_COORDINATE})

    snr: float = 0.16
    n_corrector: int = 1

    def solve(self, process, score_fn, key, y, ts):
        k_path, k_corr = jax.random.split(key)
        terms = reverse_sde_terms(process, score_fn, k_path, y)
        solver = _PCSolver(score_fn, k_corr, self.snr, self.n_corrector)
        sol = fixed_grid_solve(terms, solver, y, ts)
        nfe = (1 + self.n_corrector) * (ts.shape[0] - 1)
        return jax.tree.map(lambda a: a[0], sol.ys), jnp.asarray(nfe, jnp.int32)


# ----------------------------------------------------------------------------------------------
# Probability-flow ODE (Song et al. Eq. 13) with any diffrax ODE solver.


class ProbabilityFlow(Sampler):
    """The probability-flow ODE on the fixed grid ``ts`` (``AdaptiveProbabilityFlow``: PID)."""

    requires: ClassVar[frozenset[str]] = frozenset({SDE})

    solver: dfx.AbstractSolver = dfx.Tsit5()

    def solve(self, process, score_fn, key, y, ts):
        del key
        per_step, start = solver_evals(self.solver)
        sol = fixed_grid_solve(probability_flow_term(process, score_fn), self.solver, y, ts)
        nfe = start + per_step * (ts.shape[0] - 1)
        return jax.tree.map(lambda a: a[0], sol.ys), jnp.asarray(nfe, jnp.int32)


class AdaptiveProbabilityFlow(Sampler):
    """The probability-flow ODE from ``ts[0]`` to ``ts[-1]`` with PID step-size control.

    rtol = atol = 1e-5 is the setting of Song et al. and Dockhorn et al. (RK45).
    """

    requires: ClassVar[frozenset[str]] = frozenset({SDE})

    solver: dfx.AbstractSolver = dfx.Tsit5()
    rtol: float = 1e-5
    atol: float = 1e-5
    max_steps: int = 4096

    def solve(self, process, score_fn, key, y, ts):
        del key
        per_step, start = solver_evals(self.solver)
        sol = dfx.diffeqsolve(
            probability_flow_term(process, score_fn),
            self.solver,
            t0=ts[0],
            t1=ts[-1],
            dt0=None,
            y0=y,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol),
            saveat=dfx.SaveAt(t1=True),
            max_steps=self.max_steps,
            adjoint=dfx.ForwardMode(),
        )
        # Rejected steps cost their stages too (num_steps counts them); FSAL solvers add one
        # evaluation at the start. Verified against a host-side counter in the tests.
        nfe = start + per_step * sol.stats["num_steps"]
        return jax.tree.map(lambda a: a[0], sol.ys), jnp.asarray(nfe, jnp.int32)


# ----------------------------------------------------------------------------------------------
# Samplers by name: one explicit table (no registry filled by imports). A value is a sampler
# class, or a ``functools.partial`` of one that fixes its diffrax solver; a name's options are the
# class's remaining fields.

SAMPLERS: dict[str, type[Sampler] | Callable[..., Sampler]] = {
    "em": functools.partial(ReverseSDE, solver=dfx.Euler()),
    "sde_heun": functools.partial(ReverseSDE, solver=dfx.Heun()),
    "pc": PredictorCorrector,
    "sscs": SSCS,
    "ode_euler": functools.partial(ProbabilityFlow, solver=dfx.Euler()),
    "ode_heun": functools.partial(ProbabilityFlow, solver=dfx.Heun()),
    "ode_tsit5": functools.partial(AdaptiveProbabilityFlow, solver=dfx.Tsit5()),
    "ode_dopri5": functools.partial(AdaptiveProbabilityFlow, solver=dfx.Dopri5()),
    # Fast samplers for scalar-kernel processes (VP, sub-VP, VE): jaxdiff.solvers.exponential.
    "ddim": DDIM,
    # DDPM's chain on the VP SDE's betas (LSGM's diffusion_discretized): jaxdiff.solvers.ancestral.
    "ancestral": Ancestral,
    "dpmpp_2m": functools.partial(DPMSolverPP, order=2),
    "dpmpp_3m": functools.partial(DPMSolverPP, order=3),
    "dpmpp_2m_sde": functools.partial(DPMSolverPPSDE, order=2),
    # Singlestep (jaxdiff.solvers.dpm_singlestep): DPM-Solver-fast (orders 1-3) and ++(2S).
    "dpm_solver": functools.partial(DPMSolverSinglestep, prediction="eps"),
    "dpmpp_2s": functools.partial(DPMSolverSinglestep, prediction="data", order=2),
    "unipc": UniPC,
    "deis": DEIS,
    "ipndm": IPNDM,
    "edm_heun": EDMHeun,
    # CLD: jaxdiff.solvers.gddim.
    "gddim": functools.partial(GDDIM, stochastic=False),
    "gddim_sde": functools.partial(GDDIM, stochastic=True),
}


def _entry(name: str) -> tuple[type[Sampler], dict[str, Any]]:
    """(class, the constructor arguments the name fixes)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {sorted(SAMPLERS)}")
    entry = SAMPLERS[name]
    if isinstance(entry, functools.partial):
        return entry.func, dict(entry.keywords)
    return entry, {}


def sampler_options(name: str) -> dict[str, Any]:
    """The options of sampler ``name`` with their defaults (the sampler class's field defaults)."""
    cls, fixed = _entry(name)
    return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in fixed}


def make_sampler(name: str, **options: Any) -> Sampler:
    """A sampler by its config name, e.g. ``make_sampler('ode_tsit5', rtol=1e-3, atol=1e-3)``.

    Raises:
      ValueError: for an unknown name, or an option that the sampler does not have.
    """
    known = sampler_options(name)
    for key in options:
        if key not in known:
            raise ValueError(
                f"sampler {name!r} has no option {key!r}; its options: ({', '.join(known)})"
            )
    return SAMPLERS[name](**options)


def sampler_name(sampler: Sampler) -> str:
    """The table name of a sampler object (its class name if no table entry builds it)."""
    for name in SAMPLERS:
        cls, fixed = _entry(name)
        if type(sampler) is cls and all(getattr(sampler, k) == v for k, v in fixed.items()):
            return name
    return type(sampler).__name__


def _requires(name: str) -> frozenset[str]:
    return _entry(name)[0].requires


def sampler_names_for(process: Any) -> list[str]:
    """The names in ``SAMPLERS`` whose requirements ``process``'s capabilities meet (sorted)."""
    caps = getattr(process, "capabilities", frozenset())
    return sorted(name for name in SAMPLERS if _requires(name) <= caps)


def check_sampler(sampler: Sampler | str, process: Any) -> None:
    """Raises ``IncompatibleSamplerError`` (one line) if ``process`` lacks a capability that
    ``sampler`` requires."""
    if isinstance(sampler, str):
        name, requires = sampler, _requires(sampler)
    else:
        name, requires = sampler_name(sampler), type(sampler).requires
    missing = sorted(requires - getattr(process, "capabilities", frozenset()))
    if not missing:
        return
    proc = type(process).__name__
    needs = " and ".join(f"{CAPABILITIES.get(c, c)} (capability {c!r})" for c in missing)
    them = "it" if len(missing) == 1 else "them"
    fits = ", ".join(sampler_names_for(process)) or "none"
    raise IncompatibleSamplerError(
        f"sampler {name!r} needs a process with {needs}; {proc} lacks {them}. "
        f"Samplers for {proc}: {fits}"
    )


# ----------------------------------------------------------------------------------------------
# The sampling entry point: prior draw, reverse solve, optional denoising.


def sample(
    process: Process,
    score_fn: ScoreFn,
    key: jax.Array,
    shape: tuple[int, ...],
    sampler: Sampler | str = "em",
    ts: Array | None = None,
    *,
    steps: int = 1000,
    grid: str | Array = "uniform",
    t_min: float = 1e-3,
    denoise: bool = True,
) -> SampleOutput:
    """Draws ``shape[0]`` samples: prior draw, reverse solve over ``ts``, optional denoising.

    Args:
      process: the forward process.
      score_fn: ``score_fn(y, t)`` with ``t`` a scalar time.
      key: PRNG key.
      shape: data shape with the batch axis, e.g. ``(n, 2)``.
      sampler: a ``Sampler`` or its name in ``SAMPLERS`` (built with its default options).
      ts: the time grid (decreasing, from the prior's time); default ``make_grid(grid, steps,
        process.t_max, t_min, process)``: ``grid`` is a name (``uniform``, ``quadratic``,
        ``logsnr``, ``karras``) or an array of ``steps + 1`` times.
      denoise: finish with ``process.denoise`` at ``ts[-1]`` (Tweedie for VP/VE, one noise-free
        Euler step for CLD), counted as one score evaluation.

    Raises:
      IncompatibleSamplerError: the process lacks a capability the sampler requires.
    """
    check_sampler(sampler, process)
    if isinstance(sampler, str):
        sampler = make_sampler(sampler)
    if ts is None:
        ts = make_grid(grid, steps, process.t_max, t_min, process)
    k_prior, k_solve = jax.random.split(key)
    y = process.prior_sample(k_prior, shape)
    y, nfe = sampler.solve(process, score_fn, k_solve, y, ts)
    if denoise:
        t_end = ts[-1]
        data = process.denoise(y, score_fn(y, t_end), t_end)
        nfe = nfe + 1
    else:
        data = process.data(y)
    return SampleOutput(data, y, nfe)


def reverse_drift_fn(process: Process, score_fn: ScoreFn, ode: bool = False):
    """``(y, t) -> reverse drift``; handy for hand-written integrators and tests."""
    return lambda y, t: reverse_drift(process, score_fn, y, t, ode)
