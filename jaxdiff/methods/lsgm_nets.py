"""LSGM's pieces around the module zoo: decoder likelihoods, a toy VAE with the NVAE interface,
and the network constructors read from the config.

Every VAE here has NVAE's interface (``jaxdiff.nets.vae``): ``encode(x, key) -> dict(z, mu,
log_sigma)`` (lists over latent groups, top group first), ``decode(zs) -> decoder parameters``,
``top_latent(zs)`` / ``split_top(z_top)`` (the groups the score model sees).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff.nets.toy import _MLP, MLPEncoder
from jaxdiff.processes.base import batch_sum

LIKELIHOODS = ("gaussian", "bernoulli", "logistic")

# ----------------------------------------------------------------------------------------------
# Decoder distributions p(x | z_0) (Sec. 5: Bernoulli for binary images; NVAE's discretised
# logistic for 8-bit images, here one component per channel; a Gaussian for toy data)


def out_channels(likelihood: str, channels: int) -> int:
    """Channels of the decoder's output for data with ``channels`` channels."""
    return {"gaussian": 2 * channels, "bernoulli": channels, "logistic": 2 * channels}[likelihood]


def _log_sigmoid_diff(a: Array, b: Array) -> Array:
    """log(sigmoid(a) - sigmoid(b)) for a > b, stable.

    Both log-sigmoids round to the same float when a and b are far in a tail: the difference is
    then floored at 1e-30 (the caller selects the density branch there), so that the unselected
    branch of its ``where`` has a finite gradient instead of inf * 0 = NaN."""
    diff = -jnp.expm1(jax.nn.log_sigmoid(b) - jax.nn.log_sigmoid(a))
    return jax.nn.log_sigmoid(a) + jnp.log(jnp.maximum(diff, 1e-30))


def decoder_nll(
    likelihood: str, params: Float[Array, "b ... o"], x: Float[Array, "b ... c"]
) -> Float[Array, " b"]:
    """-log p(x | z) per example (nats), summed over dimensions.

    ``bernoulli``: x in {-1, 1}, params are logits. ``logistic``: 8-bit x in [-1, 1] (bins of
    width 2/255), params = (mean, log_scale). ``gaussian``: params = (mean, log_sigma).
    """
    x = x.astype(jnp.float32)
    params = params.astype(jnp.float32)
    if likelihood == "bernoulli":
        target = 0.5 * (x + 1.0)
        return batch_sum(jnp.logaddexp(0.0, params) - target * params)
    mean, log_s = jnp.split(params, 2, axis=-1)
    if likelihood == "gaussian":
        log_s = jnp.maximum(log_s, -9.0)
        r = (x - mean) * jnp.exp(-log_s)
        return batch_sum(0.5 * r**2 + log_s + 0.5 * math.log(2 * math.pi))
    if likelihood == "logistic":
        log_s = jnp.maximum(log_s, -7.0)
        inv_s = jnp.exp(-log_s)
        c = x - mean
        plus, minus = inv_s * (c + 1.0 / 255), inv_s * (c - 1.0 / 255)
        lower_edge = jax.nn.log_sigmoid(plus)  # x = -1: mass of (-inf, -1 + 1/255]
        upper_edge = -jax.nn.softplus(minus)  # x = 1: mass of [1 - 1/255, inf)
        middle = _log_sigmoid_diff(plus, jnp.minimum(minus, plus - 1e-6))
        # far in the tails the difference underflows: density at the bin centre times its width
        mid = inv_s * c
        pdf = mid - log_s - 2.0 * jax.nn.softplus(mid) + math.log(2.0 / 255)
        middle = jnp.where(middle > -12.0, middle, pdf)
        logp = jnp.where(x < -0.999, lower_edge, jnp.where(x > 0.999, upper_edge, middle))
        return -batch_sum(logp)
    raise ValueError(f"unknown likelihood {likelihood!r}; use {LIKELIHOODS}")


def decoder_mean(likelihood: str, params: Float[Array, "b ... o"]) -> Float[Array, "b ... c"]:
    """The decoder distribution's mean (LSGM decodes samples to the mean, never samples x)."""
    params = params.astype(jnp.float32)
    if likelihood == "bernoulli":
        return 2.0 * jax.nn.sigmoid(params) - 1.0
    mean = jnp.split(params, 2, axis=-1)[0]
    return jnp.clip(mean, -1.0, 1.0) if likelihood == "logistic" else mean


# ----------------------------------------------------------------------------------------------
# A toy VAE with NVAE's interface


