"""Parameterisations: what the network's raw output F means (EDM's preconditioning, Karras et al.
2022, Sec. 5 and Table 1: a thin object between the network and the loss / sampler).

Scalar linear processes (VP, sub-VP, VE; ``jaxdiff.processes.scalar``) have the kernel
``x_t = alpha_t x_0 + sigma_t eps``, alpha_t = exp(log_alpha(t)), sigma_t^2 = kernel_var(t). Every
parameterisation here is affine in F, ``eps_theta = skip(x_t, t) + scale(t) F``, so each one
gives the model's eps, x0 (Tweedie's posterior mean), score and v by the identities

    x0 = (x_t - sigma eps) / alpha,   score = -eps / sigma,   v = alpha eps - sigma x0,

the last being v-prediction (Salimans & Ho 2022, Sec. 4 and App. D) written for any alpha, sigma;
with alpha^2 + sigma^2 = 1 (VP) it is theirs, v = alpha eps - sigma x0.

For training, ``residual(process, F, x_t, t, x0, eps)`` is ``eps_theta - eps`` at
``x_t = alpha x0 + sigma eps``, computed without cancellation, so DSM minimises the same weighted
eps-error ``lambda(t) / sigma^2 |eps_theta - eps|^2`` whatever F means. In F's own units that is
``scale(t)^2 |F - target|^2`` with ``target(process, x_t, t, x0, eps)`` and

    Eps       target eps                          scale 1
    Score     target -eps / sigma                 scale -sigma
    EpsSkip   target (eps - eps_lin) / c_out      scale c_out
    X0        target x0                           scale -alpha / sigma
    V         target alpha eps - sigma x0         scale alpha / (alpha^2 + sigma^2)

so e.g. X0 under the sigma^2 weighting is the SNR-weighted x0 loss and V on a VP process is
alpha^2 |v_theta - v|^2 (Salimans & Ho's "SNR+1" weighting of the x0 error).

CLD's mixed velocity score (``CLDMixed``) and LSGM's mixed eps (``LSGMMixed``) are parameterisations
too; ``make_parameterisation(name, **kwargs)`` builds the scalar ones by name.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff.processes.base import bcast
from jaxdiff.processes.cld import CLD
from jaxdiff.processes.scalar import ScalarLinearProcess

Batch = Float[Array, "b ..."]
Times = Float[Array, "..."]


def alpha_var(process: ScalarLinearProcess, t: Times, x: Batch) -> tuple[Array, Array]:
    """``(alpha_t, sigma_t^2)`` of the kernel, shaped to broadcast against ``x``."""
    alpha = bcast(jnp.exp(process.log_alpha(t)), x)
    return alpha, bcast(process.kernel_var(t), x)


# ----------------------------------------------------------------------------------------------
# Scalar linear processes: eps_theta = skip(x_t, t) + scale(t) F


class ScalarParameterisation(eqx.Module):
    """The meaning of F for a scalar linear process; subclasses define ``eps`` and ``target``.

    Arguments throughout: ``out`` the raw network output F (cast to float32 here), ``x_t`` the
    noisy input, ``t`` a scalar or ``(b,)`` time; ``x0`` and ``eps`` the draw behind ``x_t``.
    """

    @abc.abstractmethod
    def eps(self, process: ScalarLinearProcess, out: Batch, x_t: Batch, t: Times) -> Batch:
        """The model's noise prediction eps_theta(x_t, t)."""

    @abc.abstractmethod
    def target(
        self, process: ScalarLinearProcess, x_t: Batch, t: Times, x0: Batch, eps: Batch
    ) -> Batch:
        """The F for which ``eps(F) = eps``: the network's regression target."""

    def x0(self, process: ScalarLinearProcess, out: Batch, x_t: Batch, t: Times) -> Batch:
        """The model's data prediction E[x_0 | x_t] = (x_t - sigma eps_theta) / alpha."""
        alpha, var = alpha_var(process, t, x_t)
        return (x_t - jnp.sqrt(var) * self.eps(process, out, x_t, t)) / alpha

    def score(self, process: ScalarLinearProcess, out: Batch, x_t: Batch, t: Times) -> Batch:
        """The model's score -eps_theta / sigma."""
        return -self.eps(process, out, x_t, t) / jnp.sqrt(bcast(process.kernel_var(t), x_t))

    def v(self, process: ScalarLinearProcess, out: Batch, x_t: Batch, t: Times) -> Batch:
        """The model's v = alpha eps_theta - sigma x0_theta."""
        alpha, var = alpha_var(process, t, x_t)
        eps = self.eps(process, out, x_t, t)
        return alpha * eps - jnp.sqrt(var) * (x_t - jnp.sqrt(var) * eps) / alpha

    def residual(
        self, process: ScalarLinearProcess, out: Batch, x_t: Batch, t: Times, x0: Batch, eps: Batch
    ) -> Batch:
        """``eps_theta - eps`` at ``x_t = alpha x0 + sigma eps`` (DSM's residual)."""
        return self.eps(process, out, x_t, t) - eps


