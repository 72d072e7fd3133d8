"""score_sde's VE NCSN++ trained in discrete time (SMLD) on CIFAR-10 (Song et al. 2021), the
released ``ve/cifar10_ncsnpp`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/ve/cifar10_ncsnpp.py,
configs/default_cifar10_configs.py, models/utils.py (``get_score_fn``: the label is the integer
``round((1 - t)(N - 1))``), models/ncsnpp.py (positional embedding of the label, output divided
by ``sigmas[label]``) and utils.get_sigmas (``sigmas`` geometric from sigma_max to sigma_min).
As for the continuous VE model (configs/ve/cifar10_ncsnpp.py), the official run sees [0, 1]
data: on jaxdiff's [-1, 1] data the same network is the VE SDE with sigma in [0.02, 100], its
output divided by twice the official ``sigmas[label]``. Training here is jaxdiff's
continuous-time DSM on that network (the official run drew integer noise levels).
"""

from configs.ve.cifar10_ncsnpp import get_config as ve_config
from jaxdiff.nets import zoo


def get_config():
    c = ve_config()  # [code] the same SDE, optimiser, EMA 0.999, sampler (PC, snr 0.16)
    c.model = zoo.with_overrides(
        zoo.ncsnpp_cifar10_ve_continuous(),  # [code] the same blocks: FIR, residual input
        embedding_type="positional",  # [code] model.embedding_type 'positional'
        num_scales=1000,  # [code] model.num_scales: the labels 0..999
        time_scale=1.0,  # [code] the integer label itself
    )
    return c
