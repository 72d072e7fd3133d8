"""Exact scores of Gaussian-mixture data under any linear process.

If x_0 ~ sum_k w_k N(mu_k, s_k^2 I) and the forward SDE is linear, then p_t is again a mixture
whose components are the kernels ``process.marginal(mu_k, t, var0=s_k^2)``; its score is the
gradient of the log-sum-exp of their log-densities. Samplers can then be tested and benchmarked
with no training at all.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff.processes.base import Process, State


def mixture_log_prob(
    process: Process,
    weights: Float[Array, " k"],
    means: Float[Array, "k d"],
    stds: Float[Array, " k"],
    y: State,
    t: Float[Array, "..."],
) -> Float[Array, " b"]:
    """log p_t(y) of mixture data (flat d-dimensional examples) perturbed by ``process``."""
    b = process.data(y).shape[0]

    def component(mu, s):
        x0 = jnp.broadcast_to(mu, (b,) + mu.shape)
        return process.marginal(x0, jnp.broadcast_to(t, (b,)), var0=s**2).log_prob(y)

    logps = jax.vmap(component)(means, stds)  # (k, b)
    return jax.nn.logsumexp(logps + jnp.log(weights)[:, None], axis=0)


def mixture_score_fn(
    process: Process,
    weights: Float[Array, " k"],
    means: Float[Array, "k d"],
    stds: Float[Array, " k"],
) -> Callable[[State, Float[Array, "..."]], State]:
    """The exact score ``score_fn(y, t)`` of the perturbed mixture."""

    def score_fn(y, t):
        def total(y_):
            return jnp.sum(mixture_log_prob(process, weights, means, stds, y_, t))

        return jax.grad(total)(y)

    return score_fn
