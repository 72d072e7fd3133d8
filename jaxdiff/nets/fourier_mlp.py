"""Toy DDGAN networks with Fourier input features (ours, for CPU-sized toy runs).

The paper's toy G and D are plain 3-layer MLPs of 512 units trained for 50k iterations
(App. C.5; ``jaxdiff.nets.toy``). On 2 CPU cores we can afford a few thousand steps, and a plain
MLP on raw coordinates learns the sharp 25-Gaussian lattice (std 0.05 on a spacing of 2) far
too slowly: its discriminator stays near chance (spectral bias). Feeding both networks a fixed
NeRF-style positional encoding of the coordinates, ``[x, sin(2^k pi x / L), cos(2^k pi x / L)]``
for k < octaves, lets them represent lattice-scale functions from the start. Everything else
(sinusoidal step embedding, PixelNorm on z, SiLU in G, LeakyReLU(0.2) in D) is as the zoo's toy
nets; the interfaces are the same: ``G(x_t, t, z) -> x0`` and ``D(x_prev, x_t, t) -> (b, 1)``.

The generator optionally adds a fixed linear skip, ``x0 = c_t x_t + F(x_t, t, z)`` with ``c_t``
the Wiener coefficient of :meth:`DiscreteChain.linear_x0_coefs` (EDM's c_skip in spirit). Without
it the MLP's output barely depended on x_t after 3000 steps: given a real x_1 whose posterior
over x0 is nearly one mode, the predicted x0 landed on the right mode only 29% of the time, and
the chain lost modes; with it, 80% (docs/ddgan.md). A U-Net has this path through its skips.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Num

from jaxdiff.nets.embeddings import sinusoidal_embedding
from jaxdiff.nets.layers import dense, pixel_norm


def _flatten(x: Array, image_shape: tuple[int, ...] | None, what: str) -> Array:
    """(b, *image_shape) -> (b, prod): images through an MLP; checks the shape it was built for."""
    expected = image_shape if image_shape is not None else x.shape[1:2]
    if tuple(x.shape[1:]) != tuple(expected):
        raise ValueError(f"{what} has shape {x.shape}; this net was built for (b, *{expected})")
    return x.reshape(x.shape[0], -1)


def fourier_features(x: Float[Array, "b d"], octaves: int, length: float) -> Float[Array, "b f"]:
    """``[x, sin(2^k pi x / length), cos(2^k pi x / length)]_{k < octaves}``: (b, d (1 + 2K))."""
    freqs = math.pi * 2.0 ** jnp.arange(octaves, dtype=jnp.float32) / length
    args = (x[:, :, None] * freqs).reshape(x.shape[0], -1)
    return jnp.concatenate([x, jnp.sin(args), jnp.cos(args)], axis=-1)


class _Stack(nnx.Module):
    def __init__(self, din: int, hidden: int, depth: int, dout: int, *, rngs: nnx.Rngs):
        sizes = [din] + [hidden] * depth
        self.layers = nnx.List(
            [dense(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.out = dense(sizes[-1], dout, rngs=rngs)

    def __call__(self, h: Array, act) -> Array:
        for layer in self.layers:
            h = act(layer(h))
        return self.out(h)


class FourierMLPGenerator(nnx.Module):
    """``G(x_t (b,d), t (b,) integer label, z (b,nz)) -> x0 (b,d)`` with Fourier input features.

    ``skip_coefs`` (one per label, or None): adds ``skip_coefs[t] * x_t`` to the output.
    ``image_shape``: take and return images of this shape (flattened inside; ``dim`` = its size).
    """

    def __init__(
        self,
        dim: int = 2,
        nz: int = 8,
        hidden: int = 256,
        depth: int = 3,
        t_emb_dim: int = 32,
        octaves: int = 6,
        length: float = 4.0,
        skip_coefs: tuple[float, ...] | None = None,
        image_shape: tuple[int, ...] | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        self.t_emb_dim, self.octaves, self.length = t_emb_dim, octaves, length
        self.skip_coefs = None if skip_coefs is None else tuple(float(c) for c in skip_coefs)
        self.image_shape = None if image_shape is None else tuple(image_shape)
        din = dim * (1 + 2 * octaves) + t_emb_dim + nz
        self.net = _Stack(din, hidden, depth, dim, rngs=rngs)

    def __call__(
        self, x_t: Float[Array, "b ..."], t: Num[Array, " b"], z: Float[Array, "b nz"]
    ) -> Float[Array, "b ..."]:
        shape = x_t.shape
        x_t = _flatten(x_t, self.image_shape, "x_t")
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
        h = jnp.concatenate(
            [
                fourier_features(x_t, self.octaves, self.length),
                sinusoidal_embedding(t, self.t_emb_dim),
                pixel_norm(z),
            ],
            axis=-1,
        )
        out = self.net(h, jax.nn.silu)
        if self.skip_coefs is not None:
            c = jnp.asarray(self.skip_coefs, jnp.float32)[jnp.asarray(t, jnp.int32)]
            out = out + c[:, None] * x_t
        return out.reshape(shape)


class FourierMLPDiscriminator(nnx.Module):
    """``D(x_prev (b,d), x_t (b,d), t (b,)) -> logits (b, 1)`` with Fourier input features
    (``image_shape``: images of this shape, flattened inside, as the generator)."""

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 256,
        depth: int = 3,
        t_emb_dim: int = 32,
        octaves: int = 6,
        length: float = 4.0,
        image_shape: tuple[int, ...] | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        self.t_emb_dim, self.octaves, self.length = t_emb_dim, octaves, length
        self.image_shape = None if image_shape is None else tuple(image_shape)
        din = 2 * dim * (1 + 2 * octaves) + t_emb_dim
        self.net = _Stack(din, hidden, depth, 1, rngs=rngs)

    def __call__(
        self, x_prev: Float[Array, "b ..."], x_t: Float[Array, "b ..."], t: Num[Array, " b"]
    ) -> Float[Array, "b 1"]:
        x_prev = _flatten(x_prev, self.image_shape, "x_prev")
        x_t = _flatten(x_t, self.image_shape, "x_t")
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
        h = jnp.concatenate(
            [
                fourier_features(jnp.concatenate([x_prev, x_t], -1), self.octaves, self.length),
                sinusoidal_embedding(t, self.t_emb_dim),
            ],
            axis=-1,
        )
        return self.net(h, lambda a: jax.nn.leaky_relu(a, 0.2))
