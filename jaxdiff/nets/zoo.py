"""The module zoo's one table of network constructors, the paper networks as plain configs, and
``build_net``. ``jaxdiff.build`` decodes every network name of a config through ``CONSTRUCTORS``.

A config is an ``ml_collections.ConfigDict`` (or any mapping) with ``name`` (a key of
``CONSTRUCTORS``), an optional ``dtype`` (``'float32'`` or ``'bfloat16'``: the compute dtype;
parameters stay float32) and the constructor's keyword arguments. Every value cites its source:
[README] the official repository's README command, [code] the official code's defaults/config
file, [lsgm.md]/[ddgan.md]/[cld.md] the project's reference notes, [ours] a CPU-scale choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jaxdiff.nets.ddpm import DDPM
from jaxdiff.nets.discriminators import DDGANDiscriminator
from jaxdiff.nets.flat_vae import FlatVAE, ToyVAE
from jaxdiff.nets.fourier_mlp import FourierMLPDiscriminator, FourierMLPGenerator
from jaxdiff.nets.functional import ShapeOnlyRngs
from jaxdiff.nets.mlp import MLPScoreNet
from jaxdiff.nets.ncsnpp import NCSNpp
from jaxdiff.nets.toy import MLPVAE, MLPDiscriminator, MLPGenerator
from jaxdiff.nets.vae import NVAE, ConvVAE

CONSTRUCTORS: dict[str, Callable[..., nnx.Module]] = {
    "ncsnpp": NCSNpp,
    "ddpm": DDPM,
    "ddgan_discriminator": DDGANDiscriminator,
    "nvae": NVAE,
    "conv_vae": ConvVAE,
    "mlp_score": MLPScoreNet,
    "mlp_generator": MLPGenerator,
    "mlp_discriminator": MLPDiscriminator,
    "mlp_vae": MLPVAE,
    "toy_vae": ToyVAE,
    "flat_vae": FlatVAE,
    "fourier_mlp_generator": FourierMLPGenerator,
    "fourier_mlp_discriminator": FourierMLPDiscriminator,
}
_IMAGE_NETS = {"ncsnpp", "ddpm", "ddgan_discriminator", "nvae", "conv_vae"}  # these take ``dtype``
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _constructor_kwargs(
    cfg: Mapping[str, Any] | None, overrides: Mapping[str, Any]
) -> tuple[Callable[..., nnx.Module], dict[str, Any]]:
    """(constructor, keyword arguments but ``rngs``) of the network that ``cfg`` names."""
    kw = dict(cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else (cfg or {}))
    kw.update(overrides)
    name = kw.pop("name")
    dtype = kw.pop("dtype", "float32")
    if name not in CONSTRUCTORS:
        raise ValueError(f"unknown network {name!r}; known: {sorted(CONSTRUCTORS)}")
    if name in _IMAGE_NETS:
        kw["dtype"] = DTYPES[dtype] if isinstance(dtype, str) else dtype
    for k, v in kw.items():  # ConfigDict turns tuples into lists; constructors want tuples
        if isinstance(v, list):
            kw[k] = tuple(v)
    return CONSTRUCTORS[name], kw


def build_net(
    cfg: Mapping[str, Any] | None = None, *, seed: int = 0, **overrides: Any
) -> nnx.Module:
    """Builds the network named by ``cfg['name']`` with the rest of ``cfg`` (and ``overrides``)
    as keyword arguments. ``dtype`` may be a string or a jnp dtype; ``seed`` seeds the init."""
    constructor, kw = _constructor_kwargs(cfg, overrides)
    return constructor(**kw, rngs=nnx.Rngs(seed))


def build_net_abstract(
    cfg: Mapping[str, Any] | None = None, *, seed: int = 0, **overrides: Any
) -> nnx.Module:
    """``build_net(cfg, seed=seed, **overrides)`` with ``jax.ShapeDtypeStruct`` leaves: the same
    graph and parameter shapes, nothing allocated or compiled (``nnx.eval_shape`` with
    ``ShapeOnlyRngs``: ~1 s for the largest paper network instead of ~20 s with ``nnx.Rngs``).
    ``seed`` is accepted for symmetry with ``build_net``; shapes do not depend on it."""
    del seed
    constructor, kw = _constructor_kwargs(cfg, overrides)
    return nnx.eval_shape(lambda: constructor(**kw, rngs=ShapeOnlyRngs()))


def with_overrides(cfg: ml_collections.ConfigDict, **kw: Any) -> ml_collections.ConfigDict:
    """A copy of ``cfg`` with some values replaced (e.g. a reduced width for CPU tests)."""
    new = ml_collections.ConfigDict(cfg.to_dict())
    new.update(kw)
    return new


def _cfg(**kw: Any) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(kw)


# ----------------------------------------------------------------------------------------------
# Score models (NCSN++ / DDPM++).


def ncsnpp_cifar10_cld() -> ml_collections.ConfigDict:
    """CLD's CIFAR-10 NCSN++ (Dockhorn et al. 2022), ~108M parameters."""
    return _cfg(
        name="ncsnpp",
        image_size=32,  # [code] configs/default_cifar10.txt
        in_ch=6,  # [cld.md 4.1] (x, v) concatenated
        out_ch=3,  # [cld.md 4.1] the network outputs eps_v
        nf=128,  # [code] specific_cifar10.txt n_channels
        ch_mult=(1, 2, 2, 2),  # [code] ch_mult
        num_res_blocks=8,  # [code] n_resblocks
        attn_resolutions=(16,),  # [code]
        dropout=0.1,  # [code]
        resblock_type="biggan",  # [code]
        resamp_with_conv=True,  # [code]
        fir=True,  # [code] use_fir
        fir_kernel=(1, 3, 3, 1),  # [code]
        skip_rescale=True,  # [code]
        progressive="none",  # [code]
        progressive_input="residual",  # [code]
        progressive_combine="sum",  # [code]
        embedding_type="fourier",  # [code] Fourier features of log t
        fourier_scale=16.0,  # [code]
        init_scale=0.0,  # [code]
        centered=True,  # [code] center_image
    )


