"""Noise schedules of variance-preserving processes: beta(t) and its integral.

A schedule gives ``beta(t)`` and ``log_alpha(t) = -1/2 int_0^t beta(s) ds`` (log of the mean
coefficient alpha_t of the VP kernel), both in float32 and in closed form.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class LinearSchedule(eqx.Module):
    """beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021, VP; DDPM in the limit)."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min


class CosineSchedule(eqx.Module):
    """Continuous cosine schedule of Nichol & Dhariwal (2021).

    ``alpha_t^2 = cos^2(phi(t)) / cos^2(phi(0))`` with ``phi(t) = pi/2 (t + s) / (1 + s)``, so
    ``beta(t) = pi / (1 + s) tan(phi(t))``, which diverges at t = 1: use it with ``t_max < 1``.
    """

    s: float = 0.008

    def _phi(self, t):
        return 0.5 * math.pi * (t + self.s) / (1.0 + self.s)

    def beta(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        return math.pi / (1.0 + self.s) * jnp.tan(self._phi(t))

    def log_alpha(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        return jnp.log(jnp.cos(self._phi(t))) - math.log(math.cos(self._phi(0.0)))


class GeometricSchedule(eqx.Module):
    """LSGM's geometric VP: sigma_t^2 = sigma2_min (sigma2_max / sigma2_min)^t.

    With ``alpha_t^2 = 1 - sigma_t^2`` this gives
    ``beta(t) = sigma_t^2 log(sigma2_max / sigma2_min) / (1 - sigma_t^2)`` (Vahdat et al. 2021,
    App. B; defaults sigma2 from 3e-5 to 0.999). The kernel variance at t = 0 is sigma2_min,
    not 0: the process starts from data already perturbed by that small noise.
    """

    sigma2_min: float = 3e-5
    sigma2_max: float = 0.999

    def sigma2(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        return self.sigma2_min * (self.sigma2_max / self.sigma2_min) ** t

    def beta(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        s2 = self.sigma2(t)
        return s2 * math.log(self.sigma2_max / self.sigma2_min) / (1.0 - s2)

    def log_alpha(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        return 0.5 * jnp.log1p(-self.sigma2(t))
