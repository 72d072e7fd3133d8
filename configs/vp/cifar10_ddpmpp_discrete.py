"""score_sde's VP DDPM++ trained in discrete time on CIFAR-10 (Song et al. 2021), the released
``vp/cifar10_ddpmpp`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/vp/cifar10_ddpmpp.py,
configs/default_cifar10_configs.py, models/utils.py (``get_score_fn``) and sde_lib.py (VPSDE).
The network is the continuous DDPM++'s (configs/vp/cifar10_ddpmpp.py) and reads the same label
999 t; only the score differs: the official ``get_score_fn`` divides by the std of its
1000-step chain, ``sqrt(1 - alphabar_j)`` at ``j = floor(999 t)``, where the continuous model
divides by the VP std(t). The network option ``num_scales`` folds the ratio of the two into its
output, so jaxdiff's ``-model / std(t)`` is the official score at every t and every sampler of
the VP process runs the released model. Training here is jaxdiff's continuous-time DSM on that
network (the official run drew integer steps).
"""

from configs.vp.cifar10_ddpmpp import get_config as ddpmpp_config
from jaxdiff.nets import zoo


def get_config():
    c = ddpmpp_config()  # [code] the same optimiser, EMA 0.9999, reduce_mean True, n_iters
    c.model = zoo.with_overrides(
        zoo.ddpmpp_cifar10_continuous(),  # [code] the same model section
        num_scales=1000,  # [code] model.num_scales: sde.N, the chain's length
        vp_beta=(0.1, 20.0),  # [code] model.beta_min, beta_max: betas linspace(b/N)
    )
    # [code] sampling.predictor 'ancestral_sampling' (DDPM's chain); the sampler stays EM (the
    # official PC sampler with the Euler-Maruyama predictor); DDIM with eta 1 on the uniform grid
    # is the ancestral update.
    return c
