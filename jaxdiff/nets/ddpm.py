"""The original DDPM U-Net (Ho et al. 2020) as score_sde runs it (``models/ddpm.py``, name
``'ddpm'``): the network of the released ``vp/cifar10_ddpm``, ``vp/cifar10_ddpm_continuous`` and
``subvp/cifar10_ddpm_continuous`` models.

It is the NCSN++ U-Net (``jaxdiff.nets.ncsnpp``) with DDPM residual blocks and no skip rescaling,
nearest / strided-conv resampling, no FIR, no input or output pyramid and the sinusoidal
embedding: the same layers in the same order (score_sde's ``all_modules`` of ``DDPM`` is the one
of ``NCSNpp`` with ``resblock_type='ddpm'``), so it reuses that module and its checkpoint map. One
difference: ``models/layers.py``'s ``ResnetBlockDDPM`` and ``AttnBlock`` and the output norm use
32 groups at every width, where NCSN++ (``layerspp.py``) uses ``min(C // 4, 32)``; both are 32
for C >= 128, i.e. at every width of the released nf = 128 networks.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from jaxdiff.nets.layers import GroupNorm
from jaxdiff.nets.ncsnpp import NCSNpp

DDPM_GROUPS = 32  # score_sde models/layers.py: nn.GroupNorm(num_groups=32, ...)


class DDPM(NCSNpp):
    """DDPM U-Net: ``(x (b,h,w,in_ch), t (b,)) -> (b,h,w,in_ch)``.

    Args (score_sde's ``config.model`` names, as in :class:`NCSNpp`): image_size, in_ch, nf,
    ch_mult, num_res_blocks, attn_resolutions, dropout, resamp_with_conv, conditional, centered
    (inputs in [-1, 1], else x -> 2x - 1); time_scale: the label is ``time_scale * t`` (999 for
    score_sde's VP and sub-VP models); num_scales, vp_beta: a discrete-time VP model (see
    :class:`NCSNpp`); dtype: compute dtype. The output conv and the conv closing each residual
    block start near zero (``init_scale`` 0), as the official ones do.
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        in_ch: int = 3,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resamp_with_conv: bool = True,
        conditional: bool = True,
        centered: bool = True,
        time_scale: float = 999.0,
        num_scales: int = 0,
        vp_beta: Sequence[float] = (),
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            image_size=image_size,
            in_ch=in_ch,
            nf=nf,
            ch_mult=ch_mult,
            num_res_blocks=num_res_blocks,
            attn_resolutions=attn_resolutions,
            dropout=dropout,
            resblock_type="ddpm",  # ResnetBlockDDPM: NIN shortcut when the width changes
            resamp_with_conv=resamp_with_conv,
            fir=False,
            skip_rescale=False,  # x + h in the blocks and the attention
            progressive="none",
            progressive_input="none",
            embedding_type="positional",  # layers.get_timestep_embedding(labels, nf)
            time_scale=time_scale,
            conditional=conditional,
            init_scale=0.0,  # Conv_1 of each block, NIN_3 of attention, the output conv
            centered=centered,
            num_scales=num_scales,
            vp_beta=vp_beta,
            dtype=dtype,
            rngs=rngs,
        )
        for _, module in nnx.iter_modules(self):
            if isinstance(module, GroupNorm):
                module.groups = DDPM_GROUPS
