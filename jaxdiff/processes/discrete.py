"""DDGAN's discrete forward chain: a few large steps of the discretised VP SDE.

Xiao, Kreis & Vahdat (2022), Sec. 2 and 3 and the official ``Diffusion_Coefficients`` /
``Posterior_Coefficients``. With T in {1, 2, 4, 8} steps on the grid
``t_k = k / T (1 - eps) + eps`` (k = 0..T, eps = 1e-3) of the VP SDE (beta_min 0.1, beta_max 20):

* ``alpha_bar(t) = exp(-1/2 t^2 (beta_max - beta_min) - t beta_min)``;
* ``beta_k = 1 - alpha_bar(t_k) / alpha_bar(t_{k-1})``, k = 1..T (Eq. (1): q(x_k | x_{k-1}) =
  N(sqrt(1 - beta_k) x_{k-1}, beta_k I));
* the posterior q(x_{k-1} | x_k, x_0) of DDPM (Ho et al. 2020, Eq. (6)-(7)) from beta_1..beta_T.

Two official conventions that change numbers are kept:

1. The forward noising prepends a dummy ``beta_0 = 1e-8``: the "clean" member of a pair carries
   about 1e-4 noise and the marginals use ``prod_{j <= k}(1 - beta_j)`` including it. The
   posterior does not (it uses beta_1..beta_T only).
2. The label given to G and D is the 0-based index ``t`` of the *less noisy* member of a pair
   (x_t, x_{t+1}), t in {0..T-1}; the posterior at label 0 adds no noise (its mean is exactly x0).

Coefficients are computed in float64 with numpy and stored in float32.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Key

from jaxdiff import rng
from jaxdiff.processes.base import DiagonalGaussian, bcast

DUMMY_BETA = 1e-8  # the official beta_0, prepended in forward noising only
LOGVAR_CLIP = 1e-20  # posterior log-variance clip, log(max(var, 1e-20))


def vp_discrete_betas(
    num_steps: int, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3
) -> np.ndarray:
    """beta_1..beta_T (float64, shape (T,)) of the VP SDE discretised on ``t_k = k/T (1-eps)+eps``.

    ``beta_k = 1 - alpha_bar(t_k) / alpha_bar(t_{k-1})`` with the VP mean coefficient squared
    ``alpha_bar(t) = exp(-1/2 t^2 (beta_max - beta_min) - t beta_min)`` (official
    ``get_sigma_schedule`` with ``var_func_vp``).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps * (1.0 - eps) + eps
    log_alpha_bar = -0.5 * t**2 * (beta_max - beta_min) - t * beta_min
    return 1.0 - np.exp(np.diff(log_alpha_bar))


