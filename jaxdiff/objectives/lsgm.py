"""LSGM's objective: a VAE whose prior is a score-based model (Vahdat, Kreis & Kautz, 2021).

For one data point and z_0 ~ q(z_0 | x) (Sec. 3, the ELBO split into three terms):

    -ELBO(x) = E_q[-log p(x | z_0)] + E_q[log q(z_0 | x)] + CE(q(z_0 | x) || p_theta(z_0))
               (reconstruction)     (negative entropy)    (cross entropy to the SGM prior)

The cross entropy to a continuous-time score prior is a denoising score-matching integral with
likelihood weighting (Sec. 3.1, Theorem 1), which for a VP SDE with kernel
z_t = m_t z_0 + sigma_t eps and noise prediction eps_theta reads, per latent dimension,

    CE = int_eps^1 w_ll(t) E||eps - eps_theta(z_t, t)||^2 dt + 1/2 log(2 pi e sigma^2(eps)),
    w_ll(t) = g(t)^2 / (2 sigma_t^2).

Mixed score (Sec. 3.2): ``eps_theta = (1 - alpha) sigma_t z_t + alpha eps'_theta`` with a learnt
per-channel ``alpha = sigmoid(logit)``: the analytic eps of a N(0, I) latent plus a learnt residual
(``LSGMMixed(mixing_logit)``, a parameterisation in ``jaxdiff.objectives.parameterisation``).

Variance reduction (Sec. 3.3, App. B/C; LSGM's ``_iw_quantities_vpsdelike``): three weightings of
``||eps - eps_theta||^2`` -- ``ll`` (g^2 / 2 sigma^2, the ELBO), ``un`` (1), ``re`` (g^2 / 2) -- and
for each an importance distribution r(t) proportional to w(t) (1 - sigma_t^2), which makes the
integrand constant for Normal latents. Since d sigma_t^2 / dt = g^2 (1 - sigma_t^2) on a VP SDE,
r_ll is uniform in log sigma_t^2 and r_re uniform in sigma_t^2; r_un is proportional to
m_t^2 = 1 - sigma_t^2 (an erf for the linear VP, closed-form CDF for the geometric VP).
Processes are ``VP`` with a ``LinearSchedule`` (beta 0.1 -> 20, time_eps 0.01) or LSGM's
``GeometricSchedule`` (sigma^2 3e-5 -> 0.999, time_eps 0), and (``diffusion_continuous.py``'s
other two) the ``SubVP`` with a linear schedule, whose IS densities are its VP analogue's
(LSGM's ``iw_subvp_like_vp_sde``), and the ``VE``, whose r(t) are proportional to w(t) times the
N(0, I) latent's residual 1 / (1 + sigma_t^2) (uniform in log(sigma^2 / (1 + sigma^2)) for ll
and un, in log(1 + sigma^2) for re); both need t_min > 0. The mixed score's Normal part is
``sigma_t z_t / (alpha_t^2 + sigma_t^2)`` (``normal_eps``). All of it is float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri
from jaxtyping import Array, Float

from jaxdiff import rng
from jaxdiff.objectives.parameterisation import lsgm_mix
from jaxdiff.objectives.time_sampling import invert_monotone
from jaxdiff.processes.base import batch_sum, bcast
from jaxdiff.processes.scalar import VE, VP, SubVP
from jaxdiff.processes.schedules import GeometricSchedule, LinearSchedule

# eps_fn(z_t, t) -> mixed eps prediction, t of shape (b,)
EpsFn = Callable[[Array, Array], Array]

IS_WEIGHTINGS = ("ll", "un", "re")  # those with an importance distribution r(t)
WEIGHTINGS = (*IS_WEIGHTINGS, "rescale")
SAMPLINGS = ("iw", "uniform")
# q's t: its own ll_iw / ll_uniform batch, or p's draws reweighted (``reweight_p_samples``)
Q_SAMPLINGS = (*SAMPLINGS, "reweight_p")

# ----------------------------------------------------------------------------------------------
# Closed forms of the VP SDEs LSGM uses (App. B): sigma^2(t), its inverse, int (1 - sigma^2)


def var(process: VP | SubVP | VE, t: Float[Array, "..."]) -> Float[Array, "..."]:
    """sigma_t^2 of the kernel (sigma2_min at t = 0 for the geometric VP, 0 for the others)."""
    return process.kernel_var(jnp.asarray(t, jnp.float32))


def _inv_var_linear(s: LinearSchedule, s2: Array) -> Array:
    # -log(1 - sigma^2) = beta_0 t + (beta_1 - beta_0) t^2 / 2: the positive root of a quadratic.
    db = s.beta_max - s.beta_min
    c = -jnp.log1p(-s2)
    return 2.0 * c / (s.beta_min + jnp.sqrt(s.beta_min**2 + 2.0 * db * c))


def _inv_var_geometric(s: GeometricSchedule, s2: Array) -> Array:
    return jnp.log(s2 / s.sigma2_min) / math.log(s.sigma2_max / s.sigma2_min)


def _inv_var_subvp(process: SubVP, s2: Array) -> Array:
    # sigma^2 = (1 - m^2)^2: the linear VP's sigma^2 is sqrt(sigma^2)
    if not isinstance(process.schedule, LinearSchedule):
        raise ValueError(f"LSGM's sub-VP closed forms need a linear schedule, got {process}")
    return _inv_var_linear(process.schedule, jnp.sqrt(s2))


def _inv_var_ve(process: VE, s2: Array) -> Array:
    # sigma^2 = sigma_min^2 ((sigma_max / sigma_min)^(2t) - 1)
    return jnp.log1p(s2 / process.sigma_min**2) / (
        2.0 * math.log(process.sigma_max / process.sigma_min)
    )


def inv_var(process: VP | SubVP | VE, s2: Float[Array, "..."]) -> Float[Array, "..."]:
    """t with sigma_t^2 = ``s2`` (LSGM's ``inv_var``), closed form for the linear and geometric
    VP, the (linear) sub-VP and the VE."""
    s2 = jnp.asarray(s2, jnp.float32)
    if isinstance(process, SubVP):
        return _inv_var_subvp(process, s2)
    if isinstance(process, VE):
        return _inv_var_ve(process, s2)
    table = {LinearSchedule: _inv_var_linear, GeometricSchedule: _inv_var_geometric}
    fn = table.get(type(process.schedule))
    if fn is None:
        raise ValueError(f"LSGM's closed forms need a linear or geometric VP, got {process}")
    return fn(process.schedule, s2)


def _m2_integral_linear(s: LinearSchedule, t: Array) -> Array:
    # 1 - sigma^2 = exp(-Delta (t + b)^2 + Delta b^2), Delta = (b1 - b0)/2, b = b0 / (b1 - b0):
    # int = -exp(Delta b^2) sqrt(pi / Delta) Phi(-sqrt(2 Delta) (t + b)) (+ const).
    delta = 0.5 * (s.beta_max - s.beta_min)
    b = s.beta_min / (s.beta_max - s.beta_min)
    return (
        -math.exp(delta * b * b)
        * math.sqrt(math.pi / delta)
        * ndtr(-math.sqrt(2 * delta) * (t + b))
    )


def _m2_integral_geometric(s: GeometricSchedule, t: Array) -> Array:
    # 1 - sigma^2 = 1 - sigma2_min k^t: int = t - sigma2_min k^t / log k (+ const).
    lk = math.log(s.sigma2_max / s.sigma2_min)
    return t - s.sigma2_min * jnp.exp(t * lk) / lk


def m2_integral(process: VP, t: Float[Array, "..."]) -> Float[Array, "..."]:
    """An antiderivative of 1 - sigma_t^2 (the normaliser of r_un)."""
    table = {LinearSchedule: _m2_integral_linear, GeometricSchedule: _m2_integral_geometric}
    fn = table.get(type(process.schedule))
    if fn is None:
        raise ValueError(f"LSGM's closed forms need a linear or geometric VP, got {process}")
    return fn(process.schedule, jnp.asarray(t, jnp.float32))


def _m2_inverse_linear(s: LinearSchedule, u: Array, t_min: float, t_max: float) -> Array:
    # Inverse CDF of r_un through Phi^{-1} (LSGM uses erfinv; ndtri keeps precision near t = 1).
    delta = 0.5 * (s.beta_max - s.beta_min)
    b = s.beta_min / (s.beta_max - s.beta_min)
    r = math.sqrt(2 * delta)
    lo, hi = ndtr(-r * (t_min + b)), ndtr(-r * (t_max + b))
    return -ndtri(lo + u * (hi - lo)) / r - b


# ----------------------------------------------------------------------------------------------
# Weightings and their importance distributions (Sec. 3.3)


def weight(process: VP | SubVP | VE, weighting: str, t: Float[Array, " b"]) -> Float[Array, " b"]:
    """w(t) multiplying ||eps - eps_theta||^2: ``ll`` g^2/(2 sigma^2), ``un`` 1, ``re`` g^2/2,
    ``rescale`` 1/(2 (1 - sigma^2)) (LSGM's ``rescale_iw``, with uniform t; on a VP that is
    1 / (2 m_t^2), on a sub-VP LSGM's own 1 - sigma^2; the VE has none)."""
    t = jnp.asarray(t, jnp.float32)
    if weighting == "rescale":
        if isinstance(process, VE):
            raise ValueError("p_weighting 'rescale' needs sigma^2 < 1: not on a VE")
        if isinstance(process, SubVP):
            return 0.5 / (1.0 - var(process, t))
        return 0.5 * jnp.exp(-2.0 * process.log_alpha(t))  # 1 - sigma^2 = m_t^2, exact near 1
    if weighting == "ll":
        return 0.5 * process.g2(t) / var(process, t)
    if weighting == "un":
        return jnp.ones_like(t)
    if weighting == "re":
        return 0.5 * process.g2(t)
    raise ValueError(f"unknown weighting {weighting!r}; use {WEIGHTINGS}")


def vp_analogue(process: SubVP) -> VP:
    """The VP with the sub-VP's schedule, whose IS densities LSGM uses for the sub-VP
    (``iw_subvp_like_vp_sde``: the sub-VP's own are not in closed form)."""
    return VP(process.schedule, process.end_time)


def _ve_coordinate(process: VE, weighting: str, t: Array) -> Array:
    """The VE's IS coordinate, uniform under r(t): ll / un ``log(sigma^2 / (1 + sigma^2))``
    (r proportional to w_ll / (1 + sigma^2), the N(0, I) latent's residual; LSGM's ``ll_iw`` and
    ``drop_all_iw`` share it), re ``log(1 + sigma^2)`` (``drop_sigma2t_iw``)."""
    s2 = var(process, t)
    if weighting == "re":
        return jnp.log1p(s2)
    return jnp.log(s2) - jnp.log1p(s2)


def is_density(
    process: VP | SubVP | VE, weighting: str, t: Float[Array, " b"], t_min: float
) -> Float[Array, " b"]:
    """r(t) on [t_min, 1], normalised (exact closed form): on a VP proportional to
    w(t) (1 - sigma_t^2); on a sub-VP the VP analogue's; on a VE uniform in the coordinate of
    ``_ve_coordinate`` (w_ll / (1 + sigma^2) for ll and un, w_re / (1 + sigma^2) for re)."""
    t = jnp.asarray(t, jnp.float32)
    if weighting not in IS_WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; use {WEIGHTINGS}")
    if isinstance(process, SubVP):
        return is_density(vp_analogue(process), weighting, t, t_min)
    if isinstance(process, VE):
        s2, g2 = var(process, t), process.g2(t)
        lo = _ve_coordinate(process, weighting, jnp.float32(t_min))
        hi = _ve_coordinate(process, weighting, jnp.float32(process.t_max))
        du = g2 / (1.0 + s2) if weighting == "re" else g2 / (s2 * (1.0 + s2))
        return du / (hi - lo)
    s2, s2_lo, s2_hi = var(process, t), var(process, t_min), var(process, process.t_max)
    ds2 = process.g2(t) * (1.0 - s2)  # d sigma^2 / dt
    if weighting == "ll":
        return ds2 / s2 / (jnp.log(s2_hi) - jnp.log(s2_lo))
    if weighting == "re":
        return ds2 / (s2_hi - s2_lo)
    z = m2_integral(process, process.t_max) - m2_integral(process, t_min)
    return (1.0 - s2) / z


def is_sample(
    process: VP | SubVP | VE, weighting: str, key: jax.Array, n: int, t_min: float
) -> Float[Array, " n"]:
    """n draws of t ~ r(t) by the inverse CDF (log sigma^2 / sigma^2 / m^2-integral uniform on a
    VP and, through its VP analogue, a sub-VP; the ``_ve_coordinate`` uniform on a VE)."""
    if weighting not in IS_WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; use {WEIGHTINGS}")
    if isinstance(process, SubVP):
        return is_sample(vp_analogue(process), weighting, key, n, t_min)
    u = rng.uniform(key, (n,), jnp.float32)
    if isinstance(process, VE):
        lo = _ve_coordinate(process, weighting, jnp.float32(t_min))
        hi = _ve_coordinate(process, weighting, jnp.float32(process.t_max))
        c = lo + u * (hi - lo)
        s2 = jnp.expm1(c) if weighting == "re" else 1.0 / jnp.expm1(-c)
        return jnp.clip(inv_var(process, s2), t_min, process.t_max)
    s2_lo, s2_hi = var(process, t_min), var(process, process.t_max)
    if weighting == "ll":
        t = inv_var(process, jnp.exp(jnp.log(s2_lo) + u * (jnp.log(s2_hi) - jnp.log(s2_lo))))
    elif weighting == "re":
        t = inv_var(process, s2_lo + u * (s2_hi - s2_lo))
    elif isinstance(process.schedule, LinearSchedule):
        t = _m2_inverse_linear(process.schedule, u, t_min, process.t_max)
    else:  # no elementary inverse for the geometric VP: bisection on the closed-form CDF
        a_lo, a_hi = m2_integral(process, t_min), m2_integral(process, process.t_max)
        target = a_lo + u * (a_hi - a_lo)
        t = invert_monotone(lambda s: m2_integral(process, s), target, t_min, process.t_max)
    return jnp.clip(t, t_min, process.t_max)


def sample_t(
    process: VP, weighting: str, sampling: str, key: jax.Array, n: int, t_min: float
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """Times and their inverse density 1/r(t): ``E[w(t) l(t) / r(t)] = int w l dt``."""
    if sampling == "uniform":
        t = rng.uniform(key, (n,), jnp.float32, t_min, process.t_max)
        return t, jnp.full((n,), process.t_max - t_min, jnp.float32)
    if sampling != "iw":
        raise ValueError(f"unknown t sampling {sampling!r}; use {SAMPLINGS}")
    t = is_sample(process, weighting, key, n, t_min)
    return t, 1.0 / is_density(process, weighting, t, t_min)


# ----------------------------------------------------------------------------------------------
# Mixed score (Sec. 3.2)


def mixed_eps(
    eps_net: Float[Array, "b ... c"],
    mixing_logit: Float[Array, " c"],
    z_t: Float[Array, "b ... c"],
    var_t: Float[Array, " b"],
) -> Float[Array, "b ... c"]:
    """``(1 - alpha) sigma_t z_t + alpha eps'``, alpha = sigmoid(logit) per (last-axis) channel.

    Kept for callers that hold sigma_t^2; new code uses
    ``LSGMMixed(mixing_logit).eps(process, eps_net, z_t, t)``, which computes the same.
    """
    return lsgm_mix(eps_net, mixing_logit, z_t, var_t)


def normal_eps(
    process: VP | SubVP | VE, z_t: Float[Array, "b ... c"], t: Float[Array, " b"]
) -> Float[Array, "b ... c"]:
    """The exact eps of N(0, I) latents, ``sigma_t z_t / (alpha_t^2 + sigma_t^2)``: sigma_t z_t on
    a VP; LSGM's ``mixing_component`` of the sub-VP and (sigma2_0 aside) the VE."""
    t = jnp.asarray(t, jnp.float32)
    s2 = bcast(var(process, t), z_t)
    return jnp.sqrt(s2) * z_t / (jnp.exp(2.0 * bcast(process.log_alpha(t), z_t)) + s2)


def process_mixed_eps(
    process: VP | SubVP | VE,
    eps_net: Float[Array, "b ... c"],
    mixing_logit: Float[Array, " c"],
    z_t: Float[Array, "b ... c"],
    t: Float[Array, " b"],
) -> Float[Array, "b ... c"]:
    """``(1 - alpha) normal_eps + alpha eps'`` per channel (Sec. 3.2); on a VP exactly
    ``LSGMMixed(mixing_logit).eps`` (sigma_t z_t, no division)."""
    if isinstance(process, VP):
        return lsgm_mix(eps_net, mixing_logit, z_t, var(process, t))
    a = jax.nn.sigmoid(mixing_logit.astype(jnp.float32))
    return (1.0 - a) * normal_eps(process, z_t, t) + a * eps_net.astype(jnp.float32)


def score_from_eps(process: VP, eps_fn: EpsFn) -> Callable[[Array, Array], Array]:
    """``score(z, t) = -eps_theta(z, t) / sigma_t`` for samplers and likelihood."""

    def score(z, t):
        tb = jnp.broadcast_to(jnp.asarray(t, jnp.float32), z.shape[:1])
        return -eps_fn(z, tb) / jnp.sqrt(bcast(var(process, tb), z))

    return score


# ----------------------------------------------------------------------------------------------
# The latent-variable terms of the ELBO


def log_normal(z: Array, mu: Array, log_sigma: Array) -> Float[Array, " b"]:
    """log N(z; mu, sigma^2), summed over all but the batch axis."""
    r = (z - mu) * jnp.exp(-log_sigma)
    return batch_sum(-0.5 * r**2 - log_sigma - 0.5 * math.log(2 * math.pi))


def normal_cross_entropy(mu: Array, log_sigma: Array) -> Float[Array, " b"]:
    """Analytic E_q[-log N(z; 0, I)] of q = N(mu, sigma^2): the CE of groups left Normal."""
    return batch_sum(0.5 * (mu**2 + jnp.exp(2 * log_sigma)) + 0.5 * math.log(2 * math.pi))


def normal_kl(mu: Array, log_sigma: Array) -> Float[Array, " b"]:
    """Analytic KL(N(mu, sigma^2) || N(0, I)) (stage 1, the VAE with a Normal prior)."""
    return batch_sum(0.5 * (mu**2 + jnp.exp(2 * log_sigma) - 1.0) - log_sigma)


class LSGMObjective(eqx.Module):
    """The two LSGM objectives on a VP process (pure functions of an ``eps_fn``).

    * :meth:`cross_entropy` -- the encoder's (and the ELBO's) CE, always likelihood-weighted,
      with t uniform or importance sampled (``q_sampling``; LSGM's ``iw_sample_q`` ll_uniform /
      ll_iw);
    * :meth:`sgm_loss` -- the score model's objective with ``p_weighting`` (ll / un / re) and
      ``p_sampling`` (iw / uniform), on latents the caller has detached.

    Args:
      process: ``VP(LinearSchedule())`` (then ``t_min = 0.01``) or ``VP(GeometricSchedule())``
        (``t_min = 0``).
    """

    process: VP
    q_sampling: str = eqx.field(static=True, default="iw")
    p_weighting: str = eqx.field(static=True, default="ll")
    p_sampling: str = eqx.field(static=True, default="iw")
    t_min: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        if self.p_weighting not in WEIGHTINGS:
            raise ValueError(f"unknown p_weighting {self.p_weighting!r}; use {WEIGHTINGS}")
        if self.p_sampling not in SAMPLINGS:
            raise ValueError(f"unknown p_sampling {self.p_sampling!r}; use {SAMPLINGS}")
        if self.q_sampling not in Q_SAMPLINGS:
            raise ValueError(f"unknown q_sampling {self.q_sampling!r}; use {Q_SAMPLINGS}")
        if self.p_weighting == "rescale" and self.p_sampling != "uniform":
            raise ValueError("p_weighting 'rescale' (rescale_iw) samples t uniformly")
        if not isinstance(self.process, VP) and self.t_min <= 0.0:
            raise ValueError(
                f"LSGM on a {type(self.process).__name__} needs t_min > 0 (sigma^2(0) = 0; "
                "LSGM's time_eps 0.01)"
            )

    @property
    def joint(self) -> bool:
        """Whether p's objective is q's, so that one backward pass serves both networks."""
        same_t = self.p_sampling == self.q_sampling or self.q_sampling == "reweight_p"
        return self.p_weighting == "ll" and same_t

    @property
    def shares_draws(self) -> bool:
        """Whether q reweights p's (t, eps) draws: p's loss must get the key of q's CE."""
        return self.q_sampling == "reweight_p"

    def q_times(self, key: jax.Array, n: int) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """q's times and inverse densities: its own draw of r_ll (or uniform), or p's draws
        (``reweight_p``), whose weight w_ll / r_p keeps the CE unbiased (LSGM's
        ``obj_weight_t_ll``)."""
        if self.q_sampling == "reweight_p":
            return sample_t(self.process, self.p_weighting, self.p_sampling, key, n, self.t_min)
        return sample_t(self.process, "ll", self.q_sampling, key, n, self.t_min)

    def ce_constant(self, num_dims: int) -> float | Array:
        """D/2 log(2 pi e sigma^2(t_min)) (Theorem 1; ``cross_entropy_const(time_eps)``)."""
        return 0.5 * num_dims * (1.0 + jnp.log(2 * math.pi * var(self.process, self.t_min)))

    def _residual_sq(self, eps_fn: EpsFn, key, z0, t) -> Float[Array, " b"]:
        kernel = self.process.marginal(z0, t)
        z_t, eps = kernel.sample(key)
        return batch_sum((eps_fn(z_t, t) - eps) ** 2)

    def cross_entropy(
        self, eps_fn: EpsFn, key: jax.Array, z0: Float[Array, "b ..."]
    ) -> tuple[Float[Array, " b"], dict[str, Any]]:
        """CE(q(z_0|x) || p_theta(z_0)) per example, one t and one eps each (Theorem 1).

        Returns ``(ce, aux)``; ``aux['t']`` are the times, ``aux['dsm']`` the weighted term.
        """
        k_t, k_e = rng.split(key)
        t, inv_r = self.q_times(k_t, z0.shape[0])
        sq = self._residual_sq(eps_fn, k_e, z0, t)
        dsm = weight(self.process, "ll", t) * inv_r * sq
        d = z0.size // z0.shape[0]
        return dsm + self.ce_constant(d), {"t": t, "dsm": dsm}

    def sgm_loss(
        self, eps_fn: EpsFn, key: jax.Array, z0: Float[Array, "b ..."]
    ) -> tuple[Float[Array, " b"], dict[str, Any]]:
        """The score model's objective int w_p(t) E||eps - eps_theta||^2 dt, importance sampled.

        With ``p_weighting='ll'`` it equals the CE minus its constant; ``un`` / ``re`` change the
        gradient's weighting over t (better samples, no longer a bound).
        """
        k_t, k_e = rng.split(key)
        t, inv_r = sample_t(
            self.process, self.p_weighting, self.p_sampling, k_t, z0.shape[0], self.t_min
        )
        sq = self._residual_sq(eps_fn, k_e, z0, t)
        return weight(self.process, self.p_weighting, t) * inv_r * sq, {"t": t}


def negative_elbo(
    recon_nll: Float[Array, " b"],
    log_q: Float[Array, " b"],
    cross_entropy: Float[Array, " b"],
    kl_coeff: float | Array = 1.0,
) -> tuple[Float[Array, " b"], Float[Array, " b"]]:
    """(training loss, -ELBO): recon + kl_coeff (log q + CE), and the same with kl_coeff = 1."""
    kl = log_q + cross_entropy
    return recon_nll + kl_coeff * kl, recon_nll + kl


# ----------------------------------------------------------------------------------------------
# NVAE's KL balancing (Vahdat & Kautz 2020, Sec. 3.2 / App. A; LSGM's train_vae.py)


def kl_balance_alpha(num_scales: int, groups_per_scale: int) -> Float[Array, " g"]:
    """The 'square' balancing weights alpha_l, top group first: 4^s / G for the G groups of
    scale s (0 the smallest), divided by their minimum (so 4^s with equal group counts)."""
    a = jnp.concatenate(
        [jnp.full((groups_per_scale,), 4.0**s / groups_per_scale) for s in range(num_scales)]
    )
    return a / a.min()


def kl_balance_coeffs(
    kl_all: Float[Array, "b g"], alpha: Float[Array, " g"], kl_coeff: float | Array
) -> Float[Array, " g"]:
    """Per-group KL multipliers gamma_l (no gradient) while ``kl_coeff < 1``, else ones.

    gamma_l proportional to (E_b|KL_l| + 0.01) / alpha_l, scaled to mean 1: groups that carry
    little KL are penalised less (fewer inactive groups); the training KL is
    ``kl_coeff * sum_l gamma_l KL_l``.
    """
    kl_all = jax.lax.stop_gradient(kl_all)
    c = jnp.mean(jnp.abs(kl_all), axis=0) + 0.01
    g = c / alpha * jnp.sum(c)
    g = g / jnp.mean(g)
    return jnp.where(jnp.asarray(kl_coeff) < 1.0, g, jnp.ones_like(g))
