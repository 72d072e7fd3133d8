"""LSGM's autoencoders: an NVAE-style hierarchical VAE and a plain convolutional VAE.

NVAE as used in LSGM (Vahdat et al. 2021, NVlabs/LSGM ``nvae.py``): residual cells, a hierarchical
posterior q(z_l | x, z_<l) over several latent groups per scale, *every* group with prior N(0, I)
(no learnt hierarchical prior), posterior mean / log-std soft-clamped to 5 tanh(. / 5). The groups
of the top (smallest) scale, concatenated along channels, are what the score model sees.

Deviations from NVAE (documented in docs/networks.md): GroupNorm instead of (synchronised)
BatchNorm, so the network has no mutable state; no weight normalisation; no IAF flow cells;
plain residual cells (GN-Swish-conv x2 + optional squeeze-excitation) also in the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff.nets.layers import GroupNorm, conv, dense, naive_upsample_2d


def soft_clamp(x: Array, c: float = 5.0) -> Array:
    """``c * tanh(x / c)`` (NVAE's soft clamp of the posterior parameters)."""
    return c * jnp.tanh(x / c)


class SqueezeExcite(nnx.Module):
    """Squeeze-and-excitation: channel gates from the spatial mean (reduction 16, min 4)."""

    def __init__(self, c: int, *, rngs: nnx.Rngs):
        r = max(c // 16, 4)
        self.fc0 = dense(c, r, rngs=rngs)
        self.fc1 = dense(r, c, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        s = x.astype(jnp.float32).mean(axis=(1, 2))
        g = jax.nn.sigmoid(self.fc1(jax.nn.relu(self.fc0(s))))
        return x * g[:, None, None, :].astype(x.dtype)


class ResCell(nnx.Module):
    """NVAE residual cell ``x + 0.1 * f(x)``, f = GN-Swish-conv3x3-GN-Swish-conv3x3[-SE].

    ``kind='down'`` halves the resolution (stride-2 first conv, stride-2 1x1 skip), ``'up'``
    doubles it (nearest upsampling, 1x1 skip conv).
    """

    def __init__(
        self, cin: int, cout: int, kind: str = "normal", use_se: bool = True, *, dtype, rngs
    ):
        self.kind = kind
        stride = 2 if kind == "down" else 1
        pad = ((1, 1), (1, 1))
        self.n0 = GroupNorm(cin, dtype=dtype)
        self.c0 = conv(cin, cout, 3, stride=stride, padding=pad, dtype=dtype, rngs=rngs)
        self.n1 = GroupNorm(cout, dtype=dtype)
        self.c1 = conv(cout, cout, 3, dtype=dtype, rngs=rngs)
        self.se = SqueezeExcite(cout, rngs=rngs) if use_se else None
        self.skip = (
            conv(cin, cout, 1, stride=stride, dtype=dtype, rngs=rngs)
            if (cin != cout or kind != "normal")
            else None
        )
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        x = x.astype(self.dtype)
        if self.kind == "up":
            x = naive_upsample_2d(x)
        h = self.c0(jax.nn.silu(self.n0(x)))
        h = self.c1(jax.nn.silu(self.n1(h)))
        if self.se is not None:
            h = self.se(h)
        s = self.skip(x) if self.skip is not None else x
        return s + 0.1 * h


def _widths(c: int, mult: Sequence[int], n: int) -> list[int]:
    """Channels after each of n resolution changes: c * mult[i+1] (last multiplier repeated)."""
    return [c * mult[min(i + 1, len(mult) - 1)] for i in range(n)]


class NVAE(nnx.Module):
    """Hierarchical VAE. ``__call__(x, key) -> dict`` with decoder ``logits``, latent groups ``z``,
    posterior ``mu`` / ``log_sigma`` (lists over groups, top scale first).

    Args (LSGM / NVAE flag names):
      image_size, in_ch: input images (b, image_size, image_size, in_ch) in [-1, 1].
      out_ch: channels of the decoder's output distribution parameters (100 for a 10-component
        discretised logistic mixture of RGB, 1 for Bernoulli logits).
      num_channels: num_channels_enc = num_channels_dec; channel_mult: per-resolution multiplier.
      num_preprocess_blocks / num_preprocess_cells: downsampling blocks before the latents (each
        ends in a 'down' cell); num_postprocess_* mirror them in the decoder.
      num_latent_scales, num_groups_per_scale, num_latent_per_group: the latent hierarchy; the
        top scale has spatial size image_size / 2^(num_preprocess_blocks + num_latent_scales - 1).
      num_cell_per_cond_enc / _dec: residual cells between groups.
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        in_ch: int = 3,
        out_ch: int = 100,
        num_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2),
        num_preprocess_blocks: int = 1,
        num_preprocess_cells: int = 2,
        num_postprocess_blocks: int = 1,
        num_postprocess_cells: int = 2,
        num_latent_scales: int = 1,
        num_groups_per_scale: int = 20,
        num_latent_per_group: int = 9,
        num_cell_per_cond_enc: int = 2,
        num_cell_per_cond_dec: int = 2,
        use_se: bool = True,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, rngs=rngs)
        self.S, self.G, self.L = num_latent_scales, num_groups_per_scale, num_latent_per_group
        widths = _widths(num_channels, channel_mult, num_preprocess_blocks + num_latent_scales - 1)
        self.stem = conv(in_ch, num_channels, 3, **kw)
        pre, c = [], num_channels
        for b in range(num_preprocess_blocks):
            for i in range(num_preprocess_cells):
                last = i == num_preprocess_cells - 1
                cout = widths[b] if last else c
                pre.append(ResCell(c, cout, "down" if last else "normal", use_se, **kw))
                c = cout
        self.pre = nnx.List(pre)
        # Encoder tower, fine -> coarse; scale_ch[s] is the width at latent scale s (s=0 finest).
        enc, enc_down, scale_ch = [], [], []
        for s in range(num_latent_scales):
            scale_ch.append(c)
            enc.append(
                nnx.List(
                    [
                        ResCell(c, c, "normal", use_se, **kw)
                        for _ in range(num_groups_per_scale * num_cell_per_cond_enc)
                    ]
                )
            )
            if s < num_latent_scales - 1:
                cout = widths[num_preprocess_blocks + s]
                enc_down.append(ResCell(c, cout, "down", use_se, **kw))
                c = cout
        self.enc, self.enc_down = nnx.List(enc), nnx.List(enc_down)
        self.cpg = num_cell_per_cond_enc
        self.enc0 = conv(c, c, 1, **kw)
        top = image_size // 2 ** (num_preprocess_blocks + num_latent_scales - 1)
        self.top_size = top
        self.prior_ftr0 = nnx.Param(jnp.zeros((top, top, c), jnp.float32))
        # Per-group heads, decoder order (top scale first).
        samplers, combiners_e, eps_convs, combiners_d, dec_cells, dec_up = [], [], [], [], [], []
        for s in reversed(range(num_latent_scales)):
            cs = scale_ch[s]
            for _ in range(num_groups_per_scale):
                samplers.append(conv(cs, 2 * self.L, 3, **kw))
                combiners_e.append(conv(cs, cs, 1, **kw))
                eps_convs.append(conv(self.L, cs, 3, **kw))
                combiners_d.append(conv(2 * cs, cs, 1, **kw))
                dec_cells.append(
                    nnx.List(
                        [
                            ResCell(cs, cs, "normal", use_se, **kw)
                            for _ in range(num_cell_per_cond_dec)
                        ]
                    )
                )
            if s > 0:
                dec_up.append(ResCell(cs, scale_ch[s - 1], "up", use_se, **kw))
        self.samplers, self.combiners_e = nnx.List(samplers), nnx.List(combiners_e)
        self.eps_convs, self.combiners_d = nnx.List(eps_convs), nnx.List(combiners_d)
        self.dec_cells, self.dec_up = nnx.List(dec_cells), nnx.List(dec_up)
        # Postprocess: mirror of the preprocessing, ending at num_channels.
        post, c = [], scale_ch[0]
        post_w = list(reversed([num_channels] + widths[: num_postprocess_blocks - 1]))
        for b in range(num_postprocess_blocks):
            for i in range(num_postprocess_cells):
                first = i == 0
                cout = post_w[b] if first else c
                post.append(ResCell(c, cout, "up" if first else "normal", use_se, **kw))
                c = cout
        self.post = nnx.List(post)
        self.out_norm = GroupNorm(c, dtype=jnp.float32)
        self.out_conv = conv(c, out_ch, 3, dtype=jnp.float32, rngs=rngs)

    # -- encoder / decoder ----------------------------------------------------------------------

    def _enc_features(self, x: Array) -> list[Array]:
        h = self.stem(x)
        for cell in self.pre:
            h = cell(h)
        feats = []  # one per group, fine -> coarse
        for s in range(self.S):
            for g in range(self.G):
                for i in range(self.cpg):
                    h = self.enc[s][g * self.cpg + i](h)
                feats.append(h)
            if s < self.S - 1:
                h = self.enc_down[s](h)
        feats[-1] = self.enc0(jax.nn.elu(feats[-1]))
        return feats[::-1]  # top (coarsest) group first

    def _combine(self, k: int, s_state: Array | None, z: Array, b: int) -> Array:
        if s_state is None:
            s_state = jnp.broadcast_to(self.prior_ftr0[...], (b, *self.prior_ftr0.shape))
        s_state = s_state.astype(z.dtype)
        h = self.combiners_d[k](jnp.concatenate([s_state, self.eps_convs[k](z)], axis=-1))
        for cell in self.dec_cells[k]:
            h = cell(h)
        return h

    def _after_group(self, k: int, s_state: Array) -> Array:
        if (k + 1) % self.G == 0 and (k + 1) // self.G < self.S:
            s_state = self.dec_up[(k + 1) // self.G - 1](s_state)
        return s_state

    def encode(self, x: Float[Array, "b h w c"], key: jax.Array) -> dict:
        """Samples every group from the hierarchical posterior; returns ``z``, ``mu``,
        ``log_sigma`` (lists, top group first) and the final decoder state ``h``."""
        feats = self._enc_features(x)
        b = x.shape[0]
        s_state, zs, mus, lss = None, [], [], []
        for k, f in enumerate(feats):
            inp = f if s_state is None else f + self.combiners_e[k](s_state)
            mu, ls = jnp.split(self.samplers[k](inp).astype(jnp.float32), 2, axis=-1)
            mu, ls = soft_clamp(mu), soft_clamp(ls)
            z = mu + jnp.exp(ls) * jax.random.normal(jax.random.fold_in(key, k), mu.shape)
            zs.append(z), mus.append(mu), lss.append(ls)
            s_state = self._after_group(k, self._combine(k, s_state, z, b))
        return dict(z=zs, mu=mus, log_sigma=lss, h=s_state)

    def _output(self, h: Array) -> Array:
        for cell in self.post:
            h = cell(h)
        return self.out_conv(jax.nn.elu(self.out_norm(h.astype(jnp.float32)))).astype(jnp.float32)

    def decode(self, zs: Sequence[Float[Array, "b hl wl l"]]) -> Float[Array, "b h w o"]:
        """Decoder output parameters from all latent groups (top group first)."""
        s_state = None
        for k, z in enumerate(zs):
            s_state = self._after_group(k, self._combine(k, s_state, z, z.shape[0]))
        return self._output(s_state)

    def __call__(self, x: Float[Array, "b h w c"], key: jax.Array) -> dict:
        out = self.encode(x, key)
        out["logits"] = self._output(out.pop("h"))
        return out

    # -- the score model's view -----------------------------------------------------------------

    def top_latent(self, zs: Sequence[Array]) -> Float[Array, "b hl wl cl"]:
        """Concatenates the top scale's groups along channels (the SGM's input, e.g. 16x16x180)."""
        return jnp.concatenate(list(zs[: self.G]), axis=-1)

    def split_top(self, z_top: Float[Array, "b hl wl cl"]) -> list[Array]:
        """Inverse of ``top_latent``."""
        return list(jnp.split(z_top, self.G, axis=-1))


class ConvVAE(nnx.Module):
    """Plain convolutional VAE (a single latent tensor; the simpler option asked for in
    NVlabs/LSGM#14). ``__call__(x, key) -> dict(logits, z=[z], mu=[mu], log_sigma=[ls])``."""

    def __init__(
        self,
        *,
        image_size: int = 32,
        in_ch: int = 3,
        out_ch: int = 3,
        num_channels: int = 64,
        ch_mult: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        latent_ch: int = 8,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, rngs=rngs)
        self.stem = conv(in_ch, num_channels, 3, **kw)
        enc, c = [], num_channels
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                enc.append(ResCell(c, num_channels * m, "normal", False, **kw))
                c = num_channels * m
            if i < len(ch_mult) - 1:
                enc.append(ResCell(c, c, "down", False, **kw))
        self.enc = nnx.List(enc)
        self.to_latent = conv(c, 2 * latent_ch, 3, **kw)
        self.from_latent = conv(latent_ch, c, 3, **kw)
        dec = []
        for i, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks):
                dec.append(ResCell(c, num_channels * m, "normal", False, **kw))
                c = num_channels * m
            if i > 0:
                dec.append(ResCell(c, c, "up", False, **kw))
        self.dec = nnx.List(dec)
        self.out_norm = GroupNorm(c, dtype=jnp.float32)
        self.out_conv = conv(c, out_ch, 3, dtype=jnp.float32, rngs=rngs)
        self.top_size = image_size // 2 ** (len(ch_mult) - 1)

    def encode(self, x: Float[Array, "b h w c"], key: jax.Array) -> dict:
        h = self.stem(x)
        for cell in self.enc:
            h = cell(h)
        mu, ls = jnp.split(self.to_latent(h).astype(jnp.float32), 2, axis=-1)
        mu, ls = soft_clamp(mu), soft_clamp(ls)
        z = mu + jnp.exp(ls) * jax.random.normal(key, mu.shape)
        return dict(z=[z], mu=[mu], log_sigma=[ls])

    def decode(self, zs: Sequence[Array]) -> Float[Array, "b h w o"]:
        h = self.from_latent(zs[0])
        for cell in self.dec:
            h = cell(h)
        return self.out_conv(jax.nn.elu(self.out_norm(h.astype(jnp.float32)))).astype(jnp.float32)

    def __call__(self, x: Float[Array, "b h w c"], key: jax.Array) -> dict:
        out = self.encode(x, key)
        out["logits"] = self.decode(out["z"])
        return out

    def top_latent(self, zs: Sequence[Array]) -> Array:
        return zs[0]

    def split_top(self, z_top: Array) -> list[Array]:
        return [z_top]
