"""Small VAEs with NVAE's interface (``jaxdiff.nets.vae``) for LSGM on toy data and CPU digits.

``encode(x, key) -> dict(z, mu, log_sigma)`` (lists over latent groups, top group first; ``key``
one key or one per example, ``jaxdiff.rng``), ``decode(zs) -> decoder parameters``,
``top_latent(zs)`` / ``split_top(z_top)`` (the groups the score model sees).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff import rng
from jaxdiff.nets.toy import _MLP, MLPEncoder


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
        z = mu + jnp.exp(ls) * rng.normal(key, mu.shape)
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
    outputs ``out_ch`` decoder parameters per pixel (``jaxdiff.objectives.decoders.out_channels``).
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
        z = mu + jnp.exp(ls) * rng.normal(key, mu.shape)
        return dict(z=[z], mu=[mu], log_sigma=[ls])

    def decode(self, zs: Sequence[Float[Array, "b l"]]) -> Float[Array, "b h w o"]:
        return self.decoder(zs[0]).reshape(zs[0].shape[0], *self.out_shape)

    def top_latent(self, zs: Sequence[Array]) -> Array:
        return zs[0]

    def split_top(self, z_top: Array) -> list[Array]:
        return [z_top]
