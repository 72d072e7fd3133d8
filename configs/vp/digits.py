"""VP SDE score model on the offline 8x8 scikit-learn digits, upsampled to 16x16 (CPU scale).

A small NCSN++ (DDPM++ options: positional embedding of 999 t, BigGAN blocks, no FIR) trained for
a bounded time on 2 CPU cores: the image path of the runner with no download.
"""

from configs.base import base_config
from jaxdiff.nets import zoo


def get_config():
    c = base_config()
    c.data.kind = "image"
    c.data.name = "digits"
    c.data.image_size = 16
    c.data.split = "train"  # the first 1500; the last 297 are held out for bits/dim
    c.process.name = "vp"
    c.objective.reduce = "sum"
    c.model = zoo.with_overrides(
        zoo.ddpmpp_cifar10_continuous(),
        nf=32,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(8,),
        dropout=0.0,
    )
    c.optim.lr = 1e-3
    c.optim.warmup = 100
    c.training.batch_size = 64
    c.training.num_steps = 2000
    c.training.n_jitted_steps = 10
    c.training.log_every = 100
    c.training.ckpt_every = 500
    c.training.ema_decay = 0.999
    c.sampling.sampler = "ode_tsit5"
    c.sampling.rtol = 1e-3
    c.sampling.atol = 1e-3
    c.sampling.num = 64
    c.eval.divergence = "hutchinson_rademacher"
    c.eval.likelihood_examples = 64
    c.eval.split = "test"
    return c
