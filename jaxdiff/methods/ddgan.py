"""Denoising diffusion GANs (Xiao, Kreis & Vahdat, ICLR 2022) as trainer hooks.

A generator ``G(x_{t+1}, t, z) -> x0`` (z ~ N(0, I_nz)) defines the implicit denoiser
``p(x_t | x_{t+1}) = int p(z) q(x_t | x_{t+1}, x0 = G(x_{t+1}, t, z)) dz`` (Sec. 3.3), trained
against a time-conditional discriminator ``D(x_t, x_{t+1}, t)`` on T <= 8 large steps of the
discrete VP chain (``jaxdiff.processes.discrete``). Labels t are 0-based (the less noisy member).

``train_step`` is the official alternating update in one pure function: a D step on a real pair
and a fake pair (+ lazy R1 on the real x_t), then a G step on a *fresh* t, pair and z against the
updated D, then the EMA of G. The trainer jits and shards it like any other method's step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int, Key

from jaxdiff.methods.base import Method
from jaxdiff.nets.functional import PureNet, ShapeOnlyRngs, functional, init_params
from jaxdiff.objectives.ddgan import d_loss, g_loss, lazy_r1_penalty
from jaxdiff.processes.discrete import DiscreteChain
from jaxdiff.train.state import TrainState, apply_gradients, create_state, next_step

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
# Networks from the config: the module zoo's ``build_net`` (its table of constructors), plus the
# Fourier-feature toy nets of ``ddgan_nets`` (ours)


def _local_nets() -> dict[str, Callable[..., nnx.Module]]:
    from jaxdiff.methods.ddgan_nets import FourierMLPDiscriminator, FourierMLPGenerator

    return {
        "fourier_mlp_generator": FourierMLPGenerator,
        "fourier_mlp_discriminator": FourierMLPDiscriminator,
    }


def build_net(cfg, rngs: nnx.Rngs, **overrides: Any) -> nnx.Module:
    """A G or D from its config section (``name`` + keyword arguments) and data-given overrides."""
    local = _local_nets()
    if cfg.name in local:
        kw = {k: v for k, v in cfg.items() if k not in ("name", "dtype", "skip_data_var")}
        kw.update({k: v for k, v in overrides.items() if k != "dtype"})
        return local[cfg.name](**kw, rngs=rngs)
    from jaxdiff.nets import zoo

    return zoo.build_net(cfg, seed=rngs.params(), **overrides)


def _net_overrides(name: str, data_shape: tuple[int, ...], dtype, nz: int | None) -> dict:
    """The keyword arguments fixed by the data (and nz) rather than by the config."""
    if name in _local_nets() and len(data_shape) > 1:  # images through the flattening MLPs
        dim = int(np.prod(data_shape))
        return {"dim": dim, "image_shape": data_shape, **({"nz": nz} if nz is not None else {})}
    if len(data_shape) == 1:  # toy MLPs
        return {"dim": data_shape[0], **({"nz": nz} if nz is not None else {})}
    if nz is not None:  # the NCSN++ generator
        return {"image_size": data_shape[0], "in_ch": data_shape[-1], "nz": nz, "dtype": dtype}
    return {"channels": data_shape[-1], "dtype": dtype}


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
        self.tx_g, self.tx_d = tx_g, tx_d
        self.ema_decay = ema_decay
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
        self._sample_jit = jax.jit(self._sample_chunk, static_argnums=(2,))

    @classmethod
    def from_config(cls, config, data_shape: tuple[int, ...] | None = None) -> DDGANMethod:
        """The method from a DDGAN config (``configs/ddgan/*.py``, ``configs/toy/ddgan.py``).

        ``data_shape`` (one example) defaults to the configured data's (which reads the data).
        """
        from jaxdiff.build import compute_dtype, example_shape
        from jaxdiff.train.state import make_optimizer

        dd, opt = config.ddgan, config.optim
        shape = tuple(data_shape) if data_shape is not None else example_shape(config)
        dtype = compute_dtype(config)
        chain = DiscreteChain.vp(
            dd.num_timesteps, dd.get("beta_min", 0.1), dd.get("beta_max", 20.0), dd.get("eps", 1e-3)
        )
        g_kw = _net_overrides(config.model.name, shape, dtype, dd.nz)
        d_kw = _net_overrides(dd.disc.name, shape, dtype, None)
        if config.model.get("skip_data_var", None):  # toy G's linear skip, in chain units
            var = config.model.skip_data_var * dd.get("data_scale", 1.0) ** 2
            g_kw["skip_coefs"] = tuple(float(c) for c in chain.linear_x0_coefs(var))

        def tx(lr):
            return make_optimizer(
                lr,
                b1=opt.b1,
                b2=opt.b2,
                eps=opt.get("eps", 1e-8),
                grad_clip=opt.get("grad_clip", 0.0) or None,
                warmup=opt.get("warmup", 0),
                schedule=opt.get("schedule", "cosine"),
                total_steps=config.training.num_steps,
                min_lr=opt.get("min_lr", 1e-5),
            )

        return cls(
            chain,
            functools.partial(build_net, config.model, **g_kw),
            functools.partial(build_net, dd.disc, **d_kw),
            tx(dd.lr_g),
            tx(dd.lr_d),
            config.training.ema_decay,
            shape,
            dd.nz,
            dd.r1_gamma,
            dd.get("lazy_reg", None) or None,
            sample_batch=config.sampling.get("batch_size", None) or None,
            eval_samples=config.eval.get("num_samples", 5000),
            data_scale=dd.get("data_scale", 1.0),
        )

    # -- hooks -----------------------------------------------------------------------------------

    def init(self, key: jax.Array, batch: dict[str, Any]) -> TrainState:
        del batch
        k_g, k_d = jax.random.split(key)
        g, d = init_params(self.make_g, k_g), init_params(self.make_d, k_d)
        return create_state({"G": g, "D": d}, {"G": self.tx_g, "D": self.tx_d}, ema_groups=("G",))

    def g_fn(self, params) -> GFn:
        return functools.partial(self.G.apply, params)

    def _fake(self, g_params, key, x_next, t):
        """A fake x_t: posterior sample given x0 = G(x_{t+1}, t, z), z fresh."""
        k_z, k_p = jax.random.split(key)
        z = jax.random.normal(k_z, (x_next.shape[0], self.nz), jnp.float32)
        x0 = self.G.apply(g_params, x_next, t, z)
        return self.chain.posterior_sample(k_p, x0, x_next, t)

    def train_step(
        self, state: TrainState, batch: dict[str, Any], key: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        x0 = jnp.asarray(batch["x"] if "x" in batch else batch["image"], jnp.float32)
        x0 = x0 * self.data_scale
        b = x0.shape[0]
        k_dt, k_dp, k_df, k_gt, k_gp, k_gf = jax.random.split(key, 6)
        chain, D = self.chain, self.D

        # D step, Eq. (5): real pair by ancestral sampling, fake x_t from the posterior at G's x0
        t = chain.labels(k_dt, b)
        x_t, x_next = chain.q_pair(k_dp, x0, t)
        x_fake = jax.lax.stop_gradient(self._fake(state.params["G"], k_df, x_next, t))

        def d_objective(d_params):
            def d_real(x):  # D as a function of the real x_t only (R1 target)
                return D.apply(d_params, x, x_next, t)

            real, fake = d_real(x_t), D.apply(d_params, x_fake, x_next, t)
            loss, parts = d_loss(real, fake)
            r1 = lazy_r1_penalty(d_real, x_t, self.r1_gamma, state.step, self.lazy_reg)
            aux = {
                **parts,
                "r1": r1,
                "d_real_logit": jnp.mean(real),
                "d_fake_logit": jnp.mean(fake),
            }
            return loss + r1, aux

        (loss_d, aux), grads = jax.value_and_grad(d_objective, has_aux=True)(state.params["D"])
        state, m_d = apply_gradients(state, "D", grads, self.tx_d)

        # G step, non-saturating: fresh t, pair and z against the updated (frozen) D
        t = chain.labels(k_gt, b)
        _, x_next = chain.q_pair(k_gp, x0, t)
        d_params = state.params["D"]

        def g_objective(g_params):
            x_fake = self._fake(g_params, k_gf, x_next, t)
            return g_loss(D.apply(d_params, x_fake, x_next, t))

        loss_g, grads = jax.value_and_grad(g_objective)(state.params["G"])
        state, m_g = apply_gradients(state, "G", grads, self.tx_g, self.ema_decay)
        metrics = {"loss": loss_d + loss_g, "d_loss": loss_d, "g_loss": loss_g, **aux, **m_d, **m_g}
        return next_step(state), metrics

    def _sample_chunk(self, params, key, num: int):
        x = ddgan_sample(self.chain, self.g_fn(params), key, (num, *self.data_shape), self.nz)
        return x / self.data_scale

    def sample(
        self,
        state: TrainState,
        key: jax.Array,
        num: int,
        *,
        use_ema: bool = True,
        batch_size: int | None = None,
        **unused: Any,
    ) -> tuple[Float[Array, "n ..."], dict[str, Any]]:
        """``num`` samples x0 (T network calls each, fresh z per step) with the EMA of G.

        Returns ``(samples (num, *data_shape), {'nfe': T})``. Extra options of other methods'
        samplers (``steps``, ``sampler``, ...) are ignored: DDGAN's grid is its chain.
        """
        params = state.ema["G"] if use_ema and "G" in state.ema else state.params["G"]
        bs = batch_size or self.sample_batch or num
        out = []
        for i, start in enumerate(range(0, num, bs)):
            n = min(bs, num - start)
            out.append(self._sample_jit(params, jax.random.fold_in(key, i), n))
        samples = out[0] if len(out) == 1 else jnp.concatenate(out)
        return samples, {"nfe": self.chain.num_steps}

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
        samples, info = self.sample(state, k_s, self.eval_samples)
        return {**toy_metrics(k_m, samples, source), "nfe": float(info["nfe"])}
