"""VP, sub-VP and VE SDEs (Song et al. 2021): linear SDEs with a scalar perturbation kernel.

For each, p(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I) in closed form (Eqs. 29, 33 and App. B of
Song et al. 2021). A scalar linear SDE ``dx = f(t) x dt + g(t) dW`` has
``d/dt (sigma_t^2 / alpha_t^2) = g(t)^2 / alpha_t^2``, so ``g^2 / sigma^2 = -d/dt log SNR(t)``
with ``SNR = alpha^2 / sigma^2``: the identity behind likelihood weighting's importance sampling.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff.processes.base import (
    NOISE_IN_EVERY_COORDINATE,
    SCALAR_KERNEL,
    SDE,
    DiagonalGaussian,
    Gaussian,
    Process,
    bcast,
)
from jaxdiff.processes.schedules import CosineSchedule, GeometricSchedule, LinearSchedule

Schedule = LinearSchedule | CosineSchedule | GeometricSchedule


class ScalarLinearProcess(Process):
    """``dx = f(t) x dt + g(t) dW``; kernel ``N(alpha_t x0, (alpha_t^2 var0 + sigma_t^2) I)``.

    VP, sub-VP and VE inherit ``capabilities``: g(t) > 0 for t > 0 in every coordinate.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {SDE, NOISE_IN_EVERY_COORDINATE, SCALAR_KERNEL}
    )

    @abc.abstractmethod
    def f_coeff(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """f(t) in the drift f(t) x."""

    @abc.abstractmethod
    def g2(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """g(t)^2."""

    @abc.abstractmethod
    def log_alpha(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """log of the kernel's mean coefficient alpha_t."""

    @abc.abstractmethod
    def kernel_var(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """sigma_t^2, the kernel variance given x_0 exactly."""

    @property
    def prior_std(self) -> float:
        return 1.0

    def log_snr(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """log(alpha_t^2 / sigma_t^2), decreasing in t."""
        return 2.0 * self.log_alpha(t) - jnp.log(self.kernel_var(t))

    def drift(self, y, t):
        return bcast(self.f_coeff(t), y) * y

    def diffusion(self, y, t):
        return jnp.sqrt(bcast(self.g2(t), y))

    def marginal(self, x0, t, var0=0.0) -> Gaussian:
        alpha = jnp.exp(bcast(self.log_alpha(t), x0))
        var = alpha**2 * bcast(jnp.asarray(var0, jnp.float32), x0) + bcast(self.kernel_var(t), x0)
        return DiagonalGaussian(alpha * x0, jnp.sqrt(var))

    def prior(self, shape) -> Gaussian:
        return DiagonalGaussian(jnp.zeros(shape, jnp.float32), jnp.float32(self.prior_std))

    def denoise(self, y, score, t):
        """Tweedie's formula: E[x_0 | x_t] = (x_t + sigma_t^2 score) / alpha_t."""
        alpha = jnp.exp(bcast(self.log_alpha(t), y))
        return (y + bcast(self.kernel_var(t), y) * score) / alpha


class _VPFamily(ScalarLinearProcess):
    """What VP and sub-VP share: a schedule beta(t), the drift -beta/2 x and the mean alpha_t."""

    schedule: Schedule = LinearSchedule()
    end_time: float = 1.0

    @property
    def t_max(self) -> float:
        return self.end_time

    def f_coeff(self, t):
        return -0.5 * self.schedule.beta(t)

    def log_alpha(self, t):
        return self.schedule.log_alpha(t)


class VP(_VPFamily):
    """Variance-preserving SDE ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dW`` (Song et al. Eq. 11).

    The schedule sets beta(t): linear (beta_min 0.1, beta_max 20), cosine, or LSGM's geometric.
    """

    def g2(self, t):
        return self.schedule.beta(t)

    def kernel_var(self, t):
        return -jnp.expm1(2.0 * self.log_alpha(t))  # 1 - alpha^2, accurate at small t


class SubVP(_VPFamily):
    """sub-VP SDE: ``g(t)^2 = beta(t) (1 - exp(-2 int_0^t beta))`` (Song et al. Eq. 12).

    Same mean as VP; kernel std ``1 - alpha_t^2`` instead of ``sqrt(1 - alpha_t^2)``.
    """

    def g2(self, t):
        return self.schedule.beta(t) * -jnp.expm1(4.0 * self.log_alpha(t))

    def kernel_var(self, t):
        return jnp.expm1(2.0 * self.log_alpha(t)) ** 2


class VE(ScalarLinearProcess):
    """Variance-exploding SDE, sigma(t) = sigma_min (sigma_max / sigma_min)^t (Song et al. Eq. 9).

    The kernel variance is the exact ``sigma(t)^2 - sigma_min^2`` of the paper (Eq. 29);
    score_sde's code uses ``sigma(t)^2``, i.e. data pre-blurred by N(0, sigma_min^2).
    The prior is N(0, sigma_max^2 I). Defaults are CIFAR-10's (0.01, 50).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def f_coeff(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.float32))

    def g2(self, t):
        return self.sigma(t) ** 2 * 2.0 * math.log(self.sigma_max / self.sigma_min)

    def log_alpha(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.float32))

    def kernel_var(self, t):
        # sigma_min^2 ((sigma_max/sigma_min)^(2t) - 1), written with expm1 for small t.
        return self.sigma_min**2 * jnp.expm1(2.0 * t * math.log(self.sigma_max / self.sigma_min))
