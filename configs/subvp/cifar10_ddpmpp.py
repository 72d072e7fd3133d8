"""score_sde's sub-VP SDE with DDPM++ (continuous) on CIFAR-10 (Song et al. 2021), the released
``subvp/cifar10_ddpmpp_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/subvp/cifar10_ddpmpp_continuous.py: the VP
DDPM++ run (configs/vp/cifar10_ddpmpp.py) with the sub-VP SDE (same beta schedule); the score is
``-model / std`` with the sub-VP marginal std.
"""

from configs.vp.cifar10_ddpmpp import get_config as ddpmpp_config


def get_config():
    c = ddpmpp_config()
    c.process.name = "subvp"  # [code] training.sde 'subvpsde'
    return c
