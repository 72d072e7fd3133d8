"""MLP score / eps network for low-dimensional (toy) data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff.nets.embeddings import GaussianFourierEmbedding, sinusoidal_embedding


class MLPScoreNet(nnx.Module):
    """``(x, t) -> R^d``: a residual MLP conditioned on a time embedding.

    Args:
      dim: data dimension d (input and output size; ``in_dim`` / ``out_dim`` override, e.g.
        CLD feeds (x, v) of size 2d and reads d).
      hidden: width of the hidden layers.
      depth: number of residual blocks.
      embedding: ``"fourier"`` (Gaussian Fourier features of t) or ``"sinusoidal"``.
      embed_dim: size of the time embedding.
      time_scale: t is multiplied by this before a sinusoidal embedding (999 gives DDPM's
        integer-step range for t in [0, 1]).
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 128,
        depth: int = 3,
        embedding: str = "fourier",
        embed_dim: int = 64,
        time_scale: float = 999.0,
        in_dim: int | None = None,
        out_dim: int | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        in_dim = in_dim or dim
        out_dim = out_dim or dim
        if embedding == "fourier":
            self.fourier = GaussianFourierEmbedding(embed_dim // 2, scale=16.0, rngs=rngs)
        elif embedding != "sinusoidal":
            raise ValueError(f"unknown time embedding {embedding!r}: use 'fourier' or 'sinusoidal'")
        self.embedding = embedding
        self.embed_dim = embed_dim
        self.time_scale = time_scale
        self.temb = nnx.Linear(embed_dim, hidden, rngs=rngs)
        self.inp = nnx.Linear(in_dim, hidden, rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs) for _ in range(2 * depth)])
        self.temb_proj = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs) for _ in range(depth)])
        self.out = nnx.Linear(hidden, out_dim, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def embed(self, t: Float[Array, " b"]) -> Float[Array, "b e"]:
        if self.embedding == "fourier":
            return self.fourier(t)
        return sinusoidal_embedding(t * self.time_scale, self.embed_dim)

    def __call__(
        self, x: Float[Array, "b d"], t: Float[Array, " b"], *, key: jax.Array | None = None
    ) -> Float[Array, "b d"]:
        """Output at inputs ``x`` and times ``t``; ``key`` is accepted for parity."""
        del key
        t = jnp.broadcast_to(t, x.shape[:1])
        temb = jax.nn.silu(self.temb(self.embed(t)))
        h = self.inp(x)
        for k, proj in enumerate(self.temb_proj):
            r = jax.nn.silu(h)
            r = self.blocks[2 * k](r) + proj(temb)
            r = self.blocks[2 * k + 1](jax.nn.silu(r))
            h = h + r
        return self.out(jax.nn.silu(h))
