"""score_sde's VP SDE with the DDPM U-Net (continuous) on CIFAR-10 (Song et al. 2021), the
released ``vp/cifar10_ddpm_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/vp/ddpm/cifar10_continuous.py, its base
configs/default_cifar10_configs.py and models/ddpm.py. The run is the VP DDPM++ one
(configs/vp/cifar10_ddpmpp.py: VP SDE, beta in [0.1, 20], reduce_mean True, the same optimiser,
EMA 0.9999, data centered, EM sampling) with the DDPM network (``zoo.ddpm_cifar10``); the score
is ``-model / std(t)`` with the label 999 t.
"""

from configs.vp.cifar10_ddpmpp import get_config as ddpmpp_config
from jaxdiff.nets import zoo


def get_config():
    c = ddpmpp_config()  # [code] training.sde 'vpsde', continuous True, reduce_mean True
    c.model = zoo.ddpm_cifar10()  # [code] model.name 'ddpm', nf 128, ch_mult (1, 2, 2, 2), ...
    return c
