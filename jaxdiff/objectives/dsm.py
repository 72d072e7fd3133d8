"""Denoising score matching for scalar linear processes (VP, sub-VP, VE; LSGM's geometric VP).

Vincent (2011); Song et al. 2021, Eq. 7. With ``x_t = alpha_t x_0 + sigma_t eps``, the DSM
target is ``-eps / sigma_t``. What the network output F means is the ``parameterisation``
object's business (``jaxdiff.objectives.parameterisation``: ``Eps``, ``Score``, ``EpsSkip``,
``X0``, ``V``); each gives the residual ``r = eps_theta - eps = sigma_t (score_theta - target)``,
so the loss is the same weighted eps-error whatever F predicts, and the weightings read:

* ``sigma2``: lambda = sigma^2, i.e. ``|r|^2`` (score_sde's default);
* ``likelihood``: lambda = g^2, i.e. ``g^2 / sigma^2 |r|^2`` with t ~ U[t_min, T], times
  (T - t_min) so it estimates the time integral of the NLL bound (Song et al. 2021b, Thm. 1);
* ``likelihood_is``: the same integral with t drawn from q(t) proportional to g^2/sigma^2
  (``time_sampling.likelihood_is_t``): lower variance, same expectation.

In F's units ``|r|^2 = scale(t)^2 |F - target|^2`` (the table in ``parameterisation``): e.g. the
``sigma2`` weighting with ``X0`` regresses x0 with weight alpha^2 / sigma^2 (the SNR).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff import rng
from jaxdiff.objectives.parameterisation import ScalarParameterisation
from jaxdiff.objectives.time_sampling import likelihood_is_t, uniform_t
from jaxdiff.processes.base import batch_sum
from jaxdiff.processes.scalar import ScalarLinearProcess

# A network bound to its parameters: net_fn(x, t, key=None) with t of shape (b,).
NetFn = Callable[..., Array]

WEIGHTINGS = ("sigma2", "likelihood", "likelihood_is")


class DenoisingScoreMatching(eqx.Module):
    """DSM objective: ``loss(net_fn, key, x0) -> (per-example loss, aux)`` and ``score_fn``.

    Args:
      process: a scalar linear process (VP, sub-VP, VE).
      parameterisation: what the network predicts, e.g. ``Eps()`` or
        ``make_parameterisation('eps_skip', data_mean=0.0, data_var=1.0)``.
      weighting: ``sigma2`` (default), ``likelihood`` or ``likelihood_is``.
      t_min: training times t in [t_min, T].
      reduce: ``sum`` (default) or ``mean`` over dimensions.
    """

    process: ScalarLinearProcess
    parameterisation: ScalarParameterisation
    weighting: str = eqx.field(static=True, default="sigma2")
    t_min: float = eqx.field(static=True, default=1e-5)
    reduce: str = eqx.field(static=True, default="sum")

    def __check_init__(self):
        if not isinstance(self.parameterisation, ScalarParameterisation):
            raise TypeError(
                "parameterisation must be a ScalarParameterisation (Eps(), EpsSkip(...), ...; "
                f"make_parameterisation(name) builds one by name), got {self.parameterisation!r}"
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

    def residual(self, net_fn: NetFn, x0: Array, t: Array, key: jax.Array, net_key=None) -> Array:
        """``r = eps_theta(x_t, t) - eps = sigma_t (score_theta + eps / sigma_t)`` at
        ``x_t ~ p(x_t | x_0)``."""
        xt, eps = self.process.marginal(x0, t).sample(key)
        out = net_fn(xt, t, key=net_key)
        return self.parameterisation.residual(self.process, out, xt, t, x0, eps)

    def loss(
        self, net_fn: NetFn, key: jax.Array, x0: Float[Array, "b ..."], net_key=None
    ) -> tuple[Float[Array, " b"], dict[str, Any]]:
        """Per-example weighted DSM loss (reduce it with a mean over the batch)."""
        k_t, k_x = rng.split(key)
        t, weight = self.sample_t(k_t, x0.shape[0])
        r = self.residual(net_fn, x0, t, k_x, net_key)
        sq = batch_sum(r**2)
        if self.reduce == "mean":
            sq = sq / (r.size // r.shape[0])
        return weight * sq, {"t": t}

    def score_fn(self, net_fn: NetFn) -> Callable:
        """``score_fn(y, t)`` for samplers and likelihood, t scalar or (b,)."""

        def score(y, t):
            tb = jnp.broadcast_to(jnp.asarray(t, jnp.float32), y.shape[:1])
            return self.parameterisation.score(self.process, net_fn(y, tb), y, tb)

        return score