class Eps(ScalarParameterisation):
    """F predicts the noise: ``eps_theta = F`` (DDPM; score_sde's VP models)."""

    def eps(self, process, out, x_t, t):
        return out.astype(jnp.float32)

    def target(self, process, x_t, t, x0, eps):
        return eps


class Score(ScalarParameterisation):
    """F is the score itself: ``eps_theta = -sigma F`` (score_sde's NCSN / VE models)."""

    def eps(self, process, out, x_t, t):
        return -jnp.sqrt(bcast(process.kernel_var(t), x_t)) * out.astype(jnp.float32)

    def score(self, process, out, x_t, t):
        return out.astype(jnp.float32)

    def x0(self, process, out, x_t, t):  # Tweedie: (x_t + sigma^2 s) / alpha
        alpha, var = alpha_var(process, t, x_t)
        return (x_t + var * out.astype(jnp.float32)) / alpha

    def target(self, process, x_t, t, x0, eps):
        return -eps / jnp.sqrt(bcast(process.kernel_var(t), eps))

    def residual(self, process, out, x_t, t, x0, eps):
        return -(jnp.sqrt(bcast(process.kernel_var(t), x_t)) * out.astype(jnp.float32) + eps)


class EpsSkip(ScalarParameterisation):
    """``eps_theta = eps_lin(x_t, t) + c_out(t) F``: EDM's c_skip / c_out written for eps.

    ``eps_lin = sigma (x_t - alpha mu) / (alpha^2 v + sigma^2)`` is the exact eps-prediction for
    Gaussian data N(mu, v I) and ``c_out = alpha sqrt(v) / sqrt(alpha^2 v + sigma^2)`` the
    posterior std of eps there, so F's target has unit scale at every t for such data, and F = 0
    is the exact model of it. LSGM's mixed score is the same idea with a N(0, I) prior.

    Args:
      data_mean: mu, the mean of the Gaussian the skip is exact for.
      data_var: v > 0, its per-coordinate variance.
    """

    data_mean: float = eqx.field(static=True, default=0.0)
    data_var: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not self.data_var > 0:
            raise ValueError(f"data_var must be > 0, got {self.data_var}")

    def skip_and_scale(self, process, x_t, t) -> tuple[Array, Array]:
        """``(eps_lin, c_out)``."""
        alpha, var = alpha_var(process, t, x_t)
        mu, v = self.data_mean, self.data_var
        total = alpha**2 * v + var
        return jnp.sqrt(var) * (x_t - alpha * mu) / total, alpha * jnp.sqrt(v / total)

    def eps(self, process, out, x_t, t):
        eps_lin, c_out = self.skip_and_scale(process, x_t, t)
        return eps_lin + c_out * out.astype(jnp.float32)

    def target(self, process, x_t, t, x0, eps):
        eps_lin, c_out = self.skip_and_scale(process, x_t, t)
        return (eps - eps_lin) / c_out


class X0(ScalarParameterisation):
    """F predicts the data: ``x0_theta = F``, ``eps_theta = (x_t - alpha F) / sigma``."""

    def eps(self, process, out, x_t, t):
        alpha, var = alpha_var(process, t, x_t)
        return (x_t - alpha * out.astype(jnp.float32)) / jnp.sqrt(var)

    def x0(self, process, out, x_t, t):
        return out.astype(jnp.float32)

    def target(self, process, x_t, t, x0, eps):
        return x0

    def residual(self, process, out, x_t, t, x0, eps):
        alpha, var = alpha_var(process, t, x_t)
        return alpha / jnp.sqrt(var) * (x0 - out.astype(jnp.float32))


class V(ScalarParameterisation):
    """F predicts ``v = alpha eps - sigma x0`` (Salimans & Ho 2022, for any alpha, sigma).

    With ``x_t = alpha x0 + sigma eps``: ``eps = (alpha v + sigma x_t) / (alpha^2 + sigma^2)``
    and ``x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2)`` (the denominator is 1 on VP).
    """

    def eps(self, process, out, x_t, t):
        alpha, var = alpha_var(process, t, x_t)
        return (alpha * out.astype(jnp.float32) + jnp.sqrt(var) * x_t) / (alpha**2 + var)

    def x0(self, process, out, x_t, t):
        alpha, var = alpha_var(process, t, x_t)
        return (alpha * x_t - jnp.sqrt(var) * out.astype(jnp.float32)) / (alpha**2 + var)

    def v(self, process, out, x_t, t):
        return out.astype(jnp.float32)

    def target(self, process, x_t, t, x0, eps):
        alpha, var = alpha_var(process, t, x_t)
        return alpha * eps - jnp.sqrt(var) * x0

    def residual(self, process, out, x_t, t, x0, eps):
        alpha, var = alpha_var(process, t, x_t)
        v = alpha * eps - jnp.sqrt(var) * x0
        return alpha / (alpha**2 + var) * (out.astype(jnp.float32) - v)


