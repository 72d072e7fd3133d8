"""Denoising diffusion GANs (Xiao, Kreis & Vahdat, ICLR 2022) as trainer hooks.

A generator ``G(x_{t+1}, t, z) -> x0`` (z ~ N(0, I_nz)) defines the implicit denoiser
``p(x_t | x_{t+1}) = int p(z) q(x_t | x_{t+1}, x0 = G(x_{t+1}, t, z)) dz`` (Sec. 3.3), trained
against a time-conditional discriminator ``D(x_t, x_{t+1}, t)`` on T <= 8 large steps of the
discrete VP chain (``jaxdiff.processes.discrete``). Labels t are 0-based (the less noisy member).

A step is the official alternating update in two phases that the trainer runs in order: a D
step on a real pair and a fake pair (+ lazy R1 on the real x_t), then a G step on a *fresh* t,
pair and z against the updated D, then the EMA of G (``jaxdiff.train.step``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float, Int, Key

from jaxdiff import rng
from jaxdiff.nets.functional import PureNet, ShapeOnlyRngs, functional, init_params
from jaxdiff.objectives.ddgan import d_loss, g_loss, lazy_r1_penalty
from jaxdiff.processes.discrete import DiscreteChain
from jaxdiff.train.protocol import Method, PhaseGrads
from jaxdiff.train.sampling import draw
from jaxdiff.train.state import TrainState, create_state

GFn = Callable[[Array, Int[Array, " b"], Float[Array, "b nz"]], Array]


# ----------------------------------------------------------------------------------------------
# Sampling (T steps, fresh z at every step; NFE = T)


def ddgan_sample_from(
    chain: DiscreteChain,
    g_fn: GFn,
    x_T: Float[Array, "b ..."],
    zs: Float[Array, "T b nz"],
    noises: Float[Array, "T b ..."],
) -> Float[Array, "b ..."]:
    """Deterministic core of the sampler, given x_T, one z and one posterior noise per step.

    For labels i = T-1 .. 0 (``zs[i]``, ``noises[i]``): ``x0 = G(x, i, z_i)`` and
    ``x <- mean + std * noise_i`` of q(x_i | x_{i+1}, x0) (Sec. 3.3; std is 0 at i = 0).
    A ``lax.scan`` over the steps; returns x_0.
    """
    b = x_T.shape[0]

    def step(x, inp):
        i, z, noise = inp
        label = jnp.full((b,), i, jnp.int32)
        post = chain.posterior(g_fn(x, label, z), x, label)
        return post.mean + post.std * noise, None

    labels = jnp.arange(chain.num_steps - 1, -1, -1, dtype=jnp.int32)
    x, _ = jax.lax.scan(step, x_T.astype(jnp.float32), (labels, zs[::-1], noises[::-1]))
    return x


def ddgan_sample(
    chain: DiscreteChain,
    g_fn: GFn,
    key: Key[Array, ""],
    shape: tuple[int, ...],
    nz: int,
) -> Float[Array, "b ..."]:
    """Samples of shape ``shape`` (batch first): x_T ~ N(0, I), then T steps with fresh z."""
    k_T, k_z, k_n = jax.random.split(key, 3)
    T = chain.num_steps
    x_T = chain.prior_sample(k_T, shape)
    zs = jax.random.normal(k_z, (T, shape[0], nz), jnp.float32)
    noises = jax.random.normal(k_n, (T, *shape), jnp.float32)
    return ddgan_sample_from(chain, g_fn, x_T, zs, noises)


def slerp(
    a: Float[Array, "... d"], b: Float[Array, "... d"], w: Float[Array, "..."]
) -> Float[Array, "... d"]:
    """Spherical interpolation between latents a and b at weights w in [0, 1]."""
    w = jnp.asarray(w, jnp.float32)[..., None]
    na, nb = jnp.linalg.norm(a, axis=-1, keepdims=True), jnp.linalg.norm(b, axis=-1, keepdims=True)
    cos = jnp.clip(jnp.sum(a * b, -1, keepdims=True) / (na * nb + 1e-12), -1.0, 1.0)
    omega = jnp.arccos(cos)
    so = jnp.sin(omega)
    lin = (1 - w) * a + w * b
    sph = (jnp.sin((1 - w) * omega) * a + jnp.sin(w * omega) * b) / jnp.where(so > 1e-6, so, 1.0)
    return jnp.where(so > 1e-6, sph, lin)


# ----------------------------------------------------------------------------------------------
# The method


class DDGANMethod(Method):
    """DDGAN's trainer hooks. Parameter groups ``('G', 'D')``; EMA of G only.

    Args:
      chain: the discrete forward chain (T steps).
      make_g: ``make_g(rngs) -> nnx.Module`` with ``__call__(x_t, t, z) -> x0``.
      make_d: ``make_d(rngs) -> nnx.Module`` with ``__call__(x_prev, x_t, t) -> logits (b, 1)``.
      tx_g, tx_d: optimisers (Adam(0.5, 0.9), separate learning rates).
      ema_decay: EMA decay of G (0.9999; 0.999 for LSUN).
      data_shape: shape of one example.
      nz: latent size (100 for images).
      r1_gamma, lazy_reg: R1 weight and interval (None: every step).
      sample_batch: sampling chunk size (None: all at once).
      eval_samples: samples drawn by :meth:`evaluate`.
      data_scale: the chain runs on ``data_scale * x`` and samples are divided back (the VP
        schedule assumes data in [-1, 1]; the 2-D toy sets span [-4, 4]: 0.25).
    """

    groups = ("G", "D")

    def __init__(
        self,
        chain: DiscreteChain,
        make_g: Callable[[nnx.Rngs], nnx.Module],
        make_d: Callable[[nnx.Rngs], nnx.Module],
        tx_g: optax.GradientTransformation,
        tx_d: optax.GradientTransformation,
        ema_decay: float,
        data_shape: tuple[int, ...],
        nz: int,
        r1_gamma: float,
        lazy_reg: int | None = None,
        sample_batch: int | None = None,
        eval_samples: int = 5000,
        data_scale: float = 1.0,
    ):
        self.chain = chain
        self.make_g, self.make_d = make_g, make_d
        self.optimizers = {"G": tx_g, "D": tx_d}
        self.ema_decay = {"G": float(ema_decay)}
        self.data_shape = tuple(data_shape)
        self.nz = nz
        self.r1_gamma = float(r1_gamma)
        self.lazy_reg = lazy_reg
        self.sample_batch = sample_batch
        self.eval_samples = eval_samples
        self.data_scale = float(data_scale)
        # shapes only: ShapeOnlyRngs keeps abstract construction linear in depth
        self.G: PureNet = functional(nnx.eval_shape(lambda: make_g(ShapeOnlyRngs(0))))[0]
        self.D: PureNet = functional(nnx.eval_shape(lambda: make_d(ShapeOnlyRngs(0))))[0]

    # -- hooks -----------------------------------------------------------------------------------

    def init(self, key: jax.Array, batch: dict[str, Any]) -> TrainState:
        del batch
        k_g, k_d = jax.random.split(key)
        g, d = init_params(self.make_g, k_g), init_params(self.make_d, k_d)
        return create_state({"G": g, "D": d}, self.optimizers, ema_groups=("G",))

    def g_fn(self, params) -> GFn:
        return functools.partial(self.G.apply, params)

    def _fake(self, g_params, keys, x_next, t):
        """A fake x_t: posterior sample given x0 = G(x_{t+1}, t, z), z fresh (per-example keys)."""
        k_z, k_p = rng.split(keys)
        z = rng.normal(k_z, (x_next.shape[0], self.nz))
        x0 = self.G.apply(g_params, x_next, t, z)
        return self.chain.posterior_sample(k_p, x0, x_next, t)

    @property
    def phases(self) -> tuple[tuple[str, ...], ...]:
        return (("D",), ("G",))

    def grads(self, phase: int, state: TrainState, batch: dict[str, Any], keys: jax.Array):
        x0 = jnp.asarray(batch["x"], jnp.float32) * self.data_scale
        b = x0.shape[0]
        k_t, k_p, k_f = rng.split(keys, 3)
        chain, D = self.chain, self.D
        t = chain.labels(k_t, b)
        x_t, x_next = chain.q_pair(k_p, x0, t)
        if phase == 0:
            # D step, Eq. (5): real pair by ancestral sampling, fake x_t from the posterior at
            # G's x0
            x_fake = jax.lax.stop_gradient(self._fake(state.params["G"], k_f, x_next, t))

            def d_objective(d_params):
                def d_real(x):  # D as a function of the real x_t only (R1 target)
                    return D.apply(d_params, x, x_next, t)

                real, fake = d_real(x_t), D.apply(d_params, x_fake, x_next, t)
                loss, parts = d_loss(real, fake)
                r1 = lazy_r1_penalty(d_real, x_t, self.r1_gamma, state.step, self.lazy_reg)
                aux = {
                    **parts,
                    "d_loss": loss,
                    "r1": r1,
                    "d_real_logit": jnp.mean(real),
                    "d_fake_logit": jnp.mean(fake),
                }
                return loss + r1, aux

            (_, aux), g = jax.value_and_grad(d_objective, has_aux=True)(state.params["D"])
            return PhaseGrads({"D": g}, {"loss": aux["d_loss"], **aux})

        # G step, non-saturating: fresh t, pair and z (the trainer folds the phase into the
        # keys) against the updated (frozen) D
        d_params = state.params["D"]

        def g_objective(g_params):
            return g_loss(D.apply(d_params, self._fake(g_params, k_f, x_next, t), x_next, t))

        loss_g, g = jax.value_and_grad(g_objective)(state.params["G"])
        return PhaseGrads({"G": g}, {"loss": loss_g, "g_loss": loss_g})

    def sampling_params(self, state: TrainState) -> Any:
        return state.ema["G"] if "G" in state.ema else state.params["G"]

    def sample_fn(self, params, key, num: int):
        """``num`` samples x0 (T network calls each, fresh z per step) and NFE = T."""
        x = ddgan_sample(self.chain, self.g_fn(params), key, (num, *self.data_shape), self.nz)
        return x / self.data_scale, jnp.asarray(self.chain.num_steps, jnp.int32)

    def interpolate(
        self,
        state: TrainState,
        key: jax.Array,
        num_pairs: int = 8,
        num_points: int = 8,
        use_ema: bool = True,
    ) -> Float[Array, "p n ..."]:
        """Latent interpolation: x_T and the posterior noise fixed, every step's z slerped.

        For each of ``num_pairs`` rows, draws x_T, two latents z_a, z_b per step and one posterior
        noise per step, and decodes ``slerp(z_a, z_b, w)`` at ``num_points`` weights in [0, 1].
        Returns ``(num_pairs, num_points, *data_shape)``.
        """
        params = state.ema["G"] if use_ema and "G" in state.ema else state.params["G"]
        T, shape = self.chain.num_steps, (num_pairs, *self.data_shape)
        k_T, k_a, k_b, k_n = jax.random.split(key, 4)
        x_T = self.chain.prior_sample(k_T, shape)
        za = jax.random.normal(k_a, (T, num_pairs, self.nz))
        zb = jax.random.normal(k_b, (T, num_pairs, self.nz))
        noises = jax.random.normal(k_n, (T, *shape))
        w = jnp.linspace(0.0, 1.0, num_points)

        @jax.jit
        def run(params):
            def one(wi):
                x = ddgan_sample_from(self.chain, self.g_fn(params), x_T, slerp(za, zb, wi), noises)
                return x / self.data_scale

            return jax.lax.map(one, w)  # (n, p, ...)

        return jnp.swapaxes(run(params), 0, 1)

    def evaluate(self, state: TrainState, key: jax.Array, data: Any) -> dict[str, float]:
        """Toy metrics (modes, high-quality fraction, SW / floor, MMD, NLL) for toy data."""
        source = getattr(data, "mixture", None)
        if source is None:
            source = getattr(data, "source", None)
        if source is None or len(self.data_shape) != 1:
            return {}
        from jaxdiff.eval.metrics import toy_metrics

        k_s, k_m = jax.random.split(key)
        params = self.sampling_params(state)
        samples, info = draw(self.sample_fn, params, k_s, self.eval_samples, self.sample_batch)
        return {**toy_metrics(k_m, jnp.asarray(samples), source), "nfe": float(info["nfe"])}
