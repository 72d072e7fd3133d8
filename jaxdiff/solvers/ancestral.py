"""DDPM's ancestral sampler and discrete-time ELBO on the betas of a continuous VP SDE.

LSGM's ``diffusion_discretized.py`` turns the continuous latent SDE into a T-step DDPM chain
(T = ``--diffusion_steps``, 1000): at t_k = k / T, ``abar_k = 1 - sigma^2(t_k)`` (the VP kernel's
alpha_t^2), ``beta_1 = 1 - abar_1`` and ``beta_k = 1 - abar_k / abar_{k-1}``, so that the chain's
marginals q(z_k | z_0) = N(sqrt(abar_k) z_0, (1 - abar_k) I) are the SDE's at the grid points.
The network is evaluated at t = k / T, its eps prediction being ``-sigma_t score(z, t)``.

* sampling (``run_denoising_diffusion``): z_T ~ N(0, I); for k = T .. 2
  ``z_{k-1} = (z_k - beta_k eps / sqrt(1 - abar_k)) / sqrt(1 - beta_k) + s_k n`` with
  ``s_k^2 = beta_k`` (``--denoising_stddevs beta``, the default) or the posterior variance
  ``beta_k (1 - abar_{k-1}) / (1 - abar_k)`` (``beta_post``); the last step returns the mean,
  ``(z_1 - sqrt(1 - abar_1) eps) / sqrt(abar_1)``, without noise. T score evaluations.
* the ELBO (``compute_nelbo``): KL(q(z_T | z_0) || N(0, prior_var I)) plus, for each k, one
  Monte-Carlo draw of the k-th term: for k >= 2 the KL between q(z_{k-1} | z_k, z_0) and
  p(z_{k-1} | z_k) = N(mean_theta, s_k^2), for k = 1 -log N(z_0; mean_theta, s_1^2) (a density of
  the continuous z_0, s_1 from ``beta_post_2`` under ``beta_post``). With
  ``mean_q - mean_theta = beta_k / sqrt(alpha_k (1 - abar_k)) (eps_theta - eps)`` each term is
  ``w_k ||eps_theta - eps||^2 / (2 s_k^2)`` plus constants (DDPM, Ho et al. 2020, Eq. 12).

On sub-VP and VE the same construction uses the kernel's exact transition
q(x_t | x_s) = N(a x_s, (sigma_t^2 - a^2 sigma_s^2) I), a = alpha_t / alpha_s, as the chain (on VE
SMLD's ancestral sampler); on a VP it is LSGM's chain exactly. (LSGM's code would set
abar = 1 - sigma^2(t) for any SDE, which are not the sub-VP or VE marginals.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxdiff.processes.base import SCALAR_KERNEL, SDE, Process, batch_sum
from jaxdiff.solvers.base import Sampler

STDDEVS = ("beta", "beta_post")  # LSGM's --denoising_stddevs ('learn' has no fixed value)


class Chain(NamedTuple):
    """Per-step constants of the chain on the decreasing times ``ts[:-1]``; step i goes from
    ``ts[i]`` to ``ts[i + 1]``, the last one to the clean state (alpha 1, sigma 0).

    ``log_a``: log of the transition's mean factor a = alpha_t / alpha_s; ``var``: sigma_t^2 at
    ``ts[i]``; ``trans``: the transition variance sigma_t^2 - a^2 sigma_s^2 (DDPM's beta_k on a
    VP); ``post``: the posterior variance trans * sigma_s^2 / sigma_t^2 (the last step's is the
    one before it, as LSGM's ``betas_post_init``); ``log_alpha``: log alpha_t at ``ts[i]``."""

    log_a: Float[Array, " n"]
    var: Float[Array, " n"]
    trans: Float[Array, " n"]
    post: Float[Array, " n"]
    log_alpha: Float[Array, " n"]


def chain(process: Process, ts: Float[Array, " n1"]) -> Chain:
    """The chain's constants for a scalar-kernel ``process`` on the decreasing grid ``ts``
    (n + 1 times; the chain ends in the clean state whatever ``ts[-1]`` is). On a VP,
    ``trans = 1 - abar(ts[i]) / abar(ts[i + 1])`` through ``expm1`` (betas of order 1e-4 keep
    their relative precision in float32), abar = 1 - sigma^2."""
    from jaxdiff.processes.scalar import VP

    ts = jnp.asarray(ts, jnp.float32)
    zero = jnp.zeros((1,), jnp.float32)
    log_alpha = process.log_alpha(ts[:-1])
    log_a = log_alpha - jnp.concatenate([log_alpha[1:], zero])
    var = process.kernel_var(ts[:-1])
    var_next = jnp.concatenate([var[1:], zero])
    if isinstance(process, VP):
        trans = -jnp.expm1(2.0 * log_a)
    else:
        trans = var - jnp.exp(2.0 * log_a) * var_next
    post = trans * var_next / var
    post = jnp.concatenate([post[:-1], post[-2:-1]]) if post.shape[0] > 1 else trans
    return Chain(log_a, var, trans, post, log_alpha)


def uniform_times(steps: int) -> Float[Array, " n1"]:
    """LSGM's grid t_k = k / T, k = T .. 0 (``steps + 1`` times, decreasing)."""
    return jnp.arange(steps, -1, -1, dtype=jnp.float32) / steps


class Ancestral(Sampler):
    """Ancestral sampling of the chain on the grid ``ts`` (LSGM's ``run_denoising_diffusion``
    with ``ts`` uniform from 1 to 0 in T steps, its t_k = k / T):
    ``x_s = (x_t + trans * score) / a + s n``, s^2 = ``trans`` (``beta``, LSGM's default) or
    ``post`` (``beta_post``); the last step returns Tweedie's mean without noise. On a VP this is
    DDPM's step with betas from the continuous sigma^2(t); on VE it is SMLD's ancestral step.

    One score evaluation per interval (sample with ``denoise=False``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({SDE, SCALAR_KERNEL})

    stddev: str = "beta"

    def solve(self, process, score_fn, key, y, ts):
        if self.stddev not in STDDEVS:
            raise ValueError(f"unknown stddev {self.stddev!r}; use {STDDEVS}")
        ts = jnp.asarray(ts, jnp.float32)
        c = chain(process, ts)
        std = jnp.sqrt(c.trans if self.stddev == "beta" else c.post)
        n = ts.shape[0] - 1

        def step(y, inp):
            t, log_a, trans, s, k = inp
            # the posterior mean given Tweedie's x0: (x_t - trans eps / sigma_t) / a
            mean = (y + trans * score_fn(y, t)) * jnp.exp(-log_a)
            return mean + s * jax.random.normal(k, y.shape, y.dtype), None

        keys = jax.random.split(key, n)
        inputs = (ts[: n - 1], c.log_a[:-1], c.trans[:-1], std[:-1], keys[:-1])
        y, _ = jax.lax.scan(step, y, inputs)
        # the last step: Tweedie's mean (x_1 + sigma_1^2 score) / alpha_1 (LSGM: t == 0)
        y = (y + c.var[-1] * score_fn(y, ts[n - 1])) * jnp.exp(-c.log_alpha[-1])
        return y, jnp.asarray(n, jnp.int32)


EpsFn = Callable[[Array, Array], Array]  # eps_fn(z_t, t) with t of shape (b,)


def nelbo(
    process: Process,
    eps_fn: EpsFn,
    key: jax.Array,
    z0: Float[Array, "b ..."],
    steps: int = 1000,
    stddev: str = "beta",
    prior_var: float | None = None,
) -> tuple[Float[Array, " b"], Int[Array, ""]]:
    """-ELBO of ``z0`` under the T-step chain on t_k = k / T (LSGM's ``compute_nelbo``), nats per
    example, and the number of network evaluations (T). One noise draw per step and example;
    ``prior_var``: of the N(0, prior_var I) prior (None: the process's, 1 on a VP)."""
    if stddev not in STDDEVS:
        raise ValueError(f"unknown stddev {stddev!r}; use {STDDEVS}")
    pv = float(process.prior_std**2 if prior_var is None else prior_var)
    ts = uniform_times(steps)
    c = chain(process, ts)
    log_s2 = jnp.log(c.trans if stddev == "beta" else c.post)
    # ts[i] is step k = T - i; the last index is k = 1, whose term is -log N(z0; mean, s^2)
    is_first = jnp.arange(steps) == steps - 1
    w_l2 = c.trans**2 * jnp.exp(-2.0 * c.log_a) / c.var  # (mean_q - mean_theta)^2 / |eps - eps'|^2
    w_inv = jnp.where(is_first, 0.0, c.post)
    w_const = jnp.where(is_first, 0.5 * math.log(2 * math.pi), -0.5 * jnp.log(c.post) - 0.5)
    alpha2_t, var_t = jnp.exp(2.0 * c.log_alpha[0]), c.var[0]  # k = T
    base = 0.5 * (alpha2_t * z0**2 + var_t) / pv - 0.5 * jnp.log(var_t)
    base = batch_sum(base + 0.5 * math.log(pv) - 0.5)
    b = z0.shape[0]
    d = z0.size // b

    def term(total, inp):
        t, log_alpha, var, wl, wi, wc, ls2, k = inp
        eps = jax.random.normal(k, z0.shape, jnp.float32)
        z_t = jnp.exp(log_alpha) * z0 + jnp.sqrt(var) * eps
        sq = batch_sum((eps_fn(z_t, jnp.full((b,), t)) - eps) ** 2)
        inv = 0.5 * jnp.exp(-ls2)
        return total + wl * sq * inv + d * (wi * inv + 0.5 * ls2 + wc), None

    keys = jax.random.split(key, steps)
    inputs = (ts[:-1], c.log_alpha, c.var, w_l2, w_inv, w_const, log_s2, keys)
    total, _ = jax.lax.scan(term, base, inputs)
    return total, jnp.asarray(steps, jnp.int32)
