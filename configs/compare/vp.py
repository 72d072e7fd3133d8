"""VP score model (the small DDPM++ of ``configs/vp/digits.py``) on the shared 16x16 digits."""

from configs.compare.common import digits16
from configs.vp import digits


def get_config():
    c = digits16(digits.get_config())
    c.training.ckpt_every = 100
    c.training.log_every = 50
    c.training.n_jitted_steps = 1  # a 10-step unrolled program takes minutes to compile here
    c.sampling.sampler = "ode_tsit5"  # adaptive probability flow, rtol = atol = 1e-3
    c.sampling.batch_size = 500
    return c