def ddpmpp_cifar10_continuous() -> ml_collections.ConfigDict:
    """score_sde's VP "DDPM++ cont." (configs/vp/cifar10_ddpmpp_continuous.py)."""
    return _cfg(
        name="ncsnpp",
        image_size=32,  # [code]
        in_ch=3,
        nf=128,  # [code] model.nf
        ch_mult=(1, 2, 2, 2),  # [code]
        num_res_blocks=4,  # [code]
        attn_resolutions=(16,),  # [code]
        dropout=0.1,  # [code] default_cifar10_configs
        resblock_type="biggan",  # [code]
        resamp_with_conv=True,  # [code]
        fir=False,  # [code]
        skip_rescale=True,  # [code]
        progressive="none",  # [code]
        progressive_input="none",  # [code]
        progressive_combine="sum",  # [code]
        embedding_type="positional",  # [code]
        time_scale=999.0,  # [code] models/utils.py: labels = t * 999 for continuous VP
        init_scale=0.0,  # [code]
        centered=True,  # [code] data.centered
    )


def ddpm_cifar10() -> ml_collections.ConfigDict:
    """score_sde's DDPM U-Net (``models/ddpm.py``, Ho et al. 2020) of the released
    ``vp/cifar10_ddpm``, ``vp/cifar10_ddpm_continuous`` and ``subvp/cifar10_ddpm_continuous``
    (configs/vp/ddpm/cifar10.py, cifar10_continuous.py, configs/subvp/cifar10_ddpm_continuous.py:
    the same model section), 35.2M parameters."""
    return _cfg(
        name="ddpm",  # [code] model.name 'ddpm'
        image_size=32,  # [code] data.image_size (default_cifar10_configs)
        in_ch=3,  # [code] data.num_channels
        nf=128,  # [code] model.nf
        ch_mult=(1, 2, 2, 2),  # [code] model.ch_mult
        num_res_blocks=2,  # [code] model.num_res_blocks
        attn_resolutions=(16,),  # [code] model.attn_resolutions
        dropout=0.1,  # [code] default_cifar10_configs model.dropout
        resamp_with_conv=True,  # [code] model.resamp_with_conv
        conditional=True,  # [code] model.conditional
        centered=True,  # [code] data.centered True
        time_scale=999.0,  # [code] models/utils.py: VP / sub-VP labels = t * 999
    )


