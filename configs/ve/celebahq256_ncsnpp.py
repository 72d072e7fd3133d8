"""score_sde's VE NCSN++ (continuous) on CelebA-HQ 256 (Song et al. 2021), the released
``ve/celebahq_256_ncsnpp_continuous`` model (re-trained by the author on personal resources, as
its README says): ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/ve/celebahq_256_ncsnpp_continuous.py and
configs/default_lsun_configs.py (its base). As for CIFAR-10 (configs/ve/cifar10_ncsnpp.py), the
official run sees [0, 1] images: on jaxdiff's [-1, 1] images the same network is the VE SDE with
sigma in [0.02, 696], fed the official label sigma / 2 and divided by sigma.
"""

from configs.ve.cifar10_ncsnpp import get_config as ve_config
from jaxdiff.nets import zoo


def get_config():
    c = ve_config()
    c.data.name = "celeba_hq_256"  # [code] data.dataset 'CelebAHQ', image_size 256 (tfds here)
    c.data.flip = True  # [code] data.random_flip True
    c.process.sigma_min = 0.02  # [code] model.sigma_min 0.01 on [0, 1] data, times 2
    c.process.sigma_max = 696.0  # [code] model.sigma_max 348, times 2
    c.model = zoo.with_overrides(
        zoo.ncsnpp_cifar10_ve_continuous(),  # Fourier features of log sigma, scale_by_sigma
        image_size=256,  # [code] data.image_size
        ch_mult=(1, 1, 2, 2, 2, 2, 2),  # [code] model.ch_mult
        num_res_blocks=2,  # [code] model.num_res_blocks
        attn_resolutions=(16,),  # [code]
        dropout=0.0,  # [code] default_lsun_configs model.dropout
        fir=True,  # [code] model.fir
        progressive="output_skip",  # [code] model.progressive
        progressive_input="input_skip",  # [code] model.progressive_input
        progressive_combine="sum",  # [code]
        ve_sigma_min=0.02,  # = process.sigma_min
        ve_sigma_max=696.0,  # = process.sigma_max
    )
    c.training.batch_size = 64  # [code] default_lsun_configs training.batch_size
    c.training.ema_decay = 0.999  # [code] model.ema_rate
    c.training.num_steps = 2_400_000  # [code] training.n_iters 2400001, rounded
    c.training.ckpt_every = 5000  # [code] training.snapshot_freq_for_preemption
    c.sampling.steps = 2000  # [code] model.num_scales 2000
    c.sampling.snr = 0.075  # [code] default_lsun_configs sampling.snr
    c.sampling.num = 16
    c.sampling.batch_size = 8  # [ours] 256 px samples: small batches
    return c
