"""NCSN++ / DDPM++ U-Net (Song et al. 2021, score_sde ``models/ncsnpp.py``) with its options,
CLD's (x, v) input, LSGM's latent-space variant and DDGAN's z-conditioned generator (AdaGN).

The layer order and channel bookkeeping follow the official implementations (score_sde,
nv-tlabs/CLD-SGM, NVlabs/denoising-diffusion-gan, NVlabs/LSGM), so the paper configurations have
the official parameter counts (see docs/networks.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff.nets.embeddings import GaussianFourierEmbedding, sinusoidal_embedding
from jaxdiff.nets.layers import (
    AttnBlock,
    Downsample,
    GroupNorm,
    MappingNetwork,
    ResBlockBigGAN,
    ResBlockDDPM,
    Upsample,
    conv,
    dense,
    downsample_2d,
    naive_downsample_2d,
    naive_upsample_2d,
    skip_rescale,
    upsample_2d,
)


class Combine(nnx.Module):
    """score_sde's Combine for ``progressive_input='input_skip'``: 1x1 conv of the pyramid, then
    concatenation (``cat``) or sum with h."""

    def __init__(self, cin: int, cout: int, method: str, *, dtype, rngs: nnx.Rngs):
        self.proj = conv(cin, cout, 1, dtype=dtype, rngs=rngs)
        self.method = method

    def __call__(self, pyramid: Array, h: Array) -> Array:
        p = self.proj(pyramid)
        return jnp.concatenate([p, h], axis=-1) if self.method == "cat" else p + h


class NCSNpp(nnx.Module):
    """NCSN++ / DDPM++ U-Net: ``(x (b,h,w,in_ch), t (b,), z (b,nz) | None) -> (b,h,w,out_ch)``.

    Args (score_sde's ``config.model`` names):
      image_size, in_ch, out_ch: input resolution and channels (CLD: 6 in, 3 out).
      nf, ch_mult, num_res_blocks, attn_resolutions, dropout: width, per-level channel multipliers,
        residual blocks per level, resolutions with self-attention, dropout rate.
      resblock_type: ``'ddpm'`` or ``'biggan'``; resamp_with_conv: conv in (ddpm) resampling.
      fir, fir_kernel: FIR resampling; skip_rescale: residual sums divided by sqrt(2).
      progressive: ``'none' | 'output_skip' | 'residual'``; progressive_input:
        ``'none' | 'input_skip' | 'residual'``; progressive_combine: ``'sum' | 'cat'``.
      embedding_type: ``'fourier'`` (Gaussian Fourier features of log t, scale ``fourier_scale``)
        or ``'positional'`` (sinusoidal embedding of ``time_scale * t``: 999 for VP DDPM++ cont.,
        1000 for LSGM, 1 for DDGAN's integer step labels), or ``'random_fourier'`` (LSGM's
        ``--embedding_type fourier``, ``RandomFourierEmbedding``: ``embedding_dim / 2``
        frequencies ``W ~ N(0, fourier_scale^2)`` (``--embedding_scale``, 16 in its help), the
        features ``[sin, cos](t 2 pi W)`` of t itself, not its log, size ``embedding_dim``).
      embedding_dim: sinusoidal size / half the Fourier size (default nf); the time MLP has width
        4 * embedding_dim (LSGM: 128 -> 512 with nf 512).
      conditional: time conditioning on/off. init_scale: init of the last conv of each block.
      centered: inputs already in [-1, 1] (else x -> 2x - 1).
      nz, z_emb_dim, n_mlp: DDGAN latent z through a PixelNorm + MLP mapping network into
        adaptive GroupNorm in every residual block (nz = 0: no z).
      output_tanh: tanh on the output (DDGAN's x0 head).
      ve_sigma_min, ve_sigma_max: if > 0, the network is conditioned on the VE noise level
        ``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` (score_sde's continuous VE labels)
        instead of t: the embedding sees ``label_scale * sigma(t)`` (its log for Fourier
        features). ``label_scale = 0.5`` runs a score_sde model trained on [0, 1] data with
        ``centered = False`` on jaxdiff's [-1, 1] data, whose VE process has twice its sigmas.
      scale_by_sigma: divide the output by ``sigma(t)`` (score_sde's ``model.scale_by_sigma``;
        needs the VE noise levels).
      num_scales: if > 0, a discrete-time score_sde model (``training.continuous False``) with N
        noise levels (``models/utils.py: get_score_fn``). VE: the positional embedding sees the
        integer label ``i = round((1 - t)(N - 1))`` and ``sigma`` is the grid's level at it,
        ``sigma(1 - i / (N - 1))`` (the official ``sigmas[i]``, times ``1 / label_scale``). VP
        (``vp_beta = (beta_min, beta_max)``): the label is ``time_scale * t`` as for continuous
        models, and the output is multiplied by ``std(t) / sqrt(1 - alphabar_j)`` with
        ``j = floor((N - 1) t)`` on the chain ``beta_k = linspace(beta_min / N, beta_max / N)``:
        an eps-parameterised score ``-out / std(t)`` is the official ``-model / std_j``.
      mixing_logit_init: if not None, a per-channel learnt logit (LSGM's mixed score) is created
        as ``self.mixing_logit`` (shape (out_ch,)); the network does not use it itself.
      dtype: compute dtype; parameters, the time embedding, norm statistics and the output conv
        are float32.
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        in_ch: int = 3,
        out_ch: int | None = None,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resblock_type: str = "biggan",
        resamp_with_conv: bool = True,
        fir: bool = False,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        progressive: str = "none",
        progressive_input: str = "none",
        progressive_combine: str = "sum",
        embedding_type: str = "positional",
        fourier_scale: float = 16.0,
        time_scale: float = 1.0,
        embedding_dim: int | None = None,
        conditional: bool = True,
        init_scale: float = 0.0,
        centered: bool = True,
        nz: int = 0,
        z_emb_dim: int = 256,
        n_mlp: int = 4,
        output_tanh: bool = False,
        ve_sigma_min: float = 0.0,
        ve_sigma_max: float = 0.0,
        label_scale: float = 1.0,
        scale_by_sigma: bool = False,
        num_scales: int = 0,
        vp_beta: Sequence[float] = (),
        mixing_logit_init: float | None = None,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        assert progressive in ("none", "output_skip", "residual")
        assert progressive_input in ("none", "input_skip", "residual")
        assert embedding_type in ("fourier", "positional", "random_fourier")
        assert resblock_type in ("ddpm", "biggan")
        if (ve_sigma_min > 0) != (ve_sigma_max > 0) or ve_sigma_min > ve_sigma_max:
            raise ValueError(
                f"ve_sigma_min {ve_sigma_min} and ve_sigma_max {ve_sigma_max}: give both, "
                "0 < min <= max, or neither"
            )
        if scale_by_sigma and not ve_sigma_max:
            raise ValueError("scale_by_sigma needs the VE noise levels ve_sigma_min/ve_sigma_max")
        if num_scales and not ve_sigma_max and len(vp_beta) != 2:
            raise ValueError("num_scales needs the VE noise levels or vp_beta (beta_min, beta_max)")
        if num_scales and ve_sigma_max and embedding_type != "positional":
            raise ValueError("a discrete-time VE model embeds its integer label: positional")
        out_ch = out_ch or in_ch
        self.cfg = dict(
            in_ch=in_ch,
            out_ch=out_ch,
            num_res_blocks=num_res_blocks,
            attn=tuple(attn_resolutions),
            resblock_type=resblock_type,
            skip_rescale=skip_rescale,
            progressive=progressive,
            progressive_input=progressive_input,
            embedding_type=embedding_type,
            time_scale=time_scale,
            conditional=conditional,
            centered=centered,
            output_tanh=output_tanh,
            ve_sigma=(float(ve_sigma_min), float(ve_sigma_max)) if ve_sigma_max else None,
            label_scale=float(label_scale),
            scale_by_sigma=scale_by_sigma,
            num_scales=int(num_scales),
            vp_beta=tuple(float(b) for b in vp_beta) if num_scales else None,
        )
        self.dtype = dtype
        self.num_levels = len(ch_mult)
        res = [image_size // 2**i for i in range(self.num_levels)]
        emb = embedding_dim or nf
        self.emb_dim = emb

        # Time embedding: Fourier features of log t or sinusoids of time_scale * t, then an MLP.
        n_freq = {"fourier": emb, "random_fourier": emb // 2}.get(embedding_type)
        self.fourier = (
            GaussianFourierEmbedding(n_freq, fourier_scale, rngs=rngs) if n_freq else None
        )
        temb_in = 2 * emb if embedding_type == "fourier" else emb
        temb_dim = 4 * emb if conditional else None
        self.temb0 = dense(temb_in, 4 * emb, rngs=rngs) if conditional else None
        self.temb1 = dense(4 * emb, 4 * emb, rngs=rngs) if conditional else None
        self.mapping = MappingNetwork(nz, z_emb_dim, n_mlp, rngs=rngs) if nz else None
        zemb_dim = z_emb_dim if nz else None
        self.mixing_logit = (
            nnx.Param(jnp.full((out_ch,), mixing_logit_init, jnp.float32))
            if mixing_logit_init is not None
            else None
        )

        kw = dict(dtype=dtype, rngs=rngs)
        rb_kw = dict(
            temb_dim=temb_dim,
            zemb_dim=zemb_dim,
            dropout=dropout,
            skip_rescale=skip_rescale,
            init_scale=init_scale,
            **kw,
        )
        if resblock_type == "biggan":
            rb_kw.update(fir=fir, fir_kernel=fir_kernel)
            block = ResBlockBigGAN
        else:
            block = ResBlockDDPM

        def attn(c):
            return AttnBlock(c, skip_rescale=skip_rescale, init_scale=init_scale, **kw)

        # Downsampling path.
        self.conv_in = conv(in_ch, nf, 3, **kw)
        down, down_attn, down_res, pyr_down = [], [], [], []
        hs_c = [nf]
        c = nf
        pyr_c = in_ch
        for lvl in range(self.num_levels):
            for _ in range(num_res_blocks):
                down.append(block(c, nf * ch_mult[lvl], **rb_kw))
                c = nf * ch_mult[lvl]
                down_attn.append(attn(c) if res[lvl] in self.cfg["attn"] else None)
                hs_c.append(c)
            if lvl != self.num_levels - 1:
                if resblock_type == "ddpm":
                    down_res.append(
                        Downsample(
                            c, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel, **kw
                        )
                    )
                else:
                    down_res.append(block(c, down=True, **rb_kw))
                if progressive_input == "input_skip":
                    pyr_down.append(Combine(pyr_c, c, progressive_combine, **kw))
                    if progressive_combine == "cat":
                        c *= 2
                elif progressive_input == "residual":
                    pyr_down.append(
                        Downsample(pyr_c, c, with_conv=True, fir=fir, fir_kernel=fir_kernel, **kw)
                    )
                    pyr_c = c
                hs_c.append(c)
        self.down = nnx.List(down)
        self.down_attn = nnx.List(down_attn)
        self.down_res = nnx.List(down_res)
        self.pyr_down = nnx.List(pyr_down)
        self.fir, self.fir_kernel = fir, tuple(fir_kernel)

        # Middle.
        c = hs_c[-1]
        self.mid0 = block(c, **rb_kw)
        self.mid_attn = attn(c)
        self.mid1 = block(c, **rb_kw)

        # Upsampling path.
        up, up_attn, up_res, pyr_norm, pyr_conv, pyr_up = [], [], [], [], [], []
        pyramid_c = 0
        for lvl in reversed(range(self.num_levels)):
            for _ in range(num_res_blocks + 1):
                up.append(block(c + hs_c.pop(), nf * ch_mult[lvl], **rb_kw))
                c = nf * ch_mult[lvl]
            up_attn.append(attn(c) if res[lvl] in self.cfg["attn"] else None)
            if progressive != "none":
                if lvl == self.num_levels - 1 or progressive == "output_skip":
                    pyr_norm.append(GroupNorm(c, dtype=dtype))
                    target = out_ch if progressive == "output_skip" else c
                    scale = init_scale if progressive == "output_skip" else 1.0
                    pyr_conv.append(
                        conv(c, target, 3, init_scale=scale, dtype=jnp.float32, rngs=rngs)
                    )
                    pyramid_c = target
                    pyr_up.append(None)
                else:  # residual, lower levels
                    pyr_norm.append(None)
                    pyr_conv.append(None)
                    pyr_up.append(
                        Upsample(pyramid_c, c, with_conv=True, fir=fir, fir_kernel=fir_kernel, **kw)
                    )
                    pyramid_c = c
            if lvl != 0:
                if resblock_type == "ddpm":
                    up_res.append(
                        Upsample(
                            c, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel, **kw
                        )
                    )
                else:
                    up_res.append(block(c, up=True, **rb_kw))
        assert not hs_c
        self.up = nnx.List(up)
        self.up_attn = nnx.List(up_attn)
        self.up_res = nnx.List(up_res)
        self.pyr_norm = nnx.List(pyr_norm)
        self.pyr_conv = nnx.List(pyr_conv)
        self.pyr_up = nnx.List(pyr_up)
        if progressive != "output_skip":
            self.norm_out = GroupNorm(c, dtype=jnp.float32)
            self.conv_out = conv(c, out_ch, 3, init_scale=init_scale, dtype=jnp.float32, rngs=rngs)

    # ------------------------------------------------------------------------------------------

    def sigma(self, t: Float[Array, " b"]) -> Float[Array, " b"]:
        """The VE noise level ``sigma_min (sigma_max / sigma_min)^t`` (score_sde's VESDE std)."""
        lo, hi = self.cfg["ve_sigma"]
        return lo * (hi / lo) ** t.astype(jnp.float32)

    def ve_label(self, t: Float[Array, " b"]) -> Float[Array, " b"]:
        """A discrete-time VE model's integer label ``round((1 - t)(N - 1))`` (as float32)."""
        n = self.cfg["num_scales"]
        return jnp.round((1.0 - t.astype(jnp.float32)) * (n - 1))

    def used_sigma(self, t: Float[Array, " b"]) -> Float[Array, " b"]:
        """The VE noise level the output is divided by: ``sigma(t)``, or for a discrete-time
        model the grid's level at its label."""
        n = self.cfg["num_scales"]
        return self.sigma(1.0 - self.ve_label(t) / (n - 1) if n else t)

    def vp_discrete_factor(self, t: Float[Array, " b"]) -> Float[Array, " b"]:
        """``std(t) / sqrt(1 - alphabar_j)``, ``j = floor((N - 1) t)``: the continuous VP std over
        the official chain's (float32 betas and stds, the products accumulated in float64 as
        torch's CPU cumprod does)."""
        n = self.cfg["num_scales"]
        b0, b1 = self.cfg["vp_beta"]
        betas = np.linspace(b0 / n, b1 / n, n, dtype=np.float32)
        alphabar = np.cumprod((1.0 - betas).astype(np.float64)).astype(np.float32)
        table = jnp.asarray(np.sqrt(1.0 - alphabar))
        t = t.astype(jnp.float32)
        j = jnp.clip((t * (n - 1)).astype(jnp.int32), 0, n - 1)  # (t in [0, 1]: no-op)
        std = jnp.sqrt(-jnp.expm1(-0.5 * t**2 * (b1 - b0) - t * b0))
        return std / table[j]

    def time_embedding(self, t: Float[Array, " b"]) -> Float[Array, "b e"] | None:
        """Time embedding in float32 (computed outside autocast in the references)."""
        if not self.cfg["conditional"]:
            return None
        t = t.astype(jnp.float32)
        if self.cfg["ve_sigma"] is not None and self.cfg["num_scales"]:
            t = self.ve_label(t)
        elif self.cfg["ve_sigma"] is not None:
            t = self.cfg["label_scale"] * self.sigma(t)
        if self.cfg["embedding_type"] == "random_fourier":  # LSGM: t @ (W 2 pi), W scaled first
            w = jax.lax.stop_gradient(self.fourier.W[...]) * 2.0 * 3.14159265359
            proj = t[:, None] * w[None, :]
            e = jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)
        elif self.fourier is not None:
            e = self.fourier(jnp.log(t))
        else:
            e = sinusoidal_embedding(t * self.cfg["time_scale"], self.emb_dim)
        return self.temb1(jax.nn.silu(self.temb0(e)))

    def __call__(
        self,
        x: Float[Array, "b h w c"],
        t: Float[Array, " b"],
        z: Float[Array, "b nz"] | None = None,
        *,
        key: jax.Array | None = None,
    ) -> Float[Array, "b h w o"]:
        cfg = self.cfg
        act = jax.nn.silu
        t = jnp.broadcast_to(jnp.asarray(t), x.shape[:1])
        temb = self.time_embedding(t)
        zemb = self.mapping(z) if self.mapping is not None else None
        counter = iter(range(10**6))

        def blk(module, h, **extra):
            k = None if key is None else jax.random.fold_in(key, next(counter))
            return module(h, temb, zemb, key=k, **extra)

        x = x.astype(jnp.float32)
        if not cfg["centered"]:
            x = 2.0 * x - 1.0
        x = x.astype(self.dtype)
        pyramid_in = x
        hs = [self.conv_in(x)]
        i_blk = 0
        for lvl in range(self.num_levels):
            for _ in range(cfg["num_res_blocks"]):
                h = blk(self.down[i_blk], hs[-1])
                if self.down_attn[i_blk] is not None:
                    h = self.down_attn[i_blk](h)
                hs.append(h)
                i_blk += 1
            if lvl != self.num_levels - 1:
                if cfg["resblock_type"] == "ddpm":
                    h = self.down_res[lvl](hs[-1])
                else:
                    h = blk(self.down_res[lvl], hs[-1])
                if cfg["progressive_input"] == "input_skip":
                    pyramid_in = _fir_or_pool_down(pyramid_in, self.fir, self.fir_kernel)
                    h = self.pyr_down[lvl](pyramid_in, h)
                elif cfg["progressive_input"] == "residual":
                    pyramid_in = self.pyr_down[lvl](pyramid_in)
                    pyramid_in = skip_rescale(pyramid_in, h, cfg["skip_rescale"])
                    h = pyramid_in
                hs.append(h)

        h = blk(self.mid0, hs[-1])
        h = self.mid_attn(h)
        h = blk(self.mid1, h)

        pyramid = None
        i_blk = 0
        for j, lvl in enumerate(reversed(range(self.num_levels))):
            for _ in range(cfg["num_res_blocks"] + 1):
                h = blk(self.up[i_blk], jnp.concatenate([h, hs.pop().astype(h.dtype)], axis=-1))
                i_blk += 1
            if self.up_attn[j] is not None:
                h = self.up_attn[j](h)
            if cfg["progressive"] != "none":
                if self.pyr_conv[j] is not None:
                    p = self.pyr_conv[j](act(self.pyr_norm[j](h)).astype(jnp.float32))
                    if pyramid is None:
                        pyramid = p
                    else:  # output_skip at lower levels
                        pyramid = _fir_or_nearest_up(pyramid, self.fir, self.fir_kernel) + p
                else:  # residual at lower levels
                    pyramid = self.pyr_up[j](pyramid)
                    pyramid = skip_rescale(pyramid, h, cfg["skip_rescale"])
                    h = pyramid
            if lvl != 0:
                if cfg["resblock_type"] == "ddpm":
                    h = self.up_res[j](h)
                else:
                    h = blk(self.up_res[j], h)
        assert not hs

        if cfg["progressive"] == "output_skip":
            out = pyramid.astype(jnp.float32)
        else:
            out = self.conv_out(act(self.norm_out(h.astype(jnp.float32))))
        if cfg["output_tanh"]:
            out = jnp.tanh(out)
        if cfg["scale_by_sigma"]:
            out = out / self.used_sigma(t)[:, None, None, None]
        if cfg["vp_beta"] is not None and cfg["ve_sigma"] is None:
            out = out * self.vp_discrete_factor(t)[:, None, None, None]
        return out.astype(jnp.float32)


def _fir_or_pool_down(x: Array, fir: bool, k: Sequence[int]) -> Array:
    return downsample_2d(x, k) if fir else naive_downsample_2d(x)


def _fir_or_nearest_up(x: Array, fir: bool, k: Sequence[int]) -> Array:
    return upsample_2d(x, k) if fir else naive_upsample_2d(x)
