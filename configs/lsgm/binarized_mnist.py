"""LSGM on dynamically binarised MNIST (padded to 32x32), the published recipe.

Sources: [README] the official NVlabs/LSGM README commands (MNIST stage 1 `train_vae.py`, stage 2
`train_vada.py`); [code] defaults of `train_vae.py` / `train_vada.py`; [lsgm.md] the project's
reference notes (section numbers). Needs tfds MNIST prepared (data_dir); for CPU use
configs/lsgm/mnist_offline.py.
"""

import ml_collections

from configs.base import lsgm_config
from configs.toy.lsgm import lsgm_optim, lsgm_section
from jaxdiff.nets import zoo


def get_config():
    c = lsgm_config()
    c.data.kind = "image"
    c.data.name = "mnist"
    c.data.pad = 2  # [lsgm.md 7.9] padded to 32x32
    c.data.binarize = True  # [lsgm.md 7.9] dynamic binarisation
    c.process.name = "vp"
    c.process.schedule = "linear"  # [README] MNIST: --sde_type vpsde
    c.process.beta_min = 0.1  # [lsgm.md 2.2]
    c.process.beta_max = 20.0  # [lsgm.md 2.2]

    c.lsgm = lsgm_section()
    c.optim = lsgm_optim()
    c.lsgm.likelihood = "bernoulli"  # [README] --decoder_dist bin
    c.lsgm.t_min = 0.01  # [code] time_eps 0.01 for the VPSDE
    c.lsgm.q_sampling = "iw"  # [README] --iw_sample_q ll_iw
    c.lsgm.p_weighting = "ll"  # [README] --iw_sample_p ll_iw
    c.lsgm.p_sampling = "iw"
    c.lsgm.mixing_logit_init = -6.0  # [README] --mixing_logit_init -6
    c.lsgm.kl_max_stage1 = 0.7  # [README] --kl_max_coeff 0.7
    c.lsgm.kl_anneal_portion = 1.0  # [README] --kl_anneal_portion 1.0
    c.lsgm.cont_kl_anneal = True  # [README] --cont_kl_anneal
    c.lsgm.sr_vae = 1e-2  # [README] --weight_decay_norm_vae 1e-2
    c.lsgm.sr_prior = 0.0  # [README] --weight_decay_norm_dae 0
    c.lsgm.kl_balance = True  # [code] train_vae.py: kl_balancer(kl_balance=True) while kl_coeff < 1
    c.lsgm.nll_t_min = 1e-5  # [README] evaluate_vada.py --ode_eps 1e-5 (MNIST)
    c.lsgm.nll_prior = "ode"  # [README] evaluate_vada.py --nll_ode_eval ('discrete': --elbo_eval)
    c.lsgm.diffusion_steps = 1000  # [code] train_vada.py --diffusion_steps default 1000
    c.lsgm.denoising_stddevs = "beta"  # [code] train_vada.py --denoising_stddevs default beta
    c.training.ema_decay = 0.9999  # [code] --ema_decay 0.9999
    c.optim.vae.optimizer_stage1 = "adamax"  # [code] train_vae.py Adamax(eps=1e-3)
    c.optim.vae.lr_stage1 = 1e-2  # [code] train_vae.py --learning_rate_vae default 1e-2
    c.optim.vae.min_lr_stage1 = 1e-4  # [code]
    c.optim.vae.warmup_stage1 = 5 * 300  # [code] 5 warm-up epochs (~300 it/epoch)
    c.optim.vae.lr = 1e-4  # [code] --learning_rate_vae 1e-4
    c.optim.vae.min_lr = 1e-5  # [code] --learning_rate_min_vae 1e-5
    c.optim.vae.warmup = 20 * 470  # [code] train_vada.py update_lr warms the VAE up too
    c.optim.vae.eps = 1e-3  # [code]
    c.optim.vae.weight_decay = 3e-4  # [code] --weight_decay 3e-4
    c.optim.prior.lr = 3e-4  # [README] --learning_rate_dae 3e-4
    c.optim.prior.eps = 1e-4  # [code]
    c.optim.prior.warmup = 20 * 470  # [README] --warmup_epochs 20 (~470 it/epoch)
    c.optim.prior.weight_decay = 3e-4  # [code]
    c.lsgm.stage1_steps = 200 * 300  # [README] 200 epochs at batch 200 (60k / 200 = 300 it)
    c.lsgm.stage2_steps = 800 * 470  # [README] 800 epochs at batch 128 [lsgm.md 5.5: ~375k]
    c.lsgm.vae = zoo.lsgm_mnist_vae()  # [README] NVAE 64 ch, 2 groups x 20 at 8x8
    c.lsgm.score = zoo.lsgm_mnist_score()  # [README] NCSN++ 256 ch, 2 scales, 8 blocks
    c.lsgm.score.dropout = 0.2  # [README] --dropout 0.2

    c.training.batch_size = 200  # [README] stage 1: --batch_size 100 x 2 GPUs
    c.lsgm.batch_size_stage2 = 128  # [README] stage 2: --batch_size 32 x 4 GPUs
    c.lsgm.drop_inactive_var = True  # [README] train_vada.py --drop_inactive_var
    c.lsgm.vae_checkpoint = ""  # [README] train_vada.py --vae_checkpoint ('': stage 1 here)
    c.training.num_steps = c.lsgm.stage1_steps + c.lsgm.stage2_steps
    c.training.ckpt_every = 10000
    c.training.log_every = 500
    c.sampling = _sampling(c.sampling)
    c.eval.likelihood_examples = 256
    c.eval.divergence = "hutchinson_gaussian"  # [code] compute_ode_nll: Gaussian probe
    return c


def _sampling(s: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    s.sampler = "ode_dopri5"  # [code] SciPy RK45 (Dormand-Prince)
    s.rtol = 1e-5  # [code] --ode_solver_tol 1e-5
    s.atol = 1e-5
    s.t_min = 1e-5  # [code] --ode_eps 1e-5
    s.denoise = False  # [code] decode z at ode_eps
    s.num = 100
    return s