class ToyVAE(nnx.Module):
    """MLP encoder and decoder (``jaxdiff.nets.toy``) with one latent group of ``latent_dim``.

    The decoder outputs (mean, log_sigma) of a Gaussian with a learnt, input-independent
    log_sigma (``decoder_nll('gaussian', ...)``).
    """

    def __init__(
        self,
        dim: int = 2,
        latent_dim: int = 2,
        hidden: int = 128,
        depth: int = 2,
        *,
        rngs: nnx.Rngs,
    ):
        self.encoder = MLPEncoder(dim, latent_dim, hidden, depth, rngs=rngs)
        self.decoder = _MLP(latent_dim, hidden, depth, dim, rngs=rngs)
        self.log_sigma = nnx.Param(jnp.full((dim,), -1.0, jnp.float32))

    def encode(self, x: Float[Array, "b d"], key: jax.Array) -> dict[str, list[Array]]:
        mu, ls = self.encoder(x)
        mu, ls = 5.0 * jnp.tanh(mu / 5.0), 5.0 * jnp.tanh(ls / 5.0)  # NVAE's soft clamp
        z = mu + jnp.exp(ls) * jax.random.normal(key, mu.shape)
        return dict(z=[z], mu=[mu], log_sigma=[ls])

    def decode(self, zs: Sequence[Float[Array, "b l"]]) -> Float[Array, "b d2"]:
        mean = self.decoder(zs[0])
        log_s = jnp.broadcast_to(self.log_sigma[...], mean.shape)
        return jnp.concatenate([mean, log_s], axis=-1)

    def top_latent(self, zs: Sequence[Array]) -> Array:
        return zs[0]

    def split_top(self, z_top: Array) -> list[Array]:
        return [z_top]


class FlatVAE(nnx.Module):
    """MLP encoder and decoder over flattened images, one latent vector of ``latent_dim``.

    The CPU-scale VAE of the offline digits config (docs/lsgm.md: a train step of the zoo's conv
    VAE at 32 channels and batch 64 took over 15 s on the 2 shared CPU cores). The decoder
    outputs ``out_ch`` decoder parameters per pixel (``out_channels``).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        out_ch: int,
        latent_dim: int = 16,
        hidden: int = 512,
        depth: int = 2,
        *,
        rngs: nnx.Rngs,
    ):
        self.out_shape = (*shape[:-1], out_ch)
        self.encoder = MLPEncoder(math.prod(shape), latent_dim, hidden, depth, rngs=rngs)
        self.decoder = _MLP(latent_dim, hidden, depth, math.prod(self.out_shape), rngs=rngs)

    def encode(self, x: Float[Array, "b h w c"], key: jax.Array) -> dict[str, list[Array]]:
        mu, ls = self.encoder(x.reshape(x.shape[0], -1).astype(jnp.float32))
        mu, ls = 5.0 * jnp.tanh(mu / 5.0), 5.0 * jnp.tanh(ls / 5.0)  # NVAE's soft clamp
        z = mu + jnp.exp(ls) * jax.random.normal(key, mu.shape)
        return dict(z=[z], mu=[mu], log_sigma=[ls])

    def decode(self, zs: Sequence[Float[Array, "b l"]]) -> Float[Array, "b h w o"]:
        return self.decoder(zs[0]).reshape(zs[0].shape[0], *self.out_shape)

    def top_latent(self, zs: Sequence[Array]) -> Array:
        return zs[0]

    def split_top(self, z_top: Array) -> list[Array]:
        return [z_top]


# ----------------------------------------------------------------------------------------------
# Constructors from config sections (``lsgm.vae``, ``lsgm.score``)


def make_vae(cfg: Any, data_shape: tuple[int, ...], likelihood: str, dtype, rngs: nnx.Rngs):
    """The VAE named by ``cfg.name``: ``toy_vae``, ``flat_vae`` (ours) or the zoo's ``nvae`` /
    ``conv_vae``."""
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k != "name"}
    if cfg.name == "toy_vae":
        return ToyVAE(dim=data_shape[-1], **kw, rngs=rngs)
    if cfg.name == "flat_vae":
        out_ch = out_channels(likelihood, data_shape[-1])
        return FlatVAE(tuple(data_shape), out_ch, **kw, rngs=rngs)
    from jaxdiff.nets import zoo

    over = dict(image_size=data_shape[0], in_ch=data_shape[-1], dtype=dtype)
    over["out_ch"] = out_channels(likelihood, data_shape[-1])
    return zoo.build_net({"name": cfg.name, **kw}, seed=rngs.params(), **over)


def make_score_net(cfg: Any, latent_shape: tuple[int, ...], dtype, rngs: nnx.Rngs):
    """The latent eps' network: ``mlp_score`` for (l,) latents, the zoo's ``ncsnpp`` for maps."""
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k != "name"}
    if cfg.name == "mlp_score":
        from jaxdiff.nets.mlp import MLPScoreNet

        return MLPScoreNet(latent_shape[-1], **kw, dtype=dtype, rngs=rngs)
    from jaxdiff.nets import zoo

    kw.pop("mixing_logit_init", None)  # the mixing logit lives in the method's 'prior' group
    over = dict(image_size=latent_shape[0], in_ch=latent_shape[-1], out_ch=latent_shape[-1])
    over.update(centered=True, dtype=dtype)
    return zoo.build_net({"name": cfg.name, **kw}, seed=rngs.params(), **over)
