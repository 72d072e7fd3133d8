"""DDGAN on the offline MNIST digits (32x32, flattened) with MLP generator and discriminator.

The picture a 2-core CPU can draw in minutes: the NCSN++ digits configs (``digits32``,
``digits16``) cost 4-7 s per step here (docs/ddgan.md). Same chain (T = 4), losses and lazy R1 as
the CIFAR-10 README command; the networks are the toy nets of ``jaxdiff.nets.fourier_mlp`` on
the flattened image, without Fourier features. Sources: [README]/[code] as in
``configs/ddgan/cifar10.py``; [ours] the CPU-scale choices.
"""

import ml_collections

from configs.ddgan import digits32


def get_config():
    c = digits32.get_config()
    c.ddgan.nz = 32  # [ours] README: 100
    c.optim.lr = 2e-4  # [ours] README CIFAR-10: 1.6e-4
    c.optim.lr_d = 1.6e-4  # [ours] README CIFAR-10: 1.25e-4, lr_D < lr_G
    c.model = ml_collections.ConfigDict()
    c.model.name = "fourier_mlp_generator"  # [ours] the toy generator on flattened pixels
    c.model.hidden = 512  # [ours]
    c.model.depth = 3  # [ours]
    c.model.t_emb_dim = 32  # [ours]
    c.model.octaves = 0  # [ours] plain pixels
    # [ours] no Wiener skip: on 1024 pixels the MLP (512 wide) cannot cancel the per-pixel noise
    # that c_t x_t carries (salt-and-pepper samples at 1500 steps with skip_data_var 0.8)
    c.model.skip_data_var = 0.0
    c.ddgan.disc = ml_collections.ConfigDict()
    c.ddgan.disc.name = "fourier_mlp_discriminator"  # [ours]
    c.ddgan.disc.hidden = 512  # [ours]
    c.ddgan.disc.depth = 3  # [ours]
    c.ddgan.disc.t_emb_dim = 32  # [ours]
    c.ddgan.disc.octaves = 0  # [ours]
    c.training.batch_size = 128  # [ours]
    c.training.num_steps = 6000  # [ours]
    c.training.n_jitted_steps = 50
    c.training.ema_decay = 0.99  # [ours] short run
    c.training.log_every = 500
    c.training.ckpt_every = 2000
    return c