# ----------------------------------------------------------------------------------------------
# LSGM's mixed score (Vahdat et al. 2021, Sec. 3.2)


def lsgm_mix(
    out: Batch, mixing_logit: Float[Array, " c"], z_t: Batch, var_t: Float[Array, "..."]
) -> Batch:
    """``(1 - a) sigma_t z_t + a F`` with a = sigmoid(logit) per (last-axis) channel."""
    a = jax.nn.sigmoid(mixing_logit.astype(jnp.float32))
    normal = jnp.sqrt(bcast(var_t, z_t)) * z_t
    return (1.0 - a) * normal + a * out.astype(jnp.float32)


class LSGMMixed(ScalarParameterisation):
    """LSGM's mixed eps, ``eps_theta = (1 - a) sigma_t z_t + a F``, a = sigmoid(mixing_logit).

    ``sigma_t z_t`` is the exact eps of N(0, I) latents on a VP process (alpha^2 + sigma^2 = 1;
    on another process it is not), so ``a`` mixes a Normal prior with the learnt residual. The
    per-channel ``mixing_logit`` is a learnt parameter: build this object from the current
    parameters inside the eps function, ``LSGMMixed(params['mixing_logit'])``.
    """

    mixing_logit: Float[Array, " c"]

    def eps(self, process, out, x_t, t):
        var_t = process.kernel_var(jnp.asarray(t, jnp.float32))
        return lsgm_mix(out, self.mixing_logit, x_t, var_t)

    def target(self, process, x_t, t, x0, eps):
        a = jax.nn.sigmoid(self.mixing_logit.astype(jnp.float32))
        normal = jnp.sqrt(bcast(process.kernel_var(t), x_t)) * x_t
        return (eps - (1.0 - a) * normal) / a


# ----------------------------------------------------------------------------------------------
# CLD's velocity score (Dockhorn et al. 2022, Sec. 3.2)


class CLDMixed(eqx.Module):
    """CLD's model velocity score: ``-v / Sigma~_vv(t) - ell_t F`` (mixed) or ``-ell_t F``.

    Sigma~_vv is the HSM kernel's vv-variance for data at 0 (the official code's var0x = 0), the
    exact velocity score of that kernel's v-marginal; ell_t is the objective's (HSM or DSM), so
    F predicts eps_v. The loss's residual is ``s / (-ell_t) - eps_v``.

    Args:
      mixed: add the -v / Sigma~_vv base (every official config does).
    """

    mixed: bool = eqx.field(static=True, default=True)

    def base_var_vv(self, process: CLD, t: Times) -> Array:
        """Sigma~_vv(t) with var0x = 0 and var0v = gamma M."""
        return process.kernel_cov(t, 0.0, process.var0v)[2]

    def velocity_score(
        self, process: CLD, out: Batch, v: Batch, t: Times, ell: Float[Array, "..."]
    ) -> Batch:
        """``s_v = -ell_t F (- v / Sigma~_vv)``; ``ell`` is the objective's ell_t."""
        s = -bcast(ell, v) * out.astype(jnp.float32)
        if self.mixed:
            s = s - v / bcast(self.base_var_vv(process, t), v)
        return s

    def target(self, process: CLD, v: Batch, t: Times, ell: Array, eps_v: Batch) -> Batch:
        """The F for which ``s_v = -ell_t eps_v``, the kernel's velocity score."""
        base = v / bcast(self.base_var_vv(process, t), v) if self.mixed else 0.0
        return eps_v - base / bcast(ell, v)


# ----------------------------------------------------------------------------------------------
# Construction by name (the composition root's table; no registry)

_SCALAR: dict[str, type[ScalarParameterisation]] = {
    "eps": Eps,
    "score": Score,
    "eps_skip": EpsSkip,
    "x0": X0,
    "v": V,
}


def make_parameterisation(name: str, **kwargs: Any) -> ScalarParameterisation:
    """A scalar-process parameterisation by name; ``kwargs`` go to its constructor
    (``eps_skip``: ``data_mean``, ``data_var``)."""
    cls = _SCALAR.get(name)
    if cls is None:
        raise ValueError(f"unknown parameterisation {name!r}; use one of {tuple(_SCALAR)}")
    return cls(**kwargs)