def ncsnpp_cifar10_vp_continuous() -> ml_collections.ConfigDict:
    """score_sde's VP "NCSN++ cont." (configs/vp/cifar10_ncsnpp_continuous.py): DDPM++ with FIR
    resampling and the residual input pyramid."""
    return with_overrides(
        ddpmpp_cifar10_continuous(),
        fir=True,  # [code] model.fir
        fir_kernel=(1, 3, 3, 1),  # [code]
        progressive_input="residual",  # [code]
    )


def ncsnpp_cifar10_ve_continuous() -> ml_collections.ConfigDict:
    """score_sde's VE "NCSN++ cont." (configs/ve/cifar10_ncsnpp_continuous.py) on jaxdiff's
    [-1, 1] data: the official model sees [0, 1] data (data.centered False, x -> 2x - 1 inside)
    and VE sigmas in [0.01, 50]; with x' = (x + 1) / 2 the same network is the VE process with
    sigmas in [0.02, 100] on x, fed x as is and the label sigma(t) / 2, its output divided by
    sigma(t) (the score of x is half the score of x')."""
    return with_overrides(
        ncsnpp_cifar10_vp_continuous(),
        embedding_type="fourier",  # [code] default_cifar10_configs: Fourier features of log sigma
        fourier_scale=16.0,  # [code]
        time_scale=1.0,
        ve_sigma_min=0.02,  # [code] model.sigma_min 0.01, times 2 for [-1, 1] data
        ve_sigma_max=100.0,  # [code] model.sigma_max 50, times 2
        label_scale=0.5,  # the official label is the [0, 1]-data sigma
        scale_by_sigma=True,  # [code] model.scale_by_sigma
        centered=True,  # the input is already 2x' - 1
    )


def _ddgan_generator(**kw: Any) -> ml_collections.ConfigDict:
    base = dict(
        name="ncsnpp",
        in_ch=3,  # [README] --num_channels 3
        attn_resolutions=(16,),  # [code] train_ddgan.py default
        dropout=0.0,  # [code] default
        resblock_type="biggan",  # [code] default
        resamp_with_conv=True,  # [code]
        fir=True,  # [code] default --fir
        fir_kernel=(1, 3, 3, 1),  # [code]
        skip_rescale=True,  # [code]
        progressive="none",  # [code]
        progressive_input="residual",  # [code]
        progressive_combine="sum",  # [code]
        embedding_type="positional",  # [README] --embedding_type positional (integer labels)
        time_scale=1.0,  # [ddgan.md 6.3] the integer label itself
        init_scale=0.0,  # [code] hard-coded
        centered=True,  # [code] --centered default True
        nz=100,  # [README] --nz 100
        z_emb_dim=256,  # [README] --z_emb_dim 256
        output_tanh=True,  # [code] tanh unless --not_use_tanh
    )
    base.update(kw)
    return _cfg(**base)


def ddgan_cifar10_generator() -> ml_collections.ConfigDict:
    """DDGAN's CIFAR-10 generator (NCSN++ with AdaGN, x0 prediction)."""
    return _ddgan_generator(
        image_size=32,
        nf=128,  # [README] --num_channels_dae 128
        ch_mult=(1, 2, 2, 2),  # [README]
        num_res_blocks=2,  # [README]
        n_mlp=4,  # [README] --n_mlp 4
    )


def ddgan_celebahq256_generator() -> ml_collections.ConfigDict:
    """DDGAN's CelebA-HQ 256 generator."""
    return _ddgan_generator(
        image_size=256,  # [README]
        nf=64,  # [README] --num_channels_dae 64
        ch_mult=(1, 1, 2, 2, 4, 4),  # [README]
        num_res_blocks=2,  # [README]
        n_mlp=3,  # [code] default (not set in the README command)
    )


def ddgan_cifar10_discriminator() -> ml_collections.ConfigDict:
    """DDGAN's ``Discriminator_small`` (CIFAR-10)."""
    return _cfg(
        name="ddgan_discriminator",
        channels=3,  # [README] nc = 2 * num_channels inside
        ngf=64,  # [README] --ngf 64
        t_emb_dim=256,  # [code] --t_emb_dim default
        widths=(2, 4, 8, 8),  # [code] Discriminator_small
        downsample=(False, True, True, True),  # [code]
        final_init_scale=0.0,  # [code]
    )


