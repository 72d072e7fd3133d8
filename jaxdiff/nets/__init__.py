"""The module zoo: networks as NNX modules, used through the pure ``functional`` boundary."""

from jaxdiff.nets.discriminators import (
    DDGANDiscriminator,
    ddgan_discriminator_large,
    ddgan_discriminator_small,
)
from jaxdiff.nets.embeddings import GaussianFourierEmbedding, sinusoidal_embedding
from jaxdiff.nets.functional import PureNet, count_params, functional
from jaxdiff.nets.layers import (
    AdaptiveGroupNorm,
    AttnBlock,
    FIRConv,
    GroupNorm,
    MappingNetwork,
    ResBlockBigGAN,
    ResBlockDDPM,
    downsample_2d,
    minibatch_stddev,
    pixel_norm,
    spectral_regularizer,
    spectral_state_init,
    upfirdn2d,
    upsample_2d,
)
from jaxdiff.nets.mlp import MLPScoreNet
from jaxdiff.nets.ncsnpp import NCSNpp
from jaxdiff.nets.toy import MLPVAE, MLPDiscriminator, MLPGenerator
from jaxdiff.nets.vae import NVAE, ConvVAE
from jaxdiff.nets.zoo import CONSTRUCTORS, PAPER_CONFIGS, build_net, count_params_abstract

__all__ = [
    "CONSTRUCTORS",
    "NVAE",
    "PAPER_CONFIGS",
    "AdaptiveGroupNorm",
    "AttnBlock",
    "ConvVAE",
    "DDGANDiscriminator",
    "FIRConv",
    "GaussianFourierEmbedding",
    "GroupNorm",
    "MLPDiscriminator",
    "MLPGenerator",
    "MLPScoreNet",
    "MLPVAE",
    "MappingNetwork",
    "NCSNpp",
    "PureNet",
    "ResBlockBigGAN",
    "ResBlockDDPM",
    "build_net",
    "count_params",
    "count_params_abstract",
    "ddgan_discriminator_large",
    "ddgan_discriminator_small",
    "downsample_2d",
    "functional",
    "minibatch_stddev",
    "pixel_norm",
    "sinusoidal_embedding",
    "spectral_regularizer",
    "spectral_state_init",
    "upfirdn2d",
    "upsample_2d",
]
