"""LSGM's autoencoders: NVAE (Vahdat & Kautz 2020) as modified in LSGM, and a plain conv VAE.

NVAE as used in LSGM (Vahdat et al. 2021, NVlabs/LSGM ``nvae.py``): a hierarchical posterior
q(z_l | x, z_<l) over several latent groups per scale, *every* group with prior N(0, I) (no learnt
hierarchical prior: LSGM's ``dec_sampler`` is empty), posterior mean / log-std soft-clamped to
5 tanh(. / 5). The groups of the top (smallest) scale, concatenated along channels, are what the
score model sees. The architecture, layer for layer, and the trainable-parameter count are the
official ones (checked in tests/test_param_counts.py); the cells are in ``nvae_cells.py``.

Deviations (docs/networks.md): BatchNorm keeps running averages only with ``bn_stats=True``
(LSGM's method sets it; the zoo's networks otherwise keep no mutable state, see
``nvae_cells.BatchNorm``). ``num_nf`` > 0 adds LSGM's IAF cells (``nvae_flows.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff import rng
from jaxdiff.nets.layers import GroupNorm, conv, naive_upsample_2d
from jaxdiff.nets.nvae_cells import BNSwishConv, Cell, SqueezeExcite, WNConv
from jaxdiff.nets.nvae_flows import PairedCellAR


def soft_clamp(x: Array, c: float = 5.0) -> Array:
    """``c * tanh(x / c)`` (NVAE's soft clamp of the posterior parameters)."""
    return c * jnp.tanh(x / c)


class ResCell(nnx.Module):
    """GroupNorm residual cell ``x + 0.1 * f(x)``, f = GN-Swish-conv3x3-GN-Swish-conv3x3[-SE]
    (the plain ``ConvVAE``'s cell).

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


# Cell ops per role for LSGM's ``--arch_instance`` (util/utils.py ``get_arch_cells``): (stem-side
# preprocessing and encoder cells, decoder cells, postprocessing cells).
ARCH_INSTANCES = {
    "res_bnswish": ("res_bnswish", "res_bnswish", "res_bnswish"),
    "res_mbconv": ("res_bnswish", "mconv_e6k5g0", "mconv_e3k5g0"),
}


class NVAE(nnx.Module):
    """LSGM's NVAE. ``__call__(x, key) -> dict`` with decoder ``logits``, latent groups ``z``,
    posterior ``mu`` / ``log_sigma`` (lists over groups, top scale first); with IAF cells also
    the pre-flow Gaussian samples ``z_q`` and each group's ``log_det`` (b,).

    Layout (LSGM ``nvae.py``): stem conv -> preprocessing cells (each block ends in a 'down'
    cell) -> encoder tower (``num_cell_per_cond_enc`` cells per group, a 'down' cell between
    scales) -> for each group, top first: posterior head ``enc_sampler`` (ELU, 3x3 conv to
    (mu, log sigma)) on the encoder feature plus, below the top group, a 1x1 ``enc_combiner`` of
    the decoder state; ``eps_conv`` (3x3) of the sample, concatenated with the decoder state
    (``prior_ftr0``, a learnt tensor, for the top group) and mixed by the 1x1 ``dec_combiner``,
    then ``num_cell_per_cond_dec`` decoder cells (an 'up' cell between scales) ->
    postprocessing cells (each block starts with an 'up' cell) -> ELU, 3x3 conv
    (``image_conditional``). Every conv but those inside mbconv ops is weight-normalised.

    Args (LSGM flag names):
      image_size, in_ch: input images (b, image_size, image_size, in_ch) in [-1, 1].
      out_ch: channels of the decoder's output distribution parameters (100 for a 10-component
        discretised logistic mixture of RGB, 1 for Bernoulli logits).
      num_channels: num_channels_enc = num_channels_dec; channel_mult: one multiplier per
        resolution, ``len == num_preprocess_blocks + num_latent_scales``.
      num_preprocess_blocks / _cells, num_postprocess_blocks / _cells: the resolution changes
        before and after the latent scales (blocks must be equal, as in LSGM).
      num_latent_scales, num_groups_per_scale, num_latent_per_group: the latent hierarchy; the
        top scale has spatial size image_size / 2^(num_preprocess_blocks + num_latent_scales - 1).
      num_cell_per_cond_enc / _dec: residual cells per group.
      arch_instance: 'res_bnswish' (BN-Swish-conv x2 cells everywhere) or 'res_mbconv' (LSGM's
        default: depthwise inverted-residual cells, expansion 6 / 3, in the decoder / post).
      progressive_input: 'none' or 'input_skip' (``--progressive_input_vae``: after each encoder
        'down' cell, add a stride-2 BN-Swish-conv of the previous scale's input pyramid).
      use_se: squeeze-and-excitation in every cell.
      num_nf: ``PairedCellAR`` flows applied to each group's posterior sample (LSGM's
        ``--num_nf``; 2 for CIFAR-10's best-NLL and the CelebA-HQ VAEs [README]).
      bn_stats: every BatchNorm keeps PyTorch's running averages (``running_mean`` /
        ``running_var``, ``nnx.BatchStat``; momentum 0.05) for evaluation mode
        (``nvae_cells.set_bn_mode``).
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
        arch_instance: str = "res_mbconv",
        progressive_input: str = "none",
        use_se: bool = True,
        num_nf: int = 0,
        bn_stats: bool = False,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        n_res = num_preprocess_blocks + num_latent_scales
        if len(channel_mult) != n_res:
            raise ValueError(
                f"channel_mult needs num_preprocess_blocks + num_latent_scales = {n_res} entries,"
                f" got {tuple(channel_mult)}"
            )
        if num_postprocess_blocks != num_preprocess_blocks:
            raise ValueError("LSGM's NVAE needs num_postprocess_blocks == num_preprocess_blocks")
        if arch_instance not in ARCH_INSTANCES:
            raise ValueError(f"arch_instance is one of {sorted(ARCH_INSTANCES)}")
        if progressive_input not in ("none", "input_skip"):
            raise ValueError("progressive_input is 'none' or 'input_skip'")
        enc_op, dec_op, post_op = ARCH_INSTANCES[arch_instance]
        kw = dict(dtype=dtype, rngs=rngs)
        S, G, L = num_latent_scales, num_groups_per_scale, num_latent_per_group
        self.S, self.G, self.L = S, G, L
        if num_nf < 0:
            raise ValueError(f"num_nf must be >= 0, got {num_nf}")
        self.num_nf = int(num_nf)

        def ch(i: int) -> int:
            return num_channels * channel_mult[i]

        def cell(i: int, o: int, kind: str, op: str) -> Cell:
            return Cell(ch(i), ch(o), kind, op, use_se, bn_stats=bn_stats, **kw)

        # Preprocessing and encoder tower (bottom-up); r indexes the resolution.
        self.stem = WNConv(in_ch, ch(0), 3, **kw)
        pre, r = [], 0
        for _ in range(num_preprocess_blocks):
            for i in range(num_preprocess_cells):
                last = i == num_preprocess_cells - 1
                pre.append(cell(r, r + 1, "down", enc_op) if last else cell(r, r, "normal", enc_op))
                r += last
        self.pre = nnx.List(pre)
        enc, enc_down, input_skip = [], [], []
        for s in range(S):
            for _ in range(G):
                cells = [cell(r, r, "normal", enc_op) for _ in range(num_cell_per_cond_enc)]
                enc.append(nnx.List(cells))
            if s < S - 1:
                enc_down.append(cell(r, r + 1, "down", enc_op))
                if progressive_input == "input_skip":
                    input_skip.append(BNSwishConv(ch(r), ch(r + 1), 2, bn_stats=bn_stats, **kw))
                r += 1
        self.enc, self.enc_down, self.input_skip = (
            nnx.List(enc),
            nnx.List(enc_down),
            nnx.List(input_skip),
        )
        # Per-group heads and decoder tower (top-down, top group first).
        self.top_size = image_size // 2 ** (n_res - 1)
        u = jax.random.uniform(rngs.params(), (self.top_size, self.top_size, ch(r)))
        self.prior_ftr0 = nnx.Param(u)  # torch.rand
        enc_comb, samplers, eps_convs, dec_comb, dec, dec_up = [], [], [], [], [], []
        for s in range(S):
            for g in range(G):
                if s or g:  # the top group has no decoder state to combine with
                    enc_comb.append(WNConv(ch(r), ch(r), 1, **kw))
                samplers.append(WNConv(ch(r), 2 * L, 3, **kw))
                eps_convs.append(WNConv(L, L, 3, **kw))
                dec_comb.append(WNConv(ch(r) + L, ch(r), 1, **kw))
                dec.append(
                    nnx.List([cell(r, r, "normal", dec_op) for _ in range(num_cell_per_cond_dec)])
                )
            if s < S - 1:
                dec_up.append(cell(r, r - 1, "up", dec_op))
                r -= 1
        self.enc_comb, self.samplers = nnx.List(enc_comb), nnx.List(samplers)
        # IAF cells, num_nf per group in the groups' order (LSGM's nf_cells)
        nf = [PairedCellAR(L, rngs=rngs) for _ in range(S * G * self.num_nf)]
        self.nf_cells = nnx.List(nf)
        self.eps_convs, self.dec_comb = nnx.List(eps_convs), nnx.List(dec_comb)
        self.dec, self.dec_up = nnx.List(dec), nnx.List(dec_up)
        # Postprocessing (each block starts with an 'up' cell) and the output layer.
        post = []
        for _ in range(num_postprocess_blocks):
            for i in range(num_postprocess_cells):
                post.append(
                    cell(r, r - 1, "up", post_op) if i == 0 else cell(r, r, "normal", post_op)
                )
                r -= i == 0
        self.post = nnx.List(post)
        self.image_conditional = WNConv(ch(0), out_ch, 3, dtype=jnp.float32, rngs=rngs)

    # -- encoder / decoder ----------------------------------------------------------------------

    def _enc_features(self, x: Array) -> list[Array]:
        """The encoder feature each group's posterior sees, top (coarsest) group first."""
        h = self.stem(x)
        for c in self.pre:
            h = c(h)
        pyramid, feats = h, []
        for s in range(self.S):
            for g in range(self.G):
                for c in self.enc[s * self.G + g]:
                    h = c(h)
                feats.append(h)
            if s < self.S - 1:
                h = self.enc_down[s](h)
                if len(self.input_skip):
                    pyramid = self.input_skip[s](pyramid)
                    h = h + pyramid
        return feats[::-1]

    def _combine(self, k: int, s_state: Array | None, z: Array, b: int) -> Array:
        """Decoder group k: dec_combiner(state, eps_conv(z)), its cells, and the 'up' cell that
        ends a scale."""
        if s_state is None:
            s_state = jnp.broadcast_to(self.prior_ftr0[...], (b, *self.prior_ftr0.shape))
        s_state = s_state.astype(self.stem.dtype)
        h = self.dec_comb[k](jnp.concatenate([s_state, self.eps_convs[k](z)], axis=-1))
        for c in self.dec[k]:
            h = c(h)
        if (k + 1) % self.G == 0 and (k + 1) // self.G < self.S:
            h = self.dec_up[(k + 1) // self.G - 1](h)
        return h

    def encode(self, x: Float[Array, "b h w c"], key: jax.Array) -> dict:
        """Samples every group from the hierarchical posterior; returns ``z``, ``mu``,
        ``log_sigma`` (lists, top group first), the pre-flow samples ``z_q`` and the flows'
        ``log_det`` per group and example (0: the IAF cells are volume-preserving), and the final
        decoder state ``h``. log q(z | x) = log N(z_q; mu, sigma) - log_det (LSGM nvae.py)."""
        feats = self._enc_features(x)
        b = x.shape[0]
        s_state, zs, mus, lss, zqs, lds = None, [], [], [], [], []
        for k, f in enumerate(feats):
            inp = f if k == 0 else f + self.enc_comb[k - 1](s_state)
            param = self.samplers[k](jax.nn.elu(inp)).astype(jnp.float32)
            mu, ls = jnp.split(param, 2, axis=-1)
            mu, ls = soft_clamp(mu), soft_clamp(ls)  # log_sig_q_scale 5
            z_q = mu + jnp.exp(ls) * rng.normal(rng.fold_in(key, k), mu.shape)
            z, log_det = z_q, jnp.zeros((b,), jnp.float32)
            for n in range(self.num_nf):
                z, ld = self.nf_cells[k * self.num_nf + n](z)
                log_det = log_det + ld.sum(axis=(1, 2, 3))
            zs.append(z), mus.append(mu), lss.append(ls), zqs.append(z_q), lds.append(log_det)
            s_state = self._combine(k, s_state, z, b)
        return dict(z=zs, mu=mus, log_sigma=lss, z_q=zqs, log_det=lds, h=s_state)

    def _output(self, h: Array) -> Array:
        for c in self.post:
            h = c(h)
        return self.image_conditional(jax.nn.elu(h.astype(jnp.float32)))

    def decode(self, zs: Sequence[Float[Array, "b hl wl l"]]) -> Float[Array, "b h w o"]:
        """Decoder output parameters from all latent groups (top group first)."""
        s_state = None
        for k, z in enumerate(zs):
            s_state = self._combine(k, s_state, z, z.shape[0])
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
        z = mu + jnp.exp(ls) * rng.normal(key, mu.shape)
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
