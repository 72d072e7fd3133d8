"""score_sde's VE NCSN++ (continuous) on FFHQ 1024 (Song et al. 2021), the released
``ve/ffhq_1024_ncsnpp_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/ve/ffhq_ncsnpp_continuous.py (a standalone
config). The CelebA-HQ 256 network (configs/ve/celebahq256_ncsnpp.py) with nf 16, eight levels
of one block, sigma_max 1348 on [0, 1] images (2696 on jaxdiff's [-1, 1] images), EMA 0.9999,
batch 8. Data: FFHQ is not in tfds; the official run reads ffhq-r10.tfrecords (1024x1024). Here: a
folder of the 1024x1024 PNGs (`--config.data.data_dir=PATH`; default ``data/ffhq1024``).
"""

from configs.ve.celebahq256_ncsnpp import get_config as celebahq256_config
from jaxdiff.nets import zoo


def get_config():
    c = celebahq256_config()
    c.data.name = "folder"  # [code] data.dataset 'FFHQ' (tfrecords there)
    c.data.data_dir = "data/ffhq1024"  # [ours] where the images are
    c.data.image_size = 1024  # [code] data.image_size
    c.process.sigma_min = 0.02  # [code] model.sigma_min 0.01, times 2
    c.process.sigma_max = 2696.0  # [code] model.sigma_max 1348, times 2
    c.model = zoo.with_overrides(
        c.model,
        image_size=1024,  # [code] data.image_size
        nf=16,  # [code] model.nf
        ch_mult=(1, 2, 4, 8, 16, 32, 32, 32),  # [code] model.ch_mult
        num_res_blocks=1,  # [code] model.num_res_blocks
        ve_sigma_min=0.02,  # = process.sigma_min
        ve_sigma_max=2696.0,  # = process.sigma_max
    )
    c.training.batch_size = 8  # [code] training.batch_size
    c.training.ema_decay = 0.9999  # [code] model.ema_rate
    c.sampling.batch_size = 2  # [ours] 1024 px samples: small batches
    c.sampling.num = 4  # [ours]
    return c
