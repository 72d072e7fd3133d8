"""DDGAN on the offline MNIST digits resized to 16x16, T = 4: the picture a 2-core CPU can draw.

``configs/ddgan/digits32.py`` at a quarter of the pixels (and so about a quarter of the compute
per step): on the shared 2-core machine a 32x32 step took ~7 s, too slow to train a GAN within a
bounded run; at 16x16 a few thousand steps fit in ~40 minutes. Sources as in digits32; [ours]
the reductions.
"""

from configs.ddgan import digits32


def get_config():
    c = digits32.get_config()
    c.data.image_size = 16  # [ours] 28 -> 32 (pad 2) -> bilinear 16x16
    c.model.ch_mult = (1, 2)  # [ours] 16 / 8
    c.training.batch_size = 32  # [ours]
    c.training.num_steps = 3000  # [ours] bounded CPU run
    return c
