"""LSGM, the continuous-logistic flat VAE of ``configs/lsgm/mnist_offline.py``, shared digits."""

from configs.compare.common import digits16
from configs.lsgm import mnist_offline


def get_config():
    c = digits16(mnist_offline.get_config("continuous"))
    c.lsgm.stage2_steps = 1_000_000  # stage 1 as configured, then stage 2 until the budget ends
    c.training.num_steps = c.lsgm.stage1_steps + c.lsgm.stage2_steps
    c.training.ckpt_every = 100
    c.training.log_every = 50
    c.sampling.batch_size = 500
    c.eval.split = "test"
    return c
