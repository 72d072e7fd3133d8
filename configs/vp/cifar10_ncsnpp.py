"""score_sde's VP SDE with NCSN++ (continuous) on CIFAR-10 (Song et al. 2021), the released
``vp/cifar10_ncsnpp_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/vp/cifar10_ncsnpp_continuous.py and
configs/default_cifar10_configs.py. Everything but the network is the VP DDPM++ run's
(configs/vp/cifar10_ddpmpp.py): the two released models differ only in the network.
"""

from configs.vp.cifar10_ddpmpp import get_config as ddpmpp_config
from jaxdiff.nets import zoo


def get_config():
    c = ddpmpp_config()
    c.model = zoo.ncsnpp_cifar10_vp_continuous()  # [code] fir, progressive_input 'residual'
    return c
