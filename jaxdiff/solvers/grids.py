"""Time grids: the discretisation is data, passed to the sampler (as k-diffusion does)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float


def uniform_grid(n: int, t_max: float = 1.0, t_min: float = 1e-3) -> Float[Array, " n+1"]:
    """``n`` equal steps from ``t_max`` down to ``t_min`` (n + 1 points, decreasing)."""
    return jnp.linspace(t_max, t_min, n + 1, dtype=jnp.float32)


def quadratic_grid(n: int, t_max: float = 1.0, t_min: float = 1e-3) -> Float[Array, " n+1"]:
    """Quadratic striding: ``t_i = t_min + (t_max - t_min) ((n - i) / n)^2``, dense near the data.

    (Dockhorn et al. 2022, App. E: the grid of CLD's SSCS results.)
    """
    i = jnp.arange(n + 1, dtype=jnp.float32)
    return t_min + (t_max - t_min) * ((n - i) / n) ** 2


GRIDS = {"uniform": uniform_grid, "quadratic": quadratic_grid}


def make_grid(name: str, n: int, t_max: float = 1.0, t_min: float = 1e-3) -> Float[Array, " n+1"]:
    """A grid by name: ``uniform`` or ``quadratic``."""
    if name not in GRIDS:
        raise ValueError(f"unknown time grid {name!r}; known: {sorted(GRIDS)}")
    if n < 1:
        raise ValueError(f"a time grid needs at least one step, got n={n}")
    return GRIDS[name](n, t_max, t_min)
