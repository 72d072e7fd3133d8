"""DDGAN's time-dependent discriminators D(x_{t-1}, x_t, t) (Xiao et al. 2022, official
``score_sde/models/discriminator.py``): small (32x32) and large (256x256)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Num

from jaxdiff.nets.embeddings import sinusoidal_embedding
from jaxdiff.nets.layers import SQRT2, conv, dense, downsample_2d, minibatch_stddev


def leaky_relu(x: Array) -> Array:
    return jax.nn.leaky_relu(x, 0.2)


class DownConvBlock(nnx.Module):
    """act -> conv3x3 -> +Dense(t_emb) -> act -> [FIR down] -> conv3x3 (init ~0);
    skip: [FIR down] -> 1x1 conv (no bias); output (out + skip) / sqrt(2)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        t_emb_dim: int,
        *,
        downsample: bool = False,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.conv1 = conv(cin, cout, 3, dtype=dtype, rngs=rngs)
        self.conv2 = conv(cout, cout, 3, init_scale=0.0, dtype=dtype, rngs=rngs)
        self.dense_t = dense(t_emb_dim, cout, dtype=dtype, rngs=rngs)
        self.skip = conv(cin, cout, 1, use_bias=False, dtype=dtype, rngs=rngs)
        self.downsample, self.fir_k, self.dtype = downsample, tuple(fir_kernel), dtype

    def __call__(self, x: Float[Array, "b h w c"], t_emb: Float[Array, "b e"]) -> Array:
        x = x.astype(self.dtype)
        out = self.conv1(leaky_relu(x)) + self.dense_t(t_emb)[:, None, None, :]
        out = leaky_relu(out)
        if self.downsample:
            out = downsample_2d(out, self.fir_k)
            x = downsample_2d(x, self.fir_k)
        return (self.conv2(out) + self.skip(x)) / SQRT2


class DDGANDiscriminator(nnx.Module):
    """``D(x_prev (b,h,w,c), x_t (b,h,w,c), t (b,) integer labels) -> logits (b, 1)``.

    x_prev and x_t are concatenated along channels; a sinusoidal embedding of the integer label
    (``t_emb_dim``) goes through Dense -> LReLU -> Dense and a final LReLU, and biases the first
    conv of every block. Head: minibatch-stddev (group 4, 1 feature) -> conv3x3 -> LReLU ->
    *sum* over space -> Linear.

    Args:
      channels: image channels c (the input has 2c).
      ngf: base width (64 in all DDGAN runs).
      widths / downsample: per-block multipliers of ngf and whether the block halves the size.
        Small (32x32): (2, 4, 8, 8) with downsampling (F, T, T, T). Large (256x256):
        (4, 8, 8, 8, 8, 8) all downsampling.
      final_init_scale: init of the head conv (~0 in the small D, default 1 in the large D).
    """

    def __init__(
        self,
        channels: int = 3,
        ngf: int = 64,
        t_emb_dim: int = 256,
        widths: Sequence[int] = (2, 4, 8, 8),
        downsample: Sequence[bool] = (False, True, True, True),
        final_init_scale: float = 0.0,
        stddev_group: int = 4,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, rngs=rngs)
        self.t_emb_dim = t_emb_dim
        self.t0 = dense(t_emb_dim, t_emb_dim, rngs=rngs)
        self.t1 = dense(t_emb_dim, t_emb_dim, rngs=rngs)
        self.start = conv(2 * channels, 2 * ngf, 1, **kw)
        blocks, c = [], 2 * ngf
        for w, d in zip(widths, downsample, strict=True):
            blocks.append(DownConvBlock(c, ngf * w, t_emb_dim, downsample=d, **kw))
            c = ngf * w
        self.blocks = nnx.List(blocks)
        self.final = conv(c + 1, c, 3, init_scale=final_init_scale, **kw)
        self.end = dense(c, 1, rngs=rngs)
        self.stddev_group, self.dtype = stddev_group, dtype

    def __call__(
        self,
        x_prev: Float[Array, "b h w c"],
        x_t: Float[Array, "b h w c"],
        t: Num[Array, " b"],
    ) -> Float[Array, "b 1"]:
        e = sinusoidal_embedding(jnp.asarray(t, jnp.float32), self.t_emb_dim)
        t_emb = leaky_relu(self.t1(leaky_relu(self.t0(e))))
        h = self.start(jnp.concatenate([x_prev, x_t], axis=-1).astype(self.dtype))
        for block in self.blocks:
            h = block(h, t_emb)
        h = minibatch_stddev(h, self.stddev_group)
        h = leaky_relu(self.final(h)).astype(jnp.float32)
        return self.end(h.sum(axis=(1, 2)))


def ddgan_discriminator_small(channels: int = 3, ngf: int = 64, t_emb_dim: int = 256, **kw):
    """``Discriminator_small`` (CIFAR-10, StackedMNIST): 32 -> 4 over four blocks."""
    return DDGANDiscriminator(
        channels, ngf, t_emb_dim, (2, 4, 8, 8), (False, True, True, True), 0.0, **kw
    )


def ddgan_discriminator_large(channels: int = 3, ngf: int = 64, t_emb_dim: int = 256, **kw):
    """``Discriminator_large`` (CelebA-HQ 256, LSUN): 256 -> 4 over six downsampling blocks."""
    return DDGANDiscriminator(channels, ngf, t_emb_dim, (4, 8, 8, 8, 8, 8), (True,) * 6, 1.0, **kw)