def ddgan_celebahq256_discriminator() -> ml_collections.ConfigDict:
    """DDGAN's ``Discriminator_large`` (CelebA-HQ 256, LSUN)."""
    return _cfg(
        name="ddgan_discriminator",
        channels=3,
        ngf=64,  # [README]
        t_emb_dim=256,  # [code]
        widths=(4, 8, 8, 8, 8, 8),  # [code] Discriminator_large
        downsample=(True,) * 6,  # [code]
        final_init_scale=1.0,  # [code] default init on the head conv
    )


def ddgan_mnist32_generator() -> ml_collections.ConfigDict:
    """CPU-scale DDGAN generator for 32x32 one-channel digits [ours; same options as CIFAR-10]."""
    return _ddgan_generator(
        image_size=32,
        in_ch=1,
        nf=32,  # [ours]
        ch_mult=(1, 2, 2),  # [ours] 32 / 16 / 8
        num_res_blocks=1,  # [ours]
        nz=32,  # [ours]
        z_emb_dim=64,  # [ours]
        n_mlp=2,  # [ours]
    )


def ddgan_mnist32_discriminator() -> ml_collections.ConfigDict:
    """CPU-scale small discriminator for 32x32 one-channel digits [ours]."""
    return _cfg(
        name="ddgan_discriminator",
        channels=1,
        ngf=16,  # [ours]
        t_emb_dim=64,  # [ours]
        widths=(2, 4, 8, 8),  # [code] Discriminator_small layout
        downsample=(False, True, True, True),
        final_init_scale=0.0,
    )


# ----------------------------------------------------------------------------------------------
# LSGM: NVAE + latent NCSN++.


def lsgm_cifar10_vae() -> ml_collections.ConfigDict:
    """LSGM's CIFAR-10 NVAE ("vae2", best-FID model; "vae1" has the same network); latents
    20 groups x 9 ch at 16x16."""
    return _cfg(
        name="nvae",
        image_size=32,
        in_ch=3,
        out_ch=100,  # [code] --decoder_dist dml (default): 10 components x 10 parameters
        num_channels=128,  # [README] --num_channels_enc/dec 128
        channel_mult=(1, 2),  # [README] --channel_mult 1 2
        num_preprocess_blocks=1,  # [README]
        num_preprocess_cells=2,  # [README]
        num_postprocess_blocks=1,  # [README]
        num_postprocess_cells=2,  # [README]
        num_latent_scales=1,  # [README]
        num_groups_per_scale=20,  # [README]
        num_latent_per_group=9,  # [README]
        num_cell_per_cond_enc=2,  # [README]
        num_cell_per_cond_dec=2,  # [README]
        arch_instance="res_bnswish",  # [README] --arch_instance res_bnswish
        progressive_input="none",  # [code] --progressive_input_vae default
        use_se=True,  # [README] --use_se; --num_nf 0 (no IAF cells)
    )


def lsgm_cifar10_score() -> ml_collections.ConfigDict:
    """LSGM's CIFAR-10 latent NCSN++ on 16x16x180 latents, predicting eps (mixed score)."""
    return _cfg(
        name="ncsnpp",
        image_size=16,  # [lsgm.md 1.4] 32 / 2^(1 + 1 - 1)
        in_ch=180,  # [lsgm.md 1.4] 20 groups x 9 channels
        nf=512,  # [README] --num_channels_dae 512
        ch_mult=(1, 1, 1),  # [code] util/utils.py get_channel_multiplier('cifar10')
        num_res_blocks=8,  # [README] --num_cell_per_scale_dae 8
        attn_resolutions=(16,),  # [code] score_sde/ncsnpp.py
        dropout=0.2,  # [README]
        resblock_type="biggan",  # [code] hard-coded
        fir=True,  # [README] --fir
        skip_rescale=True,  # [code] hard-coded
        progressive="none",  # [code] train_vada.py default
        progressive_input="none",  # [code] default
        embedding_type="positional",  # [code] default
        time_scale=1000.0,  # [README] --embedding_scale 1000
        embedding_dim=128,  # [code] --embedding_dim default; time MLP 512
        init_scale=0.0,  # [code]
        mixing_logit_init=-3.0,  # [lsgm.md 5.3] CIFAR mixing logit -3 (one per latent channel)
    )


