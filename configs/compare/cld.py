"""CLD (HSM, SSCS) with the same small DDPM++-style network as the VP run, shared digits.

The process and objective are the CIFAR-10 config's (M^-1 = 4, gamma = 0.04, beta = 4, HSM with
the mixed score, reweightedv2); the network takes (x, v) (2 channels) and outputs eps_v.
"""

from configs.base import cld_config
from configs.cld import cifar10
from configs.compare.common import digits16
from configs.vp import digits


def get_config():
    c = cld_config()
    c.process = cifar10.get_config().process
    c.objective = cifar10.get_config().objective
    small = digits.get_config()
    c.model = small.model
    c.optim = small.optim
    c.training = small.training
    c.eval.divergence = "hutchinson_rademacher"
    c.eval.likelihood_examples = 64
    c.eval.split = "test"
    c = digits16(c)
    c.training.ckpt_every = 100
    c.training.log_every = 50
    c.training.n_jitted_steps = 1  # a 10-step unrolled program takes minutes to compile here
    c.sampling.sampler = "sscs"  # [paper] Algorithm 1
    c.sampling.steps = 50
    c.sampling.grid = "quadratic"
    c.sampling.num = 64
    c.sampling.batch_size = 500
    return c
