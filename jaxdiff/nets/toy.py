"""MLPs for low-dimensional (toy) data besides the score net (``mlp.MLPScoreNet``): DDGAN's
generator and discriminator (paper App. C.5: 3-layer MLPs, 512 hidden units) and a small VAE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Num

from jaxdiff import rng
from jaxdiff.nets.embeddings import sinusoidal_embedding
from jaxdiff.nets.layers import dense, pixel_norm


class _MLP(nnx.Module):
    def __init__(self, din: int, hidden: int, depth: int, dout: int, *, rngs: nnx.Rngs):
        sizes = [din] + [hidden] * depth
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.hidden = nnx.List([dense(a, b, rngs=rngs) for a, b in pairs])
        self.out = dense(sizes[-1], dout, rngs=rngs)

    def __call__(self, h: Array, act=jax.nn.silu) -> Array:
        for layer in self.hidden:
            h = act(layer(h))
        return self.out(h)


class MLPGenerator(nnx.Module):
    """DDGAN toy generator ``G(x_t (b,d), t (b,) integer step, z (b,nz)) -> x0 prediction (b,d)``.

    Input: [x_t, sinusoidal(t), PixelNorm(z)] through ``depth`` SiLU layers of width ``hidden``.
    """

    def __init__(
        self,
        dim: int = 2,
        nz: int = 2,
        hidden: int = 512,
        depth: int = 3,
        t_emb_dim: int = 32,
        *,
        rngs: nnx.Rngs,
    ):
        self.t_emb_dim = t_emb_dim
        self.net = _MLP(dim + t_emb_dim + nz, hidden, depth, dim, rngs=rngs)

    def __call__(
        self, x_t: Float[Array, "b d"], t: Num[Array, " b"], z: Float[Array, "b nz"]
    ) -> Float[Array, "b d"]:
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
        e = sinusoidal_embedding(t, self.t_emb_dim)
        return self.net(jnp.concatenate([x_t, e, pixel_norm(z)], axis=-1))


class MLPDiscriminator(nnx.Module):
    """DDGAN toy discriminator ``D(x_prev (b,d), x_t (b,d), t (b,)) -> logits (b, 1)``
    (LeakyReLU 0.2, as the image discriminators)."""

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 512,
        depth: int = 3,
        t_emb_dim: int = 32,
        *,
        rngs: nnx.Rngs,
    ):
        self.t_emb_dim = t_emb_dim
        self.net = _MLP(2 * dim + t_emb_dim, hidden, depth, 1, rngs=rngs)

    def __call__(
        self, x_prev: Float[Array, "b d"], x_t: Float[Array, "b d"], t: Num[Array, " b"]
    ) -> Float[Array, "b 1"]:
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
        e = sinusoidal_embedding(t, self.t_emb_dim)
        h = jnp.concatenate([x_prev, x_t, e], axis=-1)
        return self.net(h, act=lambda a: jax.nn.leaky_relu(a, 0.2))


class MLPEncoder(nnx.Module):
    """VAE encoder ``x (b,d) -> (mu, log_sigma)`` of q(z|x), each (b, latent_dim)."""

    def __init__(
        self,
        dim: int = 2,
        latent_dim: int = 2,
        hidden: int = 128,
        depth: int = 2,
        *,
        rngs: nnx.Rngs,
    ):
        self.net = _MLP(dim, hidden, depth, 2 * latent_dim, rngs=rngs)

    def __call__(self, x: Float[Array, "b d"]) -> tuple[Float[Array, "b l"], Float[Array, "b l"]]:
        mu, log_sigma = jnp.split(self.net(x), 2, axis=-1)
        return mu, log_sigma


class MLPDecoder(nnx.Module):
    """VAE decoder ``z (b,l) -> mean of p(x|z)`` (b, d) (a Gaussian decoder with a learnt,
    input-independent ``log_sigma`` of shape (d,))."""

    def __init__(
        self,
        dim: int = 2,
        latent_dim: int = 2,
        hidden: int = 128,
        depth: int = 2,
        *,
        rngs: nnx.Rngs,
    ):
        self.net = _MLP(latent_dim, hidden, depth, dim, rngs=rngs)
        self.log_sigma = nnx.Param(jnp.zeros((dim,), jnp.float32))

    def __call__(self, z: Float[Array, "b l"]) -> Float[Array, "b d"]:
        return self.net(z)


class MLPVAE(nnx.Module):
    """Small VAE for toy data: ``__call__(x, key) -> (x_mean, z, mu, log_sigma)`` with the
    reparameterised sample ``z = mu + exp(log_sigma) * eps``."""

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
        self.decoder = MLPDecoder(dim, latent_dim, hidden, depth, rngs=rngs)

    def __call__(self, x: Float[Array, "b d"], key: jax.Array):
        mu, log_sigma = self.encoder(x)
        z = mu + jnp.exp(log_sigma) * rng.normal(key, mu.shape)
        return self.decoder(z), z, mu, log_sigma
