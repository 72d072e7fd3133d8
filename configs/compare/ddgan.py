"""DDGAN, T = 4 (``configs/ddgan/digits16.py``) on the shared 16x16 digits."""

from configs.compare.common import digits16
from configs.ddgan import digits16 as ddgan16


def get_config():
    c = digits16(ddgan16.get_config())
    c.training.ckpt_every = 100
    c.training.n_jitted_steps = 1  # a 10-step unrolled program takes minutes to compile here
    c.training.log_every = 50
    c.sampling.batch_size = 500
    return c
