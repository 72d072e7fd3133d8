"""DDGAN on CelebA-HQ 256x256, T = 2: the official README command (FID 7.64 in the paper).

Sources: [README] the official command (``--image_size 256 --num_channels_dae 64
--ch_mult 1 1 2 2 4 4 --num_timesteps 2 --num_res_blocks 2 --batch_size 4 --num_epoch 800
--ngf 64 --embedding_type positional --use_ema --r1_gamma 2. --z_emb_dim 256 --lr_d 1e-4
--lr_g 2e-4 --lazy_reg 10 --num_process_per_node 8``); [code] ``train_ddgan.py`` defaults;
[ours] jaxdiff choices. Everything not listed is as in ``configs/ddgan/cifar10.py``.
"""

from configs.ddgan import cifar10
from jaxdiff.nets import zoo

CELEBAHQ_TRAIN = 27_000  # [code] the NVAE CelebA-HQ-256 LMDB train split
GLOBAL_BATCH = 32  # [README] --batch_size 4 per GPU x --num_process_per_node 8
EPOCHS = 800  # [README] --num_epoch 800


def get_config():
    c = cifar10.get_config()
    c.data.name = "celeba_hq_256"  # [README] --dataset celeba_256 (tfds celeb_a_hq/256 here)
    c.data.split = "train[:27000]"  # [ddgan.md] the NVAE split: 27k train / 3k held out
    c.data.flip = True  # [code] RandomHorizontalFlip

    c.ddgan.num_timesteps = 2  # [README] --num_timesteps 2
    c.ddgan.nz = 100  # [code] --nz default
    c.optim.lr = 2e-4  # [README] --lr_g 2e-4
    c.optim.lr_d = 1e-4  # [README] --lr_d 1e-4
    c.ddgan.r1_gamma = 2.0  # [README] --r1_gamma 2.
    c.ddgan.lazy_reg = 10  # [README] --lazy_reg 10
    # [README]/[code] Discriminator_large, ngf 64 (sources in jaxdiff/nets/zoo.py)
    c.ddgan.disc = zoo.ddgan_celebahq256_discriminator()
    # [README] nf 64 (issue #2: not the paper's 128), ch_mult 1 1 2 2 4 4, 2 res blocks;
    # [code] n_mlp 3 (default, not set by the command)
    c.model = zoo.ddgan_celebahq256_generator()

    c.training.batch_size = GLOBAL_BATCH
    c.training.num_steps = EPOCHS * (CELEBAHQ_TRAIN // GLOBAL_BATCH)  # drop_last: 843 x 800
    c.training.ema_decay = 0.9999  # [code] --ema_decay default with --use_ema

    c.sampling.num = 64
    c.sampling.batch_size = 16  # [ours] issue #17: sampling OOMs at 256px with large batches
    return c