class DiscreteChain(eqx.Module):
    """The DDGAN forward chain x_0 -> x_1 -> ... -> x_T and its Gaussian posteriors.

    Indices: chain members are ``x_k``, k = 0..T (k = 0 is the data, noised by the dummy
    beta_0). Network labels ``t`` are 0-based in {0..T-1} and name the pair (x_t, x_{t+1}).

    Build with :meth:`vp`. Every array is float32 and a pytree leaf; ``num_steps`` is static.
    """

    # A chain of T large steps, not an SDE: no continuous-time sampler applies (DDGAN samples
    # through its generator and ``posterior``).
    capabilities: ClassVar[frozenset[str]] = frozenset()

    num_steps: int = eqx.field(static=True)
    betas: Float[Array, " T"]  # beta_1..beta_T (no dummy)
    # forward noising, with the dummy beta_0 first (length T + 1)
    a: Float[Array, " T1"]  # sqrt(1 - beta_k)
    sigma: Float[Array, " T1"]  # sqrt(beta_k)
    a_cum: Float[Array, " T1"]  # prod_{j<=k} sqrt(1 - beta_j)
    sigma_cum: Float[Array, " T1"]  # sqrt(1 - a_cum^2)
    # posterior q(x_t | x_{t+1}, x_0) at label t (length T, beta_1..beta_T)
    alphas_cumprod: Float[Array, " T"]  # alpha_bar_k without the dummy, k = 1..T
    posterior_variance: Float[Array, " T"]
    posterior_log_variance: Float[Array, " T"]  # log(max(var, 1e-20))
    posterior_coef_x0: Float[Array, " T"]  # coef1: beta sqrt(alpha_bar_prev) / (1 - alpha_bar)
    posterior_coef_xt: Float[Array, " T"]  # coef2: (1 - alpha_bar_prev) sqrt(alpha) / (1 - ab)

    @classmethod
    def vp(
        cls,
        num_steps: int,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        eps: float = 1e-3,
    ) -> DiscreteChain:
        """The official DDGAN chain with ``num_steps`` (T) steps of the VP SDE."""
        betas = vp_discrete_betas(num_steps, beta_min, beta_max, eps)
        return cls.from_betas(betas)

    @classmethod
    def from_betas(cls, betas: np.ndarray) -> DiscreteChain:
        """A chain from beta_1..beta_T (float64 computation, float32 storage)."""
        betas = np.asarray(betas, np.float64)
        full = np.concatenate([[DUMMY_BETA], betas])
        a = np.sqrt(1.0 - full)
        a_cum = np.cumprod(a)
        # posterior (Ho et al. 2020, Eq. (6)-(7)), from beta_1..beta_T only
        alphas = 1.0 - betas
        ab = np.cumprod(alphas)
        ab_prev = np.concatenate([[1.0], ab[:-1]])
        var = betas * (1.0 - ab_prev) / (1.0 - ab)
        f32 = lambda v: jnp.asarray(v, jnp.float32)
        return cls(
            num_steps=len(betas),
            betas=f32(betas),
            a=f32(a),
            sigma=f32(np.sqrt(full)),
            a_cum=f32(a_cum),
            sigma_cum=f32(np.sqrt(1.0 - a_cum**2)),
            alphas_cumprod=f32(ab),
            posterior_variance=f32(var),
            posterior_log_variance=f32(np.log(np.maximum(var, LOGVAR_CLIP))),
            posterior_coef_x0=f32(betas * np.sqrt(ab_prev) / (1.0 - ab)),
            posterior_coef_xt=f32((1.0 - ab_prev) * np.sqrt(alphas) / (1.0 - ab)),
        )

    def linear_x0_coefs(self, data_var: float) -> Float[Array, " T"]:
        """Per label t, the coefficient c_t of the best *linear* estimate ``c_t x_{t+1}`` of x0.

        For data of per-coordinate variance ``data_var`` (mean 0), x_{t+1} = a x0 + s eps with
        ``a = a_cum[t+1]``, ``s = sigma_cum[t+1]``, so ``E[x0 x_{t+1}] / E[x_{t+1}^2] =
        a v / (a^2 v + s^2)`` (the Wiener filter; exact E[x0 | x_{t+1}] for Gaussian data). Toy
        generators use it as a skip connection (EDM's c_skip in spirit): x0 = c_t x_{t+1} + F.
        """
        a, s = self.a_cum[1:], self.sigma_cum[1:]
        return a * data_var / (a * a * data_var + s * s)

    # -- forward kernels -------------------------------------------------------------------------

    def marginal(self, x0: Float[Array, "b ..."], k: Int[Array, " b"]) -> DiagonalGaussian:
        """q(x_k | x_0) = N(a_cum[k] x0, sigma_cum[k]^2 I), k in {0..T} (dummy beta_0 included)."""
        return DiagonalGaussian(bcast(self.a_cum[k], x0) * x0, bcast(self.sigma_cum[k], x0))

    def transition(self, x_prev: Float[Array, "b ..."], k: Int[Array, " b"]) -> DiagonalGaussian:
        """Eq. (1): q(x_k | x_{k-1}) = N(sqrt(1 - beta_k) x_{k-1}, beta_k I), k in {1..T}."""
        return DiagonalGaussian(bcast(self.a[k], x_prev) * x_prev, bcast(self.sigma[k], x_prev))

    def q_sample(
        self, key: Key[Array, ""], x0: Float[Array, "b ..."], k: Int[Array, " b"]
    ) -> Float[Array, "b ..."]:
        """A draw of x_k ~ q(x_k | x_0)."""
        return self.marginal(x0, k).sample(key)[0]

    def q_pair(
        self, key: Key[Array, ""], x0: Float[Array, "b ..."], t: Int[Array, " b"]
    ) -> tuple[Float[Array, "b ..."], Float[Array, "b ..."]]:
        """The real pair (x_t, x_{t+1}) at labels t in {0..T-1}, by ancestral sampling.

        x_t ~ q(x_t | x_0), then x_{t+1} ~ q(x_{t+1} | x_t) (official ``q_sample_pairs``; the
        pair is never drawn from the posterior). Returns ``(x_t, x_{t+1})``.
        """
        k1, k2 = rng.split(key)
        x_t = self.q_sample(k1, x0, t)
        x_next = self.transition(x_t, t + 1).sample(k2)[0]
        return x_t, x_next

    # -- posterior -------------------------------------------------------------------------------

    def posterior(
        self, x0: Float[Array, "b ..."], x_next: Float[Array, "b ..."], t: Int[Array, " b"]
    ) -> DiagonalGaussian:
        """q(x_t | x_{t+1}, x_0) at labels t in {0..T-1} (1-based: q(x_{k-1} | x_k, x_0), k=t+1).

        Mean ``coef1 x0 + coef2 x_{t+1}``, variance ``beta~ = beta (1 - ab_prev) / (1 - ab)``
        (Ho et al. 2020, Eq. (7)); the std is ``exp(logvar / 2)`` with the official 1e-20 clip
        and is exactly 0 at label 0 (the official ``nonzero_mask``).
        """
        mean = (
            bcast(self.posterior_coef_x0[t], x0) * x0
            + bcast(self.posterior_coef_xt[t], x_next) * x_next
        )
        std = jnp.where(t > 0, jnp.exp(0.5 * self.posterior_log_variance[t]), 0.0)
        return DiagonalGaussian(mean, bcast(std, x0))

    def posterior_sample(
        self,
        key: Key[Array, ""],
        x0: Float[Array, "b ..."],
        x_next: Float[Array, "b ..."],
        t: Int[Array, " b"],
    ) -> Float[Array, "b ..."]:
        """x_t ~ q(x_t | x_{t+1}, x_0): DDGAN's step given a predicted x0 (Sec. 3.3)."""
        return self.posterior(x0, x_next, t).sample(key)[0]

    # -- prior -----------------------------------------------------------------------------------

    def prior_sample(self, key: Key[Array, ""], shape: tuple[int, ...]) -> Float[Array, "b ..."]:
        """x_T ~ N(0, I) (alpha_bar_T ~ 4.3e-5, so x_T is standard normal to that accuracy)."""
        return jax.random.normal(key, shape, jnp.float32)

    def labels(self, key: Key[Array, ""], batch: int) -> Int[Array, " b"]:
        """Per-example labels t ~ U{0..T-1} (the official ``torch.randint(0, T)``)."""
        return rng.randint(key, (batch,), 0, self.num_steps)
