"""score_sde's VE "NCSN++ cont. (deep)" on CIFAR-10 (Song et al. 2021), the released
``ve/cifar10_ncsnpp_deep_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/ve/cifar10_ncsnpp_deep_continuous.py: the
continuous VE NCSN++ run (configs/ve/cifar10_ncsnpp.py, Fourier features of log sigma from the
default config) with 8 residual blocks per resolution and 950k iterations.
"""

from configs.ve.cifar10_ncsnpp import get_config as ve_config
from jaxdiff.nets import zoo


def get_config():
    c = ve_config()
    c.model = zoo.with_overrides(
        zoo.ncsnpp_cifar10_ve_continuous(),
        num_res_blocks=8,  # [code] model.num_res_blocks
    )
    c.training.num_steps = 950_000  # [code] training.n_iters 950001, rounded to n_jitted_steps
    return c
