"""score_sde's VE SDE with NCSN++ (continuous) on CIFAR-10 (Song et al. 2021), the released
``ve/cifar10_ncsnpp_continuous`` model: ``jaxdiff import --from checkpoint_*.pth`` reads it.

Sources: [code] yang-song/score_sde_pytorch configs/ve/cifar10_ncsnpp_continuous.py and
configs/default_cifar10_configs.py. The official run sees CIFAR-10 in [0, 1] (data.centered
False) with sigma in [0.01, 50]; jaxdiff's images are in [-1, 1], so the same model is the VE SDE
with sigma in [0.02, 100] (x = 2x' - 1 doubles the noise) and the network reads the official
label sigma / 2 (``zoo.ncsnpp_cifar10_ve_continuous``).
"""

from configs.base import base_config, drop
from jaxdiff.nets import zoo


def get_config():
    c = base_config()
    c.data.kind = "image"
    c.data.name = "cifar10"
    c.data.flip = True  # [code] data.random_flip True
    drop(c, "process.schedule", "process.beta_min", "process.beta_max", "process.end_time")
    c.process.name = "ve"
    c.process.sigma_min = 0.02  # [code] model.sigma_min 0.01 on [0, 1] data, times 2
    c.process.sigma_max = 100.0  # [code] model.sigma_max 50 on [0, 1] data, times 2
    c.objective.parameterisation = "score"  # [code] VE continuous: score = model(x, sigma)
    drop(c, "objective.data_mean", "objective.data_var")
    c.objective.weighting = "sigma2"  # [code] likelihood_weighting False: lambda = sigma^2
    c.objective.t_min = 1e-5  # [code] losses.py eps 1e-5
    c.objective.reduce = "sum"  # [code] default reduce_mean False
    c.model = zoo.ncsnpp_cifar10_ve_continuous()
    c.optim.lr = 2e-4  # [code] optim.lr
    c.optim.b1 = 0.9  # [code] optim.beta1
    c.optim.eps = 1e-8  # [code] optim.eps
    c.optim.warmup = 5000  # [code] optim.warmup
    c.optim.grad_clip = 1.0  # [code] optim.grad_clip
    c.training.batch_size = 128  # [code] training.batch_size
    c.training.ema_decay = 0.999  # [code] model.ema_rate (VE)
    c.training.ema_warmup = True  # [code] score_sde EMA: min(ema_rate, (1 + n) / (10 + n))
    c.training.n_jitted_steps = 5
    c.training.log_every = 50  # [code] training.log_freq
    c.training.ckpt_every = 10_000  # [code] training.snapshot_freq_for_preemption
    c.training.keep_every = 50_000  # [code] training.snapshot_freq
    c.training.num_steps = 1_300_000  # [code] n_iters 1300001, rounded to n_jitted_steps
    # [code] PC sampling: reverse-diffusion predictor + Langevin corrector (snr 0.16); jaxdiff's
    # 'pc' uses the Euler-Maruyama predictor, which for VE is the same update to first order.
    c.sampling.sampler = "pc"
    c.sampling.steps = 1000  # [code] model.num_scales 1000
    c.sampling.t_min = 1e-5  # [code] sampling eps 1e-5 for VE
    c.sampling.snr = 0.16  # [code] sampling.snr
    c.sampling.n_corrector = 1  # [code] sampling.n_steps_each
    c.sampling.num = 64
    c.eval.divergence = "hutchinson_rademacher"  # [code] likelihood: Hutchinson (Rademacher)
    c.eval.likelihood_examples = 256
    return c
