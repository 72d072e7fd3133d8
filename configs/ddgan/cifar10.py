"""DDGAN on CIFAR-10 32x32, T = 4: the official README command (FID 3.75 in the paper).

Sources: [README] the official training command (NVlabs/denoising-diffusion-gan readme.md:
``--num_channels_dae 128 --num_timesteps 4 --num_res_blocks 2 --batch_size 64 --num_epoch 1800
--ngf 64 --nz 100 --z_emb_dim 256 --n_mlp 4 --embedding_type positional --use_ema
--ema_decay 0.9999 --r1_gamma 0.02 --lr_d 1.25e-4 --lr_g 1.6e-4 --lazy_reg 15
--num_process_per_node 4 --ch_mult 1 2 2 2``); [code] ``train_ddgan.py`` argument defaults and
``ncsnpp_generator_adagn.py``; [ours] jaxdiff choices. README batch sizes are per GPU: 64 x 4 GPUs
= global batch 256.
"""

import ml_collections

from configs.base import ddgan_config
from jaxdiff.nets import zoo

CIFAR10_TRAIN = 50_000
GLOBAL_BATCH = 256  # [README] --batch_size 64 per GPU x --num_process_per_node 4
EPOCHS = 1800  # [README] --num_epoch 1800


def get_config():
    c = ddgan_config()
    c.data.kind = "image"
    c.data.name = "cifar10"  # [README] --dataset cifar10 (tfds cifar10, train split)
    c.data.flip = True  # [code] RandomHorizontalFlip; images in [-1, 1] (Normalize 0.5, 0.5)

    c.ddgan = ml_collections.ConfigDict()
    c.ddgan.num_timesteps = 4  # [README] --num_timesteps 4
    c.ddgan.beta_min = 0.1  # [code] --beta_min default
    c.ddgan.beta_max = 20.0  # [code] --beta_max default
    c.ddgan.eps = 1e-3  # [code] get_sigma_schedule eps_small
    c.ddgan.nz = 100  # [README] --nz 100
    c.optim.lr = 1.6e-4  # [README] --lr_g 1.6e-4
    c.optim.lr_d = 1.25e-4  # [README] --lr_d 1.25e-4
    c.ddgan.r1_gamma = 0.02  # [README] --r1_gamma 0.02
    c.ddgan.lazy_reg = 15  # [README] --lazy_reg 15 (R1 on steps 0, 15, 30, ...; not rescaled)
    # [README]/[code] Discriminator_small: ngf 64, t_emb_dim 256 (sources in jaxdiff/nets/zoo.py)
    c.ddgan.disc = zoo.ddgan_cifar10_discriminator()
    # [README]/[code] NCSN++ with AdaGN: nf 128, ch_mult 1 2 2 2, 2 res blocks, attention at 16,
    # FIR, residual input pyramid, positional integer labels, z_emb 256, n_mlp 4, tanh
    c.model = zoo.ddgan_cifar10_generator()

    c.optim.b1 = 0.5  # [code] --beta1 default
    c.optim.b2 = 0.9  # [code] --beta2 default
    c.optim.schedule = "cosine"  # [code] CosineAnnealingLR per epoch (smooth per step here)
    c.optim.min_lr = 1e-5  # [code] eta_min=1e-5
    c.optim.grad_clip = 0.0  # [code] no clipping
    c.optim.warmup = 0  # [code]

    c.training.batch_size = GLOBAL_BATCH
    c.training.num_steps = EPOCHS * (CIFAR10_TRAIN // GLOBAL_BATCH)  # drop_last: 195 x 1800
    c.training.n_jitted_steps = 1
    c.training.ema_decay = 0.9999  # [README] --ema_decay 0.9999 (G only)
    c.training.log_every = 100  # [code] prints every 100 iterations
    c.training.ckpt_every = 5000  # [ours]
    c.training.precision = "float32"  # [code] fp32 training

    c.sampling.num = 100
    c.sampling.batch_size = 100  # [ours] the paper times batches of 100 (official test: 200)
    c.eval.num_samples = 50_000  # [code] 50k samples for FID
    return c
