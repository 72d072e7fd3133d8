"""Hybrid (and denoising) score matching for CLD (Dockhorn et al. 2022, Sec. 3.2, App. B.3).

Only the velocity score is learned, because noise enters only v. With the kernel
``y_t = mu_t + L_t eps`` the kernel's velocity score is ``-ell_t eps_v`` (Eq. 16), so

* **HSM** (Eq. 15): the kernel is p(y_t | x_0) with v_0 ~ N(0, gamma M) integrated out;
* **DSM**: v_0 ~ N(0, gamma M) is drawn and the kernel is p(y_t | x_0, v_0);

and the loss regresses the model's velocity score onto ``-ell_t eps_v``. The model's score is the
*mixed score* (Sec. 3.2): ``s(y, t) = -v / Sigma~_vv(t) - ell_t net([x, v], t)``, with Sigma~_vv
the HSM kernel's vv-variance for data at 0 (the official code's choice, var0x = 0) and ell_t
the objective's own (HSM or DSM) ell_t; without mixing ``s = -ell_t net``. Both are the
parameterisation object ``CLDMixed(mixed)`` (``jaxdiff.objectives.parameterisation``).

Weightings (App. B.3; ``s`` is the full model score, r = s / (-ell_t) - eps_v):

* ``reweightedv2`` (default): lambda(t) = ell_t^-2, i.e. ``|r|^2``;
* ``reweightedv1``: ``Gamma beta(t) |r|^2``;
* ``likelihood``: lambda(t) = Gamma beta(t) (maximum likelihood, Eq. 13), i.e.
  ``Gamma beta(t) |s + ell_t eps_v|^2``.

Losses are summed over dimensions (``reduce='sum'``), t ~ U[t_min = 1e-5, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxdiff import rng
from jaxdiff.objectives.parameterisation import CLDMixed
from jaxdiff.objectives.time_sampling import uniform_t
from jaxdiff.processes.base import Process, batch_sum, bcast
from jaxdiff.processes.cld import CLD, CLDState
from jaxdiff.solvers.likelihood import bits_per_dim, log_likelihood

NetFn = Callable[..., Array]

OBJECTIVES = ("hsm", "dsm")
WEIGHTINGS = ("reweightedv2", "reweightedv1", "likelihood")


class HybridScoreMatching(eqx.Module):
    """CLD's score-matching objective: ``loss``, ``score_fn``, ``nll`` and ``net_channels``.

    Args:
      process: the CLD process.
      objective: ``hsm`` (default) or ``dsm``.
      weighting: ``reweightedv2`` (default), ``reweightedv1`` or ``likelihood``.
      parameterisation: ``CLDMixed(mixed=True)`` (default, as in every official config) or
        ``CLDMixed(False)`` for the plain ``-ell_t net``.
      t_min: training times t ~ U[t_min, 1].
      reduce: ``sum`` (official) or ``mean`` over dimensions.
    """

    process: CLD
    objective: str = eqx.field(static=True, default="hsm")
    weighting: str = eqx.field(static=True, default="reweightedv2")
    parameterisation: CLDMixed = CLDMixed(True)
    t_min: float = eqx.field(static=True, default=1e-5)
    reduce: str = eqx.field(static=True, default="sum")

    def __check_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown CLD objective {self.objective!r}; use {OBJECTIVES}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown CLD weighting {self.weighting!r}; use {WEIGHTINGS}")
        if self.reduce not in ("sum", "mean"):
            raise ValueError(f"reduce must be 'sum' or 'mean', got {self.reduce!r}")
        if not isinstance(self.parameterisation, CLDMixed):
            raise TypeError(f"parameterisation must be a CLDMixed, got {self.parameterisation!r}")

    # -- parameterisation ----------------------------------------------------------------------

    def net_channels(self, channels: int) -> tuple[int, int]:
        """The network reads concat([x, v], -1) and predicts eps_v: (2c, c)."""
        return 2 * channels, channels

    def ell(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """ell_t of the objective's kernel (HSM: v_0 integrated out; DSM: v_0 given)."""
        return self.process.ell(t, var0v=self.process.var0v if self.objective == "hsm" else 0.0)

    def base_var_vv(self, t: Float[Array, "..."]) -> Float[Array, "..."]:
        """Sigma~_vv(t): the HSM kernel's vv-variance with var0x = 0 (the mixed score's base)."""
        return self.parameterisation.base_var_vv(self.process, t)

    def velocity_score(
        self, net_fn: NetFn, y: CLDState, t: Float[Array, " b"], net_key=None
    ) -> Float[Array, "b ..."]:
        """Model velocity score ``-v / Sigma~_vv - ell_t net`` (mixed) or ``-ell_t net``."""
        x, v = y
        out = net_fn(jnp.concatenate([x, v], axis=-1), t, key=net_key)
        return self.parameterisation.velocity_score(self.process, out, v, t, self.ell(t))

    def score_fn(self, net_fn: NetFn) -> Callable[[CLDState, Array], CLDState]:
        """``score_fn(y, t) -> (0, s_v)`` for samplers and likelihood (t scalar or (b,)).

        The x-score is returned as zeros: the x-diffusion is 0, so no sampler uses it.
        """

        def score(y, t):
            x = y[0]
            tb = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
            return jnp.zeros_like(x), self.velocity_score(net_fn, y, tb)

        return score

    # -- loss ----------------------------------------------------------------------------------

    def perturb(self, key: jax.Array, x0: Float[Array, "b ..."], t: Float[Array, " b"]):
        """``(y_t, eps)`` from the HSM kernel, or from the DSM kernel with a fresh v_0."""
        k_v, k_y = rng.split(key)
        p = self.process
        if self.objective == "hsm":
            kernel = p.marginal(x0, t)
        else:
            v0 = math.sqrt(p.var0v) * rng.normal(k_v, x0.shape, x0.dtype)
            kernel = p.dsm_marginal(x0, v0, t)
        return kernel.sample(k_y)

    def loss(
        self, net_fn: NetFn, key: jax.Array, x0: Float[Array, "b ..."], net_key=None
    ) -> tuple[Float[Array, " b"], dict[str, Any]]:
        """Per-example weighted HSM / DSM loss (Eq. 15 with lambda(t); reduce with a batch mean)."""
        k_t, k_y = rng.split(key)
        p = self.process
        t = uniform_t(k_t, x0.shape[0], self.t_min, p.t_max)
        y, (_, eps_v) = self.perturb(k_y, x0, t)
        s = self.velocity_score(net_fn, y, t, net_key)
        ell = bcast(self.ell(t), eps_v)
        if self.weighting == "likelihood":
            r = s + ell * eps_v
        else:
            r = s / (-ell) - eps_v
        sq = batch_sum(r**2)
        if self.reduce == "mean":
            sq = sq / (r.size // r.shape[0])
        if self.weighting != "reweightedv2":
            sq = sq * p.damping * p.beta(t)  # Gamma beta(t), the ML weight
        return sq, {"t": t}

    # -- likelihood ----------------------------------------------------------------------------

    def nll(
        self, score_fn: Callable, key: jax.Array, x0: Float[Array, "b ..."], **opts: Any
    ) -> dict[str, float]:
        """Upper bound on -log p(x) (nats per example; bits/dim for images), App. B.5.

        ``opts`` go to ``jaxdiff.solvers.likelihood.log_likelihood`` (divergence, t_min, rtol,
        atol, solver, max_steps). For images the data are taken to be dequantised to [-1, 1]
        already (``jaxdiff.solvers.likelihood.dequantize``).
        """
        out = self.nll_arrays(score_fn, key, x0, **opts)
        res = {"nll": float(np.mean(out["nll"])), "nll_joint": float(np.mean(out["nll_joint"]))}
        res["nfe"] = int(out["nfe"])
        if "bpd" in out:
            res["bpd"] = float(np.mean(out["bpd"]))
        return res

    def nll_arrays(
        self, score_fn: Callable, key: jax.Array, x0: Float[Array, "b ..."], **opts: Any
    ) -> dict[str, Array]:
        """:meth:`nll` per example, traceable (the caller jits it once with the parameters as an
        argument): ``nll``, ``nll_joint`` (b,), ``nfe``, and ``bpd`` (b,) for images."""
        out = augmented_nll(self.process, score_fn, key, x0, **opts)
        res = {"nll": out.nll, "nll_joint": out.nll_joint, "nfe": out.nfe}
        if x0.ndim == 4:
            res["bpd"] = bits_per_dim(-out.nll, int(np.prod(x0.shape[1:])))
        return res


class _ConcatState(Process):
    """CLD with the state (x, v) stored as one array concat([x, v], -1).

    ``solvers.likelihood._flatten`` cannot yet split a multi-leaf state inside a trace
    (``jnp.split`` with traced indices), so the likelihood ODE runs on this single-array view;
    the dynamics, prior and score are CLD's, unchanged.
    """

    inner: CLD

    @staticmethod
    def split(z: Array) -> CLDState:
        d = z.shape[-1] // 2
        return z[..., :d], z[..., d:]

    def drift(self, y, t):
        return jnp.concatenate(self.inner.drift(self.split(y), t), axis=-1)

    def diffusion(self, y, t):
        x, v = self.split(y)
        gx, gv = self.inner.diffusion((x, v), t)
        return jnp.concatenate([jnp.broadcast_to(gx, x.shape), jnp.broadcast_to(gv, v.shape)], -1)

    def marginal(self, x0, t, var0=0.0):
        raise NotImplementedError("likelihood-only view of CLD")

    def prior(self, shape):
        raise NotImplementedError("likelihood-only view of CLD")

    def prior_logp(self, y):
        x, v = self.split(y)
        return self.inner.prior(x.shape).log_prob((x, v))

    def wrap_score(self, score_fn: Callable) -> Callable:
        return lambda z, t: jnp.concatenate(score_fn(self.split(z), t), axis=-1)


class CLDNLL(NamedTuple):
    nll: Float[Array, " b"]  # the bound on -log p(x), nats
    nll_joint: Float[Array, " b"]  # -log p(x, v_0) of the augmented ODE, nats
    nfe: Array


def velocity_entropy(process: CLD, num_dims: int) -> float:
    """H(N(0, gamma M I_d)) = d/2 (1 + log(2 pi gamma M))."""
    return 0.5 * num_dims * (1.0 + math.log(2.0 * math.pi * process.var0v))


def augmented_nll(
    process: CLD,
    score_fn: Callable,
    key: jax.Array,
    x0: Float[Array, "b ..."],
    v0: Float[Array, "b ..."] | None = None,
    *,
    divergence: str = "hutchinson_rademacher",
    t_min: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: dfx.AbstractSolver | None = None,
    max_steps: int = 4096,
) -> CLDNLL:
    """``-log p(x) <= -log p(x, v_0) - H(q(v_0))`` with one v_0 ~ q = N(0, gamma M) (App. B.5).

    -log p(x, v_0) comes from the probability-flow ODE on the joint state (x, v_0) from t_min to 1
    (``log_likelihood``); subtracting the entropy of q gives the bound, in expectation over v_0.
    """
    k_v, k_div = rng.split(key)
    if v0 is None:
        v0 = math.sqrt(process.var0v) * rng.normal(k_v, x0.shape, jnp.float32)
    flat = _ConcatState(process)
    out = log_likelihood(
        flat,
        flat.wrap_score(score_fn),
        jnp.concatenate([x0, v0], axis=-1),
        k_div,
        divergence=divergence,
        t_min=t_min,
        rtol=rtol,
        atol=atol,
        solver=dfx.Tsit5() if solver is None else solver,
        max_steps=max_steps,
    )
    d = int(np.prod(x0.shape[1:]))
    nll_joint = -out.logp
    return CLDNLL(nll_joint - velocity_entropy(process, d), nll_joint, out.nfe)
