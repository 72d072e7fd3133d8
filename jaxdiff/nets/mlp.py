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
      input_frequencies: if > 0, the input is augmented with ``sin`` and ``cos`` of
        ``pi x 2^j / input_scale`` for j < input_frequencies (Fourier features, Tancik et al.
        2020), which lets a small MLP represent the sharp modes of toy mixtures.
      input_scale: the longest period of those features is ``2 input_scale``.
      dtype: compute dtype (params stay float32; the output is float32).
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
        input_frequencies: int = 0,
        input_scale: float = 4.0,
        dtype=jnp.float32,
        *,
        rngs: nnx.Rngs,
    ):
        in_dim = in_dim or dim
        out_dim = out_dim or dim
        self.input_frequencies = input_frequencies
        self.input_scale = input_scale
        self.dtype = dtype
        lin = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        if embedding == "fourier":
            self.fourier = GaussianFourierEmbedding(embed_dim // 2, scale=16.0, rngs=rngs)
        elif embedding != "sinusoidal":
            raise ValueError(f"unknown time embedding {embedding!r}: use 'fourier' or 'sinusoidal'")
        self.embedding = embedding
        self.embed_dim = embed_dim
        self.time_scale = time_scale
        self.temb = nnx.Linear(embed_dim, hidden, **lin)
        self.inp = nnx.Linear(in_dim * (1 + 2 * input_frequencies), hidden, **lin)
        self.blocks = nnx.List([nnx.Linear(hidden, hidden, **lin) for _ in range(2 * depth)])
        self.temb_proj = nnx.List([nnx.Linear(hidden, hidden, **lin) for _ in range(depth)])
        self.out = nnx.Linear(
            hidden, out_dim, kernel_init=nnx.initializers.zeros, param_dtype=jnp.float32, rngs=rngs
        )

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
        if self.input_frequencies:
            freqs = jnp.pi * 2.0 ** jnp.arange(self.input_frequencies) / self.input_scale
            arg = (x[..., None] * freqs).reshape(x.shape[0], -1)
            x = jnp.concatenate([x, jnp.sin(arg), jnp.cos(arg)], axis=-1)
        h = self.inp(x.astype(self.dtype))
        for k, proj in enumerate(self.temb_proj):
            r = jax.nn.silu(h)
            r = self.blocks[2 * k](r) + proj(temb)
            r = self.blocks[2 * k + 1](jax.nn.silu(r))
            h = h + r
        return self.out(jax.nn.silu(h).astype(jnp.float32))
