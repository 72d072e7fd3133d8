"""Denoising score matching for scalar linear processes (VP, sub-VP, VE; LSGM's geometric VP).

Vincent (2011); Song et al. 2021, Eq. 7. With ``x_t = alpha_t x_0 + sigma_t eps``, the DSM
target is ``-eps / sigma_t``. Three parameterisations of the network output:

* ``eps``: the network predicts eps; ``score = -eps_theta / sigma_t`` (DDPM, score_sde's VP);
* ``score``: the network output is the score itself (score_sde's NCSN / VE);
* ``eps_skip``: ``eps_theta = eps_lin(x_t, t) + c_out(t) F_theta(x_t, t)``, where ``eps_lin`` is
  the exact eps-prediction for Gaussian data N(data_mean, data_var I),
  ``eps_lin = sigma_t (x_t - alpha_t mu) / (alpha_t^2 v + sigma_t^2)``, and
  ``c_out = alpha_t sqrt(v) / sqrt(alpha_t^2 v + sigma_t^2)`` keeps the network's target at unit
  scale (EDM's c_skip / c_out preconditioning, Karras et al. 2022, written for eps; LSGM's mixed
  score is the same idea with a N(0, I) prior). An MLP narrower than the data cannot pass x_t
  through to its output, which a plain eps-network must do at large t; the skip does it for it.

The per-example residual ``r = sigma_t (score_theta - target)`` equals ``eps_theta - eps``
either way, so the weightings read:

* ``sigma2``: lambda = sigma^2, i.e. ``|r|^2`` (score_sde's default);
* ``likelihood``: lambda = g^2, i.e. ``g^2 / sigma^2 |r|^2`` with t ~ U[t_min, T], times
  (T - t_min) so it estimates the time integral of the NLL bound (Song et al. 2021b, Thm. 1);
* ``likelihood_is``: the same integral with t drawn from q(t) proportional to g^2/sigma^2
  (``time_sampling.likelihood_is_t``): lower variance, same expectation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff.objectives.time_sampling import likelihood_is_t, uniform_t
from jaxdiff.processes.base import batch_sum, bcast
from jaxdiff.processes.scalar import ScalarLinearProcess

# A network bound to its parameters: net_fn(x, t, key=None) with t of shape (b,).
NetFn = Callable[..., Array]

PARAMETERISATIONS = ("eps", "score", "eps_skip")
WEIGHTINGS = ("sigma2", "likelihood", "likelihood_is")


class DenoisingScoreMatching(eqx.Module):
    """DSM objective: ``loss(net_fn, key, x0) -> (per-example loss, aux)`` and ``score_fn``."""

    process: ScalarLinearProcess
    parameterisation: str = eqx.field(static=True, default="eps")
    weighting: str = eqx.field(static=True, default="sigma2")
    t_min: float = eqx.field(static=True, default=1e-5)
    reduce: str = eqx.field(static=True, default="sum")
    data_mean: float = eqx.field(static=True, default=0.0)
    data_var: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not self.data_var > 0:
            raise ValueError(f"data_var must be > 0, got {self.data_var}")
        if self.parameterisation not in PARAMETERISATIONS:
            raise ValueError(
                f"unknown parameterisation {self.parameterisation!r}; use {PARAMETERISATIONS}"
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; use {WEIGHTINGS}")
        if self.reduce not in ("sum", "mean"):
            raise ValueError(f"reduce must be 'sum' or 'mean', got {self.reduce!r}")

    def net_channels(self, channels: int) -> tuple[int, int]:
        """(input, output) channels of the network for data with ``channels`` channels."""
        return channels, channels

    def sample_t(self, key: jax.Array, n: int) -> tuple[Array, Array]:
        """Training times and the weight factor lambda(t) / (density of t)."""
        p = self.process
        if self.weighting == "likelihood_is":
            return likelihood_is_t(key, p, n, self.t_min)
        t = uniform_t(key, n, self.t_min, p.t_max)
        if self.weighting == "likelihood":
            return t, (p.t_max - self.t_min) * p.g2(t) / p.kernel_var(t)
        return t, jnp.ones_like(t)

    def eps_prediction(self, net_fn: NetFn, xt: Array, t: Float[Array, " b"], net_key=None):
        """``eps_theta(x_t, t)`` of the ``eps`` and ``eps_skip`` parameterisations (for
        ``eps_skip``: the Gaussian-optimal ``eps_lin`` plus ``c_out F_theta``)."""
        out = net_fn(xt, t, key=net_key).astype(jnp.float32)
        if self.parameterisation == "eps":
            return out
        p, mu, v = self.process, self.data_mean, self.data_var
        alpha = bcast(jnp.exp(p.log_alpha(t)), xt)
        var = bcast(p.kernel_var(t), xt)
        total = alpha**2 * v + var
        eps_lin = jnp.sqrt(var) * (xt - alpha * mu) / total
        return eps_lin + alpha * jnp.sqrt(v / total) * out

    def residual(self, net_fn: NetFn, x0: Array, t: Array, key: jax.Array, net_key=None) -> Array:
        """``r = sigma_t (score_theta(x_t, t) + eps / sigma_t)`` at ``x_t ~ p(x_t | x_0)``."""
        kernel = self.process.marginal(x0, t)
        xt, eps = kernel.sample(key)
        if self.parameterisation == "score":
            return kernel.std * net_fn(xt, t, key=net_key).astype(jnp.float32) + eps
        return self.eps_prediction(net_fn, xt, t, net_key) - eps

    def loss(
        self, net_fn: NetFn, key: jax.Array, x0: Float[Array, "b ..."], net_key=None
    ) -> tuple[Float[Array, " b"], dict[str, Any]]:
        """Per-example weighted DSM loss (reduce it with a mean over the batch)."""
        k_t, k_x = jax.random.split(key)
        t, weight = self.sample_t(k_t, x0.shape[0])
        r = self.residual(net_fn, x0, t, k_x, net_key)
        sq = batch_sum(r**2)
        if self.reduce == "mean":
            sq = sq / (r.size // r.shape[0])
        return weight * sq, {"t": t}

    def score_fn(self, net_fn: NetFn) -> Callable:
        """``score_fn(y, t)`` for samplers and likelihood, t scalar or (b,)."""
        p = self.process

        def score(y, t):
            tb = jnp.broadcast_to(jnp.asarray(t, jnp.float32), y.shape[:1])
            if self.parameterisation == "score":
                return net_fn(y, tb).astype(jnp.float32)
            return -self.eps_prediction(net_fn, y, tb) / jnp.sqrt(bcast(p.kernel_var(tb), y))

        return score
