"""score_sde's VP "DDPM++ cont. (deep)" on CIFAR-10 (Song et al. 2021), the released
``vp/cifar10_ddpmpp_deep_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/vp/cifar10_ddpmpp_deep_continuous.py: the
continuous DDPM++ run (configs/vp/cifar10_ddpmpp.py) with 8 residual blocks per resolution and
950k iterations.
"""

from configs.vp.cifar10_ddpmpp import get_config as ddpmpp_config
from jaxdiff.nets import zoo


def get_config():
    c = ddpmpp_config()
    c.model = zoo.with_overrides(
        zoo.ddpmpp_cifar10_continuous(),
        num_res_blocks=8,  # [code] model.num_res_blocks
    )
    c.training.num_steps = 950_000  # [code] training.n_iters 950001, rounded to n_jitted_steps
    return c
