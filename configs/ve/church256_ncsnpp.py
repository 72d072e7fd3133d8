"""score_sde's VE NCSN++ (continuous) on LSUN church_outdoor 256 (Song et al. 2021), the released
``ve/church_ncsnpp_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/ve/church_ncsnpp_continuous.py and
configs/default_lsun_configs.py (its base). The network and run are CelebA-HQ 256's
(configs/ve/celebahq256_ncsnpp.py: the same model section and training settings) but for
sigma_max 380; as there, the official run sees [0, 1] images, so on jaxdiff's [-1, 1] images
the same network is the VE SDE with sigma in [0.02, 760], fed the label sigma / 2. Data: tfds
``lsun/church_outdoor``, centre-cropped and resized to 256 (as score_sde's LSUN pipeline does).
"""

from configs.ve.celebahq256_ncsnpp import get_config as celebahq256_config
from jaxdiff.nets import zoo


def get_config():
    c = celebahq256_config()
    c.data.name = "lsun_church"  # [code] data.dataset 'LSUN', data.category 'church_outdoor'
    c.data.image_size = 256  # [code] data.image_size
    c.process.sigma_min = 0.02  # [code] model.sigma_min 0.01 on [0, 1] data, times 2
    c.process.sigma_max = 760.0  # [code] model.sigma_max 380, times 2
    c.model = zoo.with_overrides(
        c.model,  # [code] the same model section as celebahq_256_ncsnpp_continuous
        ve_sigma_min=0.02,  # = process.sigma_min
        ve_sigma_max=760.0,  # = process.sigma_max
    )
    return c
