"""score_sde's sub-VP "DDPM++ cont. (deep)" on CIFAR-10 (Song et al. 2021), the released
``subvp/cifar10_ddpmpp_deep_continuous`` model: ``jaxdiff import --from checkpoint_*.pth``
reads it.

Sources: [code] yang-song/score_sde_pytorch configs/subvp/cifar10_ddpmpp_deep_continuous.py:
the VP deep run (configs/vp/cifar10_ddpmpp_deep.py) with the sub-VP SDE.
"""

from configs.vp.cifar10_ddpmpp_deep import get_config as deep_config


def get_config():
    c = deep_config()
    c.process.name = "subvp"  # [code] training.sde 'subvpsde'
    return c