def lsgm_mnist_vae() -> ml_collections.ConfigDict:
    """LSGM's binarised-MNIST NVAE (README): 2 groups x 20 ch at 8x8, Bernoulli decoder."""
    return _cfg(
        name="nvae",
        image_size=32,  # [lsgm.md 1.4] padded to 32
        in_ch=1,
        out_ch=1,  # [README] --decoder_dist bin
        num_channels=64,  # [README]
        channel_mult=(1, 2, 2),  # [README]
        num_preprocess_blocks=2,  # [README]
        num_preprocess_cells=3,  # [README]
        num_postprocess_blocks=2,  # [README]
        num_postprocess_cells=3,  # [README]
        num_latent_scales=1,  # [README]
        num_groups_per_scale=2,  # [README]
        num_latent_per_group=20,  # [README]
        num_cell_per_cond_enc=1,  # [README]
        num_cell_per_cond_dec=1,  # [README]
        arch_instance="res_mbconv",  # [README] --arch_instance res_mbconv
        progressive_input="none",  # [code] --progressive_input_vae default
        use_se=True,  # [README] --use_se; --num_nf 0 (no IAF cells)
    )


def lsgm_mnist_score() -> ml_collections.ConfigDict:
    """LSGM's MNIST latent NCSN++ on 8x8x40 latents."""
    return _cfg(
        name="ncsnpp",
        image_size=8,  # [lsgm.md 1.4] 32 / 2^(2 + 1 - 1)
        in_ch=40,  # [lsgm.md 1.4]
        nf=256,  # [README] --num_channels_dae 256
        ch_mult=(1, 1),  # [code] get_channel_multiplier('mnist')
        num_res_blocks=8,  # [README]
        attn_resolutions=(16,),  # [code] (no 16x16 level: only the middle attention)
        dropout=0.2,  # [README]
        resblock_type="biggan",
        fir=False,  # [README] no --fir in the MNIST command
        skip_rescale=True,
        embedding_type="positional",
        time_scale=1000.0,  # [README] --embedding_scale 1000
        embedding_dim=128,  # [code]
        init_scale=0.0,
        mixing_logit_init=-6.0,  # [README] --mixing_logit_init -6
    )


def lsgm_mnist_small_vae() -> ml_collections.ConfigDict:
    """CPU-scale NVAE for digits [lsgm.md "CPU-scale" suggestion]: 32 ch, 2 x 20 at 8x8."""
    return with_overrides(
        lsgm_mnist_vae(), num_channels=32, num_preprocess_cells=1, num_postprocess_cells=1
    )


def lsgm_mnist_small_score() -> ml_collections.ConfigDict:
    """CPU-scale latent score net [lsgm.md]: 64 ch, 2 scales, 2 blocks."""
    return with_overrides(lsgm_mnist_score(), nf=64, num_res_blocks=2, embedding_dim=32)


def lsgm_cifar10_conv_vae() -> ml_collections.ConfigDict:
    """A plain convolutional VAE with LSGM's CIFAR-10 latent shape 16x16x180 [ours]."""
    return _cfg(
        name="conv_vae",
        image_size=32,
        in_ch=3,
        out_ch=100,
        num_channels=128,
        ch_mult=(1, 2),
        num_res_blocks=2,
        latent_ch=180,
    )


PAPER_CONFIGS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
    "ncsnpp_cifar10_cld": ncsnpp_cifar10_cld,
    "ddpmpp_cifar10_continuous": ddpmpp_cifar10_continuous,
    "ncsnpp_cifar10_vp_continuous": ncsnpp_cifar10_vp_continuous,
    "ncsnpp_cifar10_ve_continuous": ncsnpp_cifar10_ve_continuous,
    "ddpm_cifar10": ddpm_cifar10,
    "ddgan_cifar10_generator": ddgan_cifar10_generator,
    "ddgan_cifar10_discriminator": ddgan_cifar10_discriminator,
    "ddgan_celebahq256_generator": ddgan_celebahq256_generator,
    "ddgan_celebahq256_discriminator": ddgan_celebahq256_discriminator,
    "lsgm_cifar10_vae": lsgm_cifar10_vae,
    "lsgm_cifar10_score": lsgm_cifar10_score,
    "lsgm_mnist_vae": lsgm_mnist_vae,
    "lsgm_mnist_score": lsgm_mnist_score,
}


def count_params_abstract(cfg: Mapping[str, Any], **overrides: Any) -> int:
    """Parameter count of ``build_net(cfg)`` without allocating it (``nnx.eval_shape``)."""
    module = build_net_abstract(cfg, **overrides)
    return sum(int(v.size) for v in jax.tree.leaves(nnx.state(module)))
