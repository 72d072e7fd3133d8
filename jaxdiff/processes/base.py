"""The process contract shared by objectives, samplers and likelihood.

A *process* is an immutable pytree describing a forward SDE ``dy = f(y, t) dt + g(t) dW`` on a
*state* ``y`` (any pytree of arrays with a leading batch axis: an array for VP/VE, ``(x, v)`` for
CLD). The diffusion is diagonal and given as a pytree ``g`` that broadcasts against ``y``.
Everything downstream is written against these methods only, so a new process (CLD, LSGM's
geometric VP, ...) works with every loss, sampler and likelihood without ``isinstance`` checks.

What a process offers beyond the contract is declared, not probed: each class lists its
``capabilities`` (the names below), and each sampler lists the ones it ``requires``
(``jaxdiff.solvers.samplers.check_sampler`` compares the two before anything is traced).
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from jaxdiff import rng

State = PyTree[Float[Array, "b ..."]]

# ----------------------------------------------------------------------------------------------
# Capabilities: short names, and the phrase error messages use ("needs a process with ...").

SDE = "sde"
"""A continuous-time forward SDE: ``drift``, ``diffusion``, ``prior`` (every ``Process``), so
the reverse SDE and the probability-flow ODE exist (Song et al. 2021, Eqs. 6, 13)."""

NOISE_IN_EVERY_COORDINATE = "noise_in_every_coordinate"
"""``diffusion`` is non-zero in every coordinate of the state, so the score of every coordinate
is defined and learnt (VP, sub-VP, VE; not CLD, whose score models return a zero x-score).
Langevin correction of the whole state (PC) needs it."""

EXACT_LINEAR_FLOW = "exact_linear_flow"
"""``reverse_linear_step(key, y, t_from, t_to, num_stab=None)`` draws exactly from the reverse-time
SDE with the prior's score in place of the data score, ``dy = (-f + g^2 grad log p_T(y)) dtau +
g dW``: linear when the prior is the stationary law (CLD). SSCS's ``A`` half-steps need it."""

SCALAR_KERNEL = "scalar_kernel"
"""The kernel is ``N(alpha_t x_0, sigma_t^2 I)`` with scalar ``alpha_t``, ``sigma_t`` given by
``log_alpha(t)`` and ``kernel_var(t)`` (and ``log_snr(t)``), so data and noise predictions follow
from the score: the exponential integrators (DDIM, DPM-Solver++, UniPC, DEIS, ...) need it."""

CLD_KERNEL = "cld_kernel"
"""CLD's closed forms: ``transition(t_hi, t_lo)`` (the 2x2 mean map and noise covariance between
two times) and ``kernel_cov(t)``, shared by every coordinate pair; gDDIM needs them."""

CAPABILITIES: dict[str, str] = {
    SDE: "a continuous-time forward SDE",
    NOISE_IN_EVERY_COORDINATE: "noise in every coordinate of its state",
    EXACT_LINEAR_FLOW: "an exactly solvable linear part",
    SCALAR_KERNEL: "a scalar Gaussian kernel N(alpha_t x0, sigma_t^2 I)",
    CLD_KERNEL: "CLD's 2x2 closed-form kernel",
}


def batch_sum(x: Float[Array, "b ..."]) -> Float[Array, " b"]:
    """Sums over every axis but the leading batch axis."""
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def tree_batch_sum(tree: State) -> Float[Array, " b"]:
    """``batch_sum`` summed over the leaves of a state pytree."""
    return sum(batch_sum(leaf) for leaf in jax.tree.leaves(tree))


def bcast(t: Float[Array, "..."], x: Float[Array, "b ..."]) -> Float[Array, "..."]:
    """Reshapes a time (scalar or per-example ``(b,)``) so it broadcasts against ``x``."""
    t = jnp.asarray(t, dtype=jnp.float32)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


