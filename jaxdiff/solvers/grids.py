"""Time grids: the discretisation is data, passed to the sampler (as k-diffusion does).

A grid is a decreasing array of ``n + 1`` times from ``t_max`` (the prior) to ``t_min``. Grids
spaced in time (``uniform``, ``quadratic``) need nothing but the end points; grids spaced in the
noise level (``logsnr``: uniform in log-SNR, as DPM-Solver recommends; ``karras``: EDM's rho = 7
spacing of sigma = exp(-log-SNR / 2), Karras et al. 2022 Eq. 5) need a process with a scalar
kernel (``log_snr``) and map the levels back to times by bisection (the log-SNR is monotone).
A user-given array is checked and passed through (``as_grid``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

KARRAS_RHO = 7.0


def uniform_grid(n: int, t_max: float = 1.0, t_min: float = 1e-3) -> Float[Array, " n+1"]:
    """``n`` equal steps from ``t_max`` down to ``t_min`` (n + 1 points, decreasing)."""
    return jnp.linspace(t_max, t_min, n + 1, dtype=jnp.float32)


def quadratic_grid(n: int, t_max: float = 1.0, t_min: float = 1e-3) -> Float[Array, " n+1"]:
    """Quadratic striding: ``t_i = t_min + (t_max - t_min) ((n - i) / n)^2``, dense near the data.

    (Dockhorn et al. 2022, App. E: the grid of CLD's SSCS results.)
    """
    i = jnp.arange(n + 1, dtype=jnp.float32)
    return t_min + (t_max - t_min) * ((n - i) / n) ** 2


def time_of_log_snr(
    process: Any, target: Float[Array, " m"], t_max: float, t_min: float, iters: int = 60
) -> Float[Array, " m"]:
    """The times in ``[t_min, t_max]`` where ``process.log_snr`` equals ``target`` (bisection).

    The log-SNR decreases in t, so 60 halvings pin each time to float rounding.
    """
    target = jnp.asarray(target)
    lo = jnp.full_like(target, t_min)
    hi = jnp.full_like(target, t_max)

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = process.log_snr(mid) > target  # mid is too early: the root lies later
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, halve, (lo, hi))
    return 0.5 * (lo + hi)


def _needs_log_snr(name: str, process: Any) -> None:
    if process is None or not hasattr(process, "log_snr"):
        proc = "no process" if process is None else type(process).__name__
        raise ValueError(
            f"time grid {name!r} is spaced in log-SNR and needs a process with a scalar kernel "
            f"(VP, sub-VP, VE); got {proc}"
        )


def _pin_ends(t: Array, t_max: float, t_min: float) -> Array:
    """The bisection's end points replaced by the exact ``t_max`` and ``t_min``."""
    return t.at[0].set(t_max).at[-1].set(t_min)


def logsnr_grid(
    n: int, t_max: float = 1.0, t_min: float = 1e-3, process: Any = None
) -> Float[Array, " n+1"]:
    """Uniform steps in log-SNR from ``log_snr(t_max)`` to ``log_snr(t_min)`` (Lu et al. 2022,
    DPM-Solver Sec. 3.3: the "logSNR" time steps)."""
    _needs_log_snr("logsnr", process)
    lo, hi = process.log_snr(jnp.float32(t_max)), process.log_snr(jnp.float32(t_min))
    levels = lo + (hi - lo) * jnp.arange(n + 1, dtype=jnp.float32) / n
    return _pin_ends(time_of_log_snr(process, levels, t_max, t_min), t_max, t_min)


def karras_grid(
    n: int, t_max: float = 1.0, t_min: float = 1e-3, process: Any = None, rho: float = KARRAS_RHO
) -> Float[Array, " n+1"]:
    """EDM's noise levels (Karras et al. 2022, Eq. 5):
    ``sigma_i = (sigma_max^(1/rho) + i/n (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`` with
    ``sigma = sigma_t / alpha_t = exp(-log_snr / 2)``, mapped back to times."""
    _needs_log_snr("karras", process)
    s_max = jnp.exp(-0.5 * process.log_snr(jnp.float32(t_max)))
    s_min = jnp.exp(-0.5 * process.log_snr(jnp.float32(t_min)))
    i = jnp.arange(n + 1, dtype=jnp.float32) / n
    sig = (s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return _pin_ends(time_of_log_snr(process, -2.0 * jnp.log(sig), t_max, t_min), t_max, t_min)


GRIDS = {
    "uniform": uniform_grid,
    "quadratic": quadratic_grid,
    "logsnr": logsnr_grid,
    "karras": karras_grid,
}
_NEED_PROCESS = {"logsnr", "karras"}


def as_grid(ts: Sequence[float] | Array, t_max: float | None = None) -> Float[Array, " n+1"]:
    """A user-given grid, checked: 1-D, at least two points, strictly decreasing, non-negative,
    starting at ``t_max`` when given."""
    arr = np.asarray(ts, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"a time grid is a 1-D array of at least 2 times, got shape {arr.shape}")
    if not np.all(np.diff(arr) < 0):
        raise ValueError("a time grid must be strictly decreasing (from the prior's time)")
    if arr[-1] < 0:
        raise ValueError(f"a time grid must end at a time >= 0, got {arr[-1]}")
    if t_max is not None and not np.isclose(arr[0], t_max, rtol=1e-6, atol=0.0):
        raise ValueError(f"a time grid must start at the prior's time {t_max}, got {arr[0]}")
    return jnp.asarray(arr, jnp.float32)


def make_grid(
    name: str | Sequence[float] | Array,
    n: int,
    t_max: float = 1.0,
    t_min: float = 1e-3,
    process: Any = None,
) -> Float[Array, " n+1"]:
    """A grid by name (``uniform``, ``quadratic``, ``logsnr``, ``karras``) or a user's array.

    ``logsnr`` and ``karras`` need ``process`` (one with ``log_snr``). A given array is checked
    by ``as_grid`` and must have ``n + 1`` points.
    """
    if not isinstance(name, str):
        ts = as_grid(name, t_max)
        if ts.shape[0] != n + 1:
            raise ValueError(
                f"the given time grid has {ts.shape[0]} points, not steps + 1 = {n + 1}"
            )
        return ts
    if name not in GRIDS:
        raise ValueError(f"unknown time grid {name!r}; known: {sorted(GRIDS)}")
    if n < 1:
        raise ValueError(f"a time grid needs at least one step, got n={n}")
    if name in _NEED_PROCESS:
        return GRIDS[name](n, t_max, t_min, process)
    return GRIDS[name](n, t_max, t_min)
