"""score_sde's VP SDE with DDPM++ (continuous) on CIFAR-10 (Song et al. 2021).

Sources: [code] yang-song/score_sde configs/vp/cifar10_ddpmpp_continuous.py and
configs/default_cifar10_configs.py; the network is the module zoo's ``ddpmpp_cifar10_continuous``
(61.8M parameters, docs/networks.md). Needs the tfds cifar10 data set prepared
(``tfds build cifar10 --file_format=array_record``; the error message says how).
"""

from configs.base import base_config
from jaxdiff.nets import zoo


def get_config():
    c = base_config()
    c.data.kind = "image"
    c.data.name = "cifar10"
    c.data.flip = True  # [code] data.random_flip True
    c.process.name = "vp"
    c.process.beta_min = 0.1  # [code] model.beta_min
    c.process.beta_max = 20.0  # [code] model.beta_max
    c.objective.parameterisation = "eps"  # [code] VP score = -model / std
    c.objective.weighting = "sigma2"  # [code] training.likelihood_weighting False
    c.objective.t_min = 1e-5  # [code] eps 1e-5 in the loss
    c.objective.reduce = "mean"  # [code] vp/cifar10_ddpmpp_continuous.py: reduce_mean = True
    c.model = zoo.ddpmpp_cifar10_continuous()
    c.optim.lr = 2e-4  # [code] optim.lr
    c.optim.b1 = 0.9  # [code] optim.beta1
    c.optim.eps = 1e-8  # [code] optim.eps
    c.optim.warmup = 5000  # [code] optim.warmup
    c.optim.grad_clip = 1.0  # [code] optim.grad_clip
    c.training.batch_size = 128  # [code] training.batch_size
    c.training.ema_decay = 0.9999  # [code] model.ema_rate
    c.training.ema_warmup = True  # [code] score_sde EMA: min(ema_rate, (1 + n) / (10 + n))
    c.training.n_jitted_steps = 5  # [code] training.n_jitted_steps
    c.training.log_every = 50  # [code] training.log_freq
    c.training.ckpt_every = 10_000  # [code] training.snapshot_freq_for_preemption
    c.training.keep_every = 50_000  # [code] training.snapshot_freq
    c.training.num_steps = 1_300_000  # [code] n_iters 1300001, rounded to n_jitted_steps
    # [landscape.md] PC sampling with the Euler-Maruyama predictor and no corrector, i.e. EM;
    # `--solver pc` adds score_sde's Langevin corrector (snr 0.16).
    c.sampling.sampler = "em"
    c.sampling.steps = 1000  # [code] model.num_scales 1000
    c.sampling.t_min = 1e-3  # [code] sampling eps 1e-3 for VP
    c.sampling.num = 64
    c.eval.divergence = "hutchinson_rademacher"  # [code] likelihood: Hutchinson (Rademacher)
    c.eval.likelihood_examples = 256
    c.eval.split = "test"  # [code] score_sde evaluates bits/dim on the test split, dequantised
    return c
