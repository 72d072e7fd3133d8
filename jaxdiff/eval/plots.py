"""Figures for the runner: a 2-D scatter plot and a PNG grid of images.

Matplotlib is used through its object API with the Agg canvas, so no pyplot state or global
backend is touched and nothing needs a display.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
from jaxtyping import Float
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image


def save_scatter(
    path: str | pathlib.Path,
    samples_2d: Float[np.ndarray, "n 2"],
    ref: Float[np.ndarray, "m 2"] | None = None,
    title: str | None = None,
    *,
    lim: float | None = None,
) -> None:
    """Save a scatter plot of 2-D samples (blue), over reference samples (grey) if given.

    Args:
      path: output file; the format follows the suffix (``.png``, ``.pdf``, ...).
      samples_2d: model samples.
      ref: optional true samples drawn underneath.
      title: optional title.
      lim: square axis limits [-lim, lim]; by default fitted to the points.
    """
    samples_2d = np.asarray(samples_2d)
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if ref is not None:
        ref = np.asarray(ref)
        ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.7", alpha=0.5, linewidths=0, label="data")
    ax.scatter(samples_2d[:, 0], samples_2d[:, 1], s=1, c="C0", linewidths=0, label="samples")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    if ref is not None:
        ax.legend(loc="upper right", markerscale=8)
    fig.tight_layout()
    fig.savefig(path)


def image_grid(
    images: Float[np.ndarray, "n h w c"], nrow: int | None = None, padding: int = 2
) -> np.ndarray:
    """Tile images in [-1, 1] into one uint8 array, ``nrow`` images per row, white padding.

    Returns:
      uint8 array of shape (rows * (h + p) + p, nrow * (w + p) + p, c).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    pixels = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
    grid = np.full(
        (rows * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, np.uint8
    )
    for i in range(n):
        top = padding + (i // nrow) * (h + padding)
        left = padding + (i % nrow) * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


def save_image_grid(
    path: str | pathlib.Path,
    images: Float[np.ndarray, "n h w c"],
    nrow: int | None = None,
    padding: int = 2,
) -> None:
    """Save images in [-1, 1] (NHWC, c = 1 or 3) as one PNG grid (see :func:`image_grid`)."""
    grid = image_grid(images, nrow=nrow, padding=padding)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
