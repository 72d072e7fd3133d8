"""Critically-damped Langevin diffusion (CLD; Dockhorn, Vahdat & Kreis, ICLR 2022).

The state is ``y = (x, v)``: data x and a velocity v of the same shape. The forward SDE (Eq. 5)

    dx = beta(t) M^-1 v dt
    dv = -beta(t) x dt - beta(t) Gamma M^-1 v dt + sqrt(2 Gamma beta(t)) dW

is critically damped (Gamma^2 = 4 M): its drift matrix ``beta A`` with
``A = [[0, 4 g^2], [-1, -4 g]]`` (g = 1 / Gamma) has the double eigenvalue -2g. Every coordinate
pair (x_i, v_i) evolves by the same 2x2 linear SDE, so the perturbation kernel is Gaussian with a
2x2 covariance shared by all coordinates (App. B.1 of the paper).

Closed forms used here (derived in the reduced variables z = 4 g B, w = z / 2, B = int_0^t beta):

    Phi   = exp(B A) = e^{-w} [[1 + w, 2 g w], [-Gamma w / 2, 1 - w]]
    Q_xx  = P3(z)                                  (regularised lower incomplete gamma P(3, z))
    Q_xv  = Gamma w^2 e^{-z}
    Q_vv  = Gamma^2 (w e^{-z} + P3(z) / 4)
    det Q = Gamma^2 e^{-z} (sinh w - w)(sinh w + w)

where Q is the covariance of the noise accumulated from time 0; with an initial covariance
``Sigma_0 = diag(s_x, s_v)`` the kernel covariance is ``Phi Sigma_0 Phi^T + Q``, whose
determinant is a sum of non-negative terms (``_kernel_cov``). These forms are algebraically
equal to Eq. (54)-(56) of the paper but, unlike them, do not cancel at small t: P3, sinh w - w
use series below z = 3, w = 2. So the kernel, its Cholesky factor and ell_t are accurate to
a few float32 ulps for t down to 1e-7 without float64 (tests/test_cld.py lists the accuracy).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff import rng
from jaxdiff.processes.base import (
    CLD_KERNEL,
    EXACT_LINEAR_FLOW,
    SDE,
    Gaussian,
    Process,
    batch_sum,
    bcast,
)

CLDState = tuple[Float[Array, "b ..."], Float[Array, "b ..."]]

_LOG_2PI = math.log(2.0 * math.pi)

# ----------------------------------------------------------------------------------------------
# Cancellation-free special functions of the kernel.


def _p3(z: Array) -> Array:
    """P(3, z) = 1 - e^{-z} (1 + z + z^2 / 2), by its series e^{-z} sum_{k>=3} z^k / k! below 3."""
    zs = jnp.minimum(z, 3.0)
    term = zs**3 / 6.0
    total = term
    for k in range(4, 28):  # the last term is < 1e-12 of the sum at z = 3
        term = term * zs / k
        total = total + term
    series = jnp.exp(-zs) * total
    closed = 1.0 - jnp.exp(-z) * (1.0 + z + 0.5 * z**2)
    return jnp.where(z < 3.0, series, closed)


def _sinh_minus_id(w: Array) -> Array:
    """sinh(w) - w, by its series sum_{j>=1} w^{2j+1} / (2j+1)! below 2."""
    ws = jnp.minimum(w, 2.0)
    term = ws**3 / 6.0
    total = term
    for k in range(5, 30, 2):
        term = term * ws**2 / ((k - 1) * k)
        total = total + term
    return jnp.where(w < 2.0, total, jnp.sinh(w) - w)


class _Kernel(eqx.Module):
    """Phi (the mean map) and Q (the accumulated noise covariance) over an integrated beta B."""

    w: Array  # 2 g B
    e2: Array  # e^{-z} = e^{-2w}
    p3: Array  # P(3, z)
    phi_xx: Array
    phi_xv: Array
    phi_vx: Array
    phi_vv: Array
    q_xx: Array
    q_xv: Array
    q_vv: Array
    det_q: Array


def _ou_kernel(big_b: Array, m_inv: float) -> _Kernel:
    """Phi = exp(B A) and Q = int_0^B exp(sA) diag(0, 2 Gamma) exp(sA)^T ds (App. B.1)."""
    gam = 2.0 / math.sqrt(m_inv)  # critical damping Gamma = 2 sqrt(M)
    g = 1.0 / gam
    w = 2.0 * g * big_b
    e = jnp.exp(-w)
    e2 = jnp.exp(-2.0 * w)
    p3 = _p3(2.0 * w)
    smw = _sinh_minus_id(w)
    return _Kernel(
        w=w,
        e2=e2,
        p3=p3,
        phi_xx=e * (1.0 + w),
        phi_xv=e * 2.0 * g * w,
        phi_vx=-e * 0.5 * gam * w,
        phi_vv=e * (1.0 - w),
        q_xx=p3,
        q_xv=gam * w**2 * e2,
        q_vv=gam**2 * (w * e2 + 0.25 * p3),
        det_q=gam**2 * e2 * smw * (smw + 2.0 * w),
    )


def _kernel_cov(k: _Kernel, var0x: Array, var0v: Array):
    """(Sigma_xx, Sigma_xv, Sigma_vv, det Sigma) of ``Phi diag(var0x, var0v) Phi^T + Q``.

    ``det(Q + P) = det Q + tr(adj(Q) P) + det P`` for 2x2 matrices. With P = Phi Sigma_0 Phi^T,
    ``tr(adj(Q) P) = var0x psi^T adj(Q) psi + var0v phi^T adj(Q) phi`` (psi, phi the columns of
    Phi), each written as a sum of non-negative terms, so det Sigma keeps full relative accuracy
    where Sigma_xx Sigma_vv - Sigma_xv^2 cancels (HSM at t < 1e-3 loses 3-4 digits that way).
    """
    s_xx = k.q_xx + k.phi_xx**2 * var0x + k.phi_xv**2 * var0v
    s_xv = k.q_xv + k.phi_xx * k.phi_vx * var0x + k.phi_xv * k.phi_vv * var0v
    s_vv = k.q_vv + k.phi_vx**2 * var0x + k.phi_vv**2 * var0v
    # psi^T adj(Q) psi = Q_vv Phi_xx^2 + 2 Q_xv Phi_xx (-Phi_vx) + Q_xx Phi_vx^2 (all terms >= 0).
    quad_x = k.q_vv * k.phi_xx**2 - 2.0 * k.q_xv * k.phi_xx * k.phi_vx + k.q_xx * k.phi_vx**2
    # phi^T adj(Q) phi = e^{-2w} (4 w^4 e^{-2w} + P3 (w^2 + (1 - w)^2)): the direct form
    # Phi_xv^2 Q_vv - 2 Phi_xv Phi_vv Q_xv + Phi_vv^2 Q_xx cancels at small w.
    w = k.w
    quad_v = k.e2 * (4.0 * w**4 * k.e2 + k.p3 * (w**2 + (1.0 - w) ** 2))
    # det Phi = e^{-2w}.
    det = k.det_q + var0x * quad_x + var0v * quad_v + k.e2**2 * var0x * var0v
    return s_xx, s_xv, s_vv, det


# ----------------------------------------------------------------------------------------------
# The Gaussian over (x, v) with a 2x2 covariance shared by every coordinate


class CLDGaussian(Gaussian):
    """N(mean, Sigma (x) I) over ``(x, v)``, Sigma 2x2 per coordinate, given by its Cholesky L.

    ``L = [[l_xx, 0], [l_xv, l_vv]]``; ``ell = 1 / l_vv`` is the paper's ell_t (Eq. 16): the
    velocity score of the kernel at ``y = mean + L eps`` is ``-ell eps_v``.
    """

    mean_x: Float[Array, "b ..."]
    mean_v: Float[Array, "b ..."]
    l_xx: Float[Array, "..."]
    l_xv: Float[Array, "..."]
    l_vv: Float[Array, "..."]

    @classmethod
    def from_cov(cls, mean_x, mean_v, s_xx, s_xv, s_vv, det) -> CLDGaussian:
        """From the covariance entries and its determinant (which fixes l_vv accurately)."""
        l_xx = jnp.sqrt(s_xx)
        return cls(mean_x, mean_v, l_xx, s_xv / l_xx, jnp.sqrt(det / s_xx))

    @property
    def cov_xx(self) -> Array:
        return self.l_xx**2

    @property
    def cov_xv(self) -> Array:
        return self.l_xx * self.l_xv

    @property
    def cov_vv(self) -> Array:
        return self.l_xv**2 + self.l_vv**2

    @property
    def ell(self) -> Array:
        """ell_t = sqrt(Sigma_xx / det Sigma) = 1 / L_vv."""
        return 1.0 / self.l_vv

    def sample(self, key: jax.Array) -> tuple[CLDState, CLDState]:
        kx, kv = rng.split(key)
        ex = rng.normal(kx, self.mean_x.shape, self.mean_x.dtype)
        ev = rng.normal(kv, self.mean_v.shape, self.mean_v.dtype)
        return self.apply_noise((ex, ev)), (ex, ev)

    def apply_noise(self, eps: CLDState) -> CLDState:
        """``mean + L eps``."""
        ex, ev = eps
        return self.mean_x + self.l_xx * ex, self.mean_v + self.l_xv * ex + self.l_vv * ev

    def whiten(self, y: CLDState) -> CLDState:
        """``L^{-1} (y - mean)``."""
        zx = (y[0] - self.mean_x) / self.l_xx
        zv = (y[1] - self.mean_v - self.l_xv * zx) / self.l_vv
        return zx, zv

    def log_prob(self, y: CLDState) -> Float[Array, " b"]:
        zx, zv = self.whiten(y)
        per = -0.5 * (zx**2 + zv**2) - jnp.log(self.l_xx) - jnp.log(self.l_vv) - _LOG_2PI
        return batch_sum(jnp.broadcast_to(per, zx.shape))

    def score(self, y: CLDState) -> CLDState:
        return self.score_from_noise(self.whiten(y))

    def score_from_noise(self, eps: CLDState) -> CLDState:
        """``-L^{-T} eps``: (-(eps_x - l_xv eps_v / l_vv) / l_xx, -eps_v / l_vv)."""
        ex, ev = eps
        sv = -ev / self.l_vv
        sx = -(ex + self.l_xv * sv) / self.l_xx
        return sx, sv


# ----------------------------------------------------------------------------------------------
# The process


class CLD(Process):
    """Critically-damped Langevin diffusion on ``y = (x, v)`` (Dockhorn et al. 2022, Eq. 5).

    Args:
      m_inv: inverse mass M^-1 (4: M = 0.25, Gamma = 1).
      gamma: initial velocity scale, v_0 ~ N(0, gamma M I) (0.04).
      beta0, beta1: beta(t) = beta0 + beta1 t (constant 4 for CIFAR-10 and toy data;
        0.1 + 6.9 t in the post-paper CelebA-HQ-256 config).
      numerical_eps: added to Sigma_xx and Sigma_vv of every kernel, as the official code does
        (1e-9 CIFAR-10, 1e-6 toy / CelebA); 0 gives the exact kernel. SSCS's half-steps take
        their own ``num_stab`` instead (the official ``sscs_num_stab``, default 0).

    Capabilities: noise enters only v (no ``noise_in_every_coordinate``); the reverse linear
    part is solved exactly by ``reverse_linear_step`` (``exact_linear_flow``, for SSCS).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({SDE, EXACT_LINEAR_FLOW, CLD_KERNEL})

    m_inv: float = 4.0
    gamma: float = 0.04
    beta0: float = 4.0
    beta1: float = 0.0
    numerical_eps: float = 0.0

    # -- constants and schedule ----------------------------------------------------------------

    @property
    def mass(self) -> float:
        return 1.0 / self.m_inv

    @property
    def damping(self) -> float:
        """Gamma = 2 sqrt(M) (critical damping)."""
        return 2.0 / math.sqrt(self.m_inv)

    @property
    def var0v(self) -> float:
        """gamma M, the variance of v_0."""
        return self.gamma / self.m_inv

    def beta(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        return self.beta0 + self.beta1 * jnp.asarray(t, jnp.float32)

    def beta_int(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """B(t) = int_0^t beta(s) ds."""
        t = jnp.asarray(t, jnp.float32)
        return t * (self.beta0 + 0.5 * self.beta1 * t)

    def beta_int_between(self, t_hi: Array, t_lo: Array) -> Array:
        """B(t_hi) - B(t_lo), without the cancellation of the difference of two integrals."""
        return (t_hi - t_lo) * (self.beta0 + 0.5 * self.beta1 * (t_hi + t_lo))

    # -- SDE -----------------------------------------------------------------------------------

    def drift(self, y: CLDState, t: Float[Array, "..."]) -> CLDState:
        """Eq. (5): (beta M^-1 v, -beta x - beta Gamma M^-1 v)."""
        x, v = y
        b = bcast(self.beta(t), x)
        return b * self.m_inv * v, -b * x - b * self.damping * self.m_inv * v

    def diffusion(self, y: CLDState, t: Float[Array, "..."]) -> CLDState:
        """(0, sqrt(2 Gamma beta(t))): noise enters only the velocity."""
        x, _ = y
        g = jnp.sqrt(2.0 * self.damping * bcast(self.beta(t), x))
        return jnp.zeros_like(g), g

    # -- perturbation kernels ------------------------------------------------------------------

    def kernel_cov(
        self, t: Float[Array, "..."], var0x: Any = 0.0, var0v: Any = None
    ) -> tuple[Array, Array, Array, Array]:
        """(Sigma_xx, Sigma_xv, Sigma_vv, det Sigma) of p(y_t | y_0 ~ N(mu_0, diag(var0x, var0v))).

        Eq. (54)-(56) of the paper (with ``numerical_eps`` added to the diagonal); ``var0v``
        defaults to gamma M (HSM). Shapes follow ``t`` (and ``var0x``).
        """
        var0v = self.var0v if var0v is None else var0v
        k = _ou_kernel(self.beta_int(t), self.m_inv)
        s_xx, s_xv, s_vv, det = _kernel_cov(k, var0x, var0v)
        eps = self.numerical_eps
        if eps:
            det = det + eps * (s_xx + s_vv) + eps**2
            s_xx, s_vv = s_xx + eps, s_vv + eps
        return s_xx, s_xv, s_vv, det

    def ell(self, t: Float[Array, "..."], var0v: Any = None) -> Float[Array, "..."]:
        """ell_t = sqrt(Sigma_xx / det Sigma) (Eq. 16): gamma M for HSM (default), 0 for DSM."""
        s_xx, _, _, det = self.kernel_cov(t, 0.0, var0v)
        return jnp.sqrt(s_xx / det)

    def kernel(
        self,
        x0: Float[Array, "b ..."],
        v0: Float[Array, "b ..."] | None,
        t: Float[Array, "..."],
        var0x: Any = 0.0,
        var0v: Any = 0.0,
    ) -> CLDGaussian:
        """p(y_t | y_0) for y_0 ~ N((x0, v0), diag(var0x, var0v) (x) I); v0 None means 0."""
        k = _ou_kernel(self.beta_int(t), self.m_inv)
        mean_x = bcast(k.phi_xx, x0) * x0
        mean_v = bcast(k.phi_vx, x0) * x0
        if v0 is not None:
            mean_x = mean_x + bcast(k.phi_xv, x0) * v0
            mean_v = mean_v + bcast(k.phi_vv, x0) * v0
        var0x = jnp.asarray(var0x, jnp.float32)
        var0v = jnp.asarray(var0v, jnp.float32)
        s_xx, s_xv, s_vv, det = _kernel_cov(k, var0x, var0v)
        eps = self.numerical_eps
        if eps:
            det = det + eps * (s_xx + s_vv) + eps**2
            s_xx, s_vv = s_xx + eps, s_vv + eps
        s_xx, s_xv, s_vv, det = (bcast(a, x0) for a in (s_xx, s_xv, s_vv, det))
        return CLDGaussian.from_cov(mean_x, mean_v, s_xx, s_xv, s_vv, det)

    def marginal(self, x0: Float[Array, "b ..."], t: Float[Array, "..."], var0=0.0) -> CLDGaussian:
        """The HSM kernel p(y_t | x_0) (App. B.3): v_0 ~ N(0, gamma M) integrated out.

        ``var0`` widens the data point into N(x0, var0 I) (exact Gaussian-mixture scores).
        """
        return self.kernel(x0, None, t, var0x=var0, var0v=self.var0v)

    def dsm_marginal(
        self, x0: Float[Array, "b ..."], v0: Float[Array, "b ..."], t: Float[Array, "..."]
    ) -> CLDGaussian:
        """The DSM kernel p(y_t | x_0, v_0) (Sigma_0 = 0)."""
        return self.kernel(x0, v0, t, 0.0, 0.0)

    # -- prior and data ------------------------------------------------------------------------

    def prior(self, shape: tuple[int, ...]) -> CLDGaussian:
        """N(0, I) x N(0, M I), the stationary law."""
        zeros = jnp.zeros(shape, jnp.float32)
        one = jnp.float32(1.0)
        return CLDGaussian(zeros, zeros, one, jnp.float32(0.0), jnp.float32(math.sqrt(self.mass)))

    def data(self, y: CLDState) -> Float[Array, "b ..."]:
        return y[0]

    # -- the linear part, exactly (SSCS, gDDIM) ------------------------------------------------

    def transition(self, t_hi: Array, t_lo: Array) -> _Kernel:
        """The forward linear flow from ``t_lo`` to ``t_hi``: ``Phi`` (``phi_xx`` ...), the noise
        covariance ``Q`` (``q_xx``, ``q_xv``, ``q_vv``, ``det_q``) and ``w = 2 B / Gamma``
        (App. B.1); gDDIM's exponential integrator is built from them."""
        return _ou_kernel(self.beta_int_between(t_hi, t_lo), self.m_inv)

    def reverse_linear_kernel(
        self, y: CLDState, t_from: Array, t_to: Array, num_stab: Any = None
    ) -> CLDGaussian:
        """The law of the reverse-time linear part's exact solution from forward time t_from to
        t_to < t_from, started at ``y``.

        Part A of the SSCS splitting (Sec. 3.3, Eq. 20 of the paper): in reverse time
        ``dx = -beta M^-1 v, dv = beta x - beta Gamma M^-1 v + sqrt(2 Gamma beta) dW``, which is
        the forward CLD in (-x, v): mean ``(Phi_xx x - Phi_xv v, -Phi_vx x + Phi_vv v)`` and
        covariance Q with Q_xv negated, over ``delta = B(t_from) - B(t_to)``. ``num_stab`` is
        added to Q_xx and Q_vv (None: ``numerical_eps``; SSCS passes its own, default 0).
        """
        x, v = y
        k = _ou_kernel(self.beta_int_between(t_from, t_to), self.m_inv)
        eps = self.numerical_eps if num_stab is None else num_stab
        # Adding eps = 0 is exact, so no branch: eps may also be traced.
        det = k.det_q + eps * (k.q_xx + k.q_vv) + eps**2
        s_xx, s_vv = k.q_xx + eps, k.q_vv + eps
        mean_x = k.phi_xx * x - k.phi_xv * v
        mean_v = -k.phi_vx * x + k.phi_vv * v
        # Q can be exactly 0 for a zero-length step: guard the Cholesky.
        tiny = jnp.finfo(jnp.float32).tiny
        l_xx = jnp.sqrt(s_xx)
        l_xv = jnp.where(s_xx > 0, -k.q_xv / jnp.maximum(l_xx, tiny), 0.0)
        l_vv = jnp.sqrt(jnp.where(s_xx > 0, det / jnp.maximum(s_xx, tiny), s_vv))
        return CLDGaussian(mean_x, mean_v, l_xx, l_xv, l_vv)

    def reverse_linear_step(
        self, key: jax.Array, y: CLDState, t_from: Array, t_to: Array, num_stab: Any = None
    ) -> CLDState:
        """A draw from ``reverse_linear_kernel(y, t_from, t_to, num_stab)`` (SSCS's A step)."""
        return self.reverse_linear_kernel(y, t_from, t_to, num_stab).sample(key)[0]
