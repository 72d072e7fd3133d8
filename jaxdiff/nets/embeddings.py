"""Time embeddings shared by every network of the zoo."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float


def sinusoidal_embedding(
    t: Float[Array, " b"], dim: int, max_period: float = 10_000.0
) -> Float[Array, "b dim"]:
    """Transformer sinusoidal embedding of a (continuous or integer) time, as DDPM does.

    Frequencies are ``max_period ** (-k / (dim // 2 - 1))`` for k = 0 .. dim // 2 - 1 (the
    DDPM / score_sde ``get_timestep_embedding`` convention); the output is ``[sin, cos]``,
    zero-padded when ``dim`` is odd.
    """
    half = dim // 2
    scale = math.log(max_period) / max(half - 1, 1)
    freqs = jnp.exp(-scale * jnp.arange(half, dtype=jnp.float32))
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class GaussianFourierEmbedding(nnx.Module):
    """Random Fourier features of t (Tancik et al.; score_sde's NCSN++ uses them of log sigma).

    ``W ~ N(0, scale^2)`` is drawn at construction and never trained (stop-gradient in the
    forward pass, as score_sde does). Output: ``[sin(2 pi t W), cos(2 pi t W)]`` of size 2 * size.
    """

    def __init__(self, size: int = 128, scale: float = 16.0, *, rngs: nnx.Rngs):
        self.W = nnx.Param(scale * jax.random.normal(rngs.params(), (size,)))

    def __call__(self, t: Float[Array, " b"]) -> Float[Array, "b d"]:
        w = jax.lax.stop_gradient(self.W[...])
        proj = t.astype(jnp.float32)[:, None] * w[None, :] * 2.0 * jnp.pi
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)