class Gaussian(eqx.Module):
    """A Gaussian over a state pytree: the perturbation kernel p(y_t | x_0) or a prior."""

    @abc.abstractmethod
    def sample(self, key: jax.Array) -> tuple[State, State]:
        """Returns ``(y, eps)`` with ``y = mean + L eps`` and ``eps`` standard normal."""

    @abc.abstractmethod
    def log_prob(self, y: State) -> Float[Array, " b"]:
        """Log-density of each example, summed over its dimensions."""

    @abc.abstractmethod
    def score(self, y: State) -> State:
        """``grad_y log N(y; mean, cov)``."""

    @abc.abstractmethod
    def score_from_noise(self, eps: State) -> State:
        """Score at ``y = mean + L eps``, i.e. ``-L^{-T} eps`` (the DSM target)."""


class DiagonalGaussian(Gaussian):
    """``N(mean, std^2 I)`` with ``std`` broadcastable against ``mean`` (one array state)."""

    mean: Float[Array, "b ..."]
    std: Float[Array, "..."]

    def sample(self, key: jax.Array) -> tuple[Array, Array]:
        eps = rng.normal(key, self.mean.shape, self.mean.dtype)
        return self.mean + self.std * eps, eps

    def log_prob(self, y: Array) -> Float[Array, " b"]:
        z = (y - self.mean) / self.std
        logp = -0.5 * z**2 - jnp.log(self.std) - 0.5 * math.log(2 * math.pi)
        return batch_sum(jnp.broadcast_to(logp, y.shape))

    def score(self, y: Array) -> Array:
        return -(y - self.mean) / self.std**2

    def score_from_noise(self, eps: Array) -> Array:
        return -eps / self.std


class Process(eqx.Module):
    """Abstract forward process. Subclasses are frozen pytrees (``equinox.Module``).

    Times ``t`` are scalars (inside solvers) or ``(b,)`` arrays (in losses). ``x0`` is always a
    data array with a leading batch axis; ``y`` is the process state (equal to the data for
    VP/VE, a pytree for augmented processes such as CLD).

    ``capabilities`` names what the class offers beyond this contract (see ``CAPABILITIES``);
    subclasses extend it.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({SDE})

    @property
    def t_max(self) -> float:
        """The end time T of the forward process (where the prior is reached)."""
        return 1.0

    @abc.abstractmethod
    def drift(self, y: State, t: Float[Array, "..."]) -> State:
        """f(y, t) of the forward SDE."""

    @abc.abstractmethod
    def diffusion(self, y: State, t: Float[Array, "..."]) -> State:
        """Diagonal g(t) as a pytree broadcastable against ``y``."""

    @abc.abstractmethod
    def marginal(self, x0: Float[Array, "b ..."], t: Float[Array, "..."], var0=0.0) -> Gaussian:
        """Perturbation kernel p(y_t | x_0).

        ``var0`` (scalar or ``(b,)``) widens the data point into ``N(x0, var0 I)``: the marginal
        of that Gaussian under a linear SDE is again Gaussian, which gives exact scores of
        Gaussian-mixture data (``jaxdiff.processes.mixture``).
        """

    @abc.abstractmethod
    def prior(self, shape: tuple[int, ...]) -> Gaussian:
        """The prior p_T for data of ``shape`` (batch axis included)."""

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> State:
        """A draw from the prior for data of ``shape`` (batch axis included)."""
        return self.prior(shape).sample(key)[0]

    def prior_logp(self, y: State) -> Float[Array, " b"]:
        """Log-density of the prior at ``y``."""
        return self.prior(self.data(y).shape).log_prob(y)

    def data(self, y: State) -> Float[Array, "b ..."]:
        """The data part of a state (identity for single-array states)."""
        return y

    def denoise(self, y: State, score: State, t: Float[Array, "..."]) -> Float[Array, "b ..."]:
        """Final noise-free estimate of the data from ``y`` at the last time ``t``.

        Default: one deterministic Euler step of the reverse SDE from ``t`` to 0 (the last
        predictor step without noise, as score_sde and CLD do). Processes with a scalar kernel
        override it with Tweedie's formula.
        """
        f = self.drift(y, t)
        g = self.diffusion(y, t)
        out = jax.tree.map(lambda yi, fi, gi, si: yi - (fi - gi**2 * si) * t, y, f, g, score)
        return self.data(out)
