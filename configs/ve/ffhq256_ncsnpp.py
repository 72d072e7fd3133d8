"""score_sde's VE NCSN++ (continuous) on FFHQ 256 (Song et al. 2021), the released
``ve/ffhq_256_ncsnpp_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/ve/ffhq_256_ncsnpp_continuous.py and
configs/default_lsun_configs.py (its base). The network and run are CelebA-HQ 256's
(configs/ve/celebahq256_ncsnpp.py: the same model section, sigma_max 348 and training settings).
Data: FFHQ is not in tfds; the official run reads ffhq-r08.tfrecords (256x256). Here: a folder of
the 256x256 PNGs (`--config.data.data_dir=PATH`; default ``data/ffhq256``).
"""

from configs.ve.celebahq256_ncsnpp import get_config as celebahq256_config


def get_config():
    c = celebahq256_config()
    c.data.name = "folder"  # [code] data.dataset 'FFHQ' (tfrecords there)
    c.data.data_dir = "data/ffhq256"  # [ours] where the images are
    c.data.image_size = 256  # [code] data.image_size
    return c
