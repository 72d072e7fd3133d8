"""score_sde's sub-VP SDE with the DDPM U-Net (continuous) on CIFAR-10 (Song et al. 2021), the
released ``subvp/cifar10_ddpm_continuous`` model: ``jaxdiff import --from checkpoint_*.pth``
reads it.

Sources: [code] yang-song/score_sde_pytorch configs/subvp/cifar10_ddpm_continuous.py: the VP
DDPM run (configs/vp/cifar10_ddpm_continuous.py, the same model section) with the sub-VP SDE
(same beta schedule); the score is ``-model / std`` with the sub-VP marginal std.
"""

from configs.vp.cifar10_ddpm_continuous import get_config as ddpm_config


def get_config():
    c = ddpm_config()
    c.process.name = "subvp"  # [code] training.sde 'subvpsde'
    return c
