"""score_sde's VP DDPM trained in discrete time on CIFAR-10 (Ho et al. 2020 as rerun by Song et
al. 2021), the released ``vp/cifar10_ddpm`` model: ``jaxdiff import --from checkpoint_*.pth``
reads it.

Sources: [code] yang-song/score_sde_pytorch configs/vp/ddpm/cifar10.py,
configs/default_cifar10_configs.py, models/ddpm.py, models/utils.py (``get_score_fn``) and
sde_lib.py (VPSDE). The network is the continuous DDPM's (configs/vp/cifar10_ddpm_continuous.py)
and reads the same label 999 t; as for configs/vp/cifar10_ddpmpp_discrete.py the official score
divides by the std of the 1000-step chain, ``sqrt(1 - alphabar_j)`` at ``j = floor(999 t)``, and
the network options ``num_scales`` / ``vp_beta`` fold its ratio to the VP std(t) into the output,
so every sampler of the VP process runs the released model. Training here is jaxdiff's
continuous-time DSM on that network (the official run drew integer steps).
"""

from configs.vp.cifar10_ddpm_continuous import get_config as ddpm_config
from jaxdiff.nets import zoo


def get_config():
    c = ddpm_config()  # [code] the same optimiser, EMA 0.9999, reduce_mean True, n_iters
    c.model = zoo.with_overrides(
        zoo.ddpm_cifar10(),  # [code] the same model section
        num_scales=1000,  # [code] model.num_scales: sde.N, the chain's length
        vp_beta=(0.1, 20.0),  # [code] model.beta_min, beta_max: betas linspace(b/N)
    )
    # [code] sampling.predictor 'ancestral_sampling' (DDPM's chain); the sampler stays EM (the
    # official PC sampler with the Euler-Maruyama predictor); DDIM with eta 1 on the uniform grid
    # is the ancestral update.
    return c
