"""Sampling the diffusion time t for training: uniform, or importance sampling.

Likelihood weighting (Song et al. 2021b) weighs the noise-prediction error at t by
``g(t)^2 / sigma_t^2 = -d/dt log SNR(t)`` for every scalar linear process. Drawing t with density
``q(t) proportional to -d/dt log SNR(t)`` on [t_min, T] makes that weight constant: the IS weight
is ``w(t) / q(t) = log SNR(t_min) - log SNR(T)``. The inverse CDF is closed form in log SNR:
``log SNR(t) = (1 - u) log SNR(t_min) + u log SNR(T)``, solved for t by bisection (log SNR is
monotone), so the same sampler serves VP, sub-VP, VE and LSGM's geometric VP
(LSGM's ``_iw_quantities_vpsdelike`` derives the VP case in closed form; see lsgm.md section 2.4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff import rng
from jaxdiff.processes.scalar import ScalarLinearProcess


def uniform_t(key: jax.Array, n: int, t_min: float = 1e-5, t_max: float = 1.0) -> Array:
    """t ~ U[t_min, t_max], shape (n,)."""
    return rng.uniform(key, (n,), minval=t_min, maxval=t_max)


def invert_monotone(fn, target: Array, lo: float, hi: float, iters: int = 40) -> Array:
    """Solves ``fn(t) = target`` for a monotone ``fn`` on [lo, hi] by vectorised bisection."""
    increasing = fn(jnp.float32(hi)) > fn(jnp.float32(lo))

    def body(_, bounds):
        a, b = bounds
        mid = 0.5 * (a + b)
        below = jnp.where(increasing, fn(mid) < target, fn(mid) > target)
        return jnp.where(below, mid, a), jnp.where(below, b, mid)

    a0 = jnp.full_like(target, lo)
    b0 = jnp.full_like(target, hi)
    a, b = jax.lax.fori_loop(0, iters, body, (a0, b0))
    return 0.5 * (a + b)


def likelihood_is_t(
    key: jax.Array, process: ScalarLinearProcess, n: int, t_min: float = 1e-5
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """t ~ q(t) proportional to g^2/sigma^2 and the IS factor ``(g^2/sigma^2)(t) / q(t)``.

    Returns ``(t, weight)``; ``E_q[weight * err(t)] = int g^2/sigma^2 err(t) dt``.
    """
    t_max = process.t_max
    lo, hi = process.log_snr(jnp.float32(t_min)), process.log_snr(jnp.float32(t_max))
    u = rng.uniform(key, (n,))
    target = (1.0 - u) * lo + u * hi
    t = invert_monotone(process.log_snr, target, t_min, t_max)
    return t, jnp.full((n,), lo - hi)


def likelihood_is_density(process: ScalarLinearProcess, t: Array, t_min: float = 1e-5) -> Array:
    """The density q(t) of ``likelihood_is_t`` (for tests and diagnostics)."""
    dlog = jax.vmap(jax.grad(lambda s: -process.log_snr(s)))(t)
    z = process.log_snr(jnp.float32(t_min)) - process.log_snr(jnp.float32(process.t_max))
    return dlog / z
