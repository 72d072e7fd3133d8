"""Sample-quality metrics and figures."""

from jaxdiff.eval.metrics import (
    mixture_nll,
    mmd_rbf,
    mode_stats,
    sliced_wasserstein,
    sw_noise_floor,
    toy_metrics,
)
from jaxdiff.eval.plots import image_grid, save_image_grid, save_scatter

__all__ = [
    "image_grid",
    "mixture_nll",
    "mmd_rbf",
    "mode_stats",
    "save_image_grid",
    "save_scatter",
    "sliced_wasserstein",
    "sw_noise_floor",
    "toy_metrics",
]
