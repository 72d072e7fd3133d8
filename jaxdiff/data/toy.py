"""Seeded toy data: 2-D benchmark sets and d-dimensional Gaussian mixtures.

Every generator is a pure function of a PRNG key. The two mixture sets ("25gaussians",
"8gaussians") are sampled through their :class:`GaussianMixture`, so the exact density used by
the metrics and by the exact-score tests is the one the data came from.
"""

from __future__ import annotations

import functools
import math
import zipfile
import zlib
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Key

# ----------------------------------------------------------------------------------------------
# Isotropic Gaussian mixture


class GaussianMixture(eqx.Module):
    """sum_k w_k N(mu_k, s_k^2 I): an immutable pytree with exact sampling and log-density."""

    weights: Float[Array, " k"]
    means: Float[Array, "k d"]
    stds: Float[Array, " k"]

    def __check_init__(self):
        k, _ = self.means.shape
        if self.weights.shape != (k,) or self.stds.shape != (k,):
            raise ValueError(
                f"weights {self.weights.shape} and stds {self.stds.shape} must be ({k},) "
                f"to match means {self.means.shape}"
            )

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @functools.partial(jax.jit, static_argnums=2)
    def sample(self, key: Key[Array, ""], n: int) -> Float[Array, "n d"]:
        """Draw ``n`` samples: a component k ~ Cat(w), then mu_k + s_k * N(0, I)."""
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.categorical(k_comp, jnp.log(self.weights), shape=(n,))
        eps = jax.random.normal(k_noise, (n, self.dim), dtype=self.means.dtype)
        return self.means[comp] + self.stds[comp, None] * eps

    def component_log_probs(self, x: Float[Array, "n d"]) -> Float[Array, "n k"]:
        """log w_k + log N(x; mu_k, s_k^2 I) for every sample and component."""
        d = x.shape[-1]
        sq = jnp.sum((x[:, None, :] - self.means[None]) ** 2, axis=-1)  # (n, k)
        log_norm = -d * jnp.log(self.stds) - 0.5 * d * math.log(2 * math.pi)
        return jnp.log(self.weights) + log_norm - 0.5 * sq / self.stds**2

    @jax.jit
    def log_prob(self, x: Float[Array, "n d"]) -> Float[Array, " n"]:
        """Exact log-density, a logsumexp over components."""
        return jax.nn.logsumexp(self.component_log_probs(x), axis=-1)


def mixture_25gaussians(std: float = 0.05) -> GaussianMixture:
    """25 equal-weight Gaussians centred on the grid {-4,-2,0,2,4}^2 with std 0.05.

    The mode-collapse benchmark of VEEGAN / PacGAN (Srivastava et al. 2017; Lin et al. 2018).
    """
    g = np.arange(-4.0, 5.0, 2.0)
    means = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    return _mixture_from_numpy(np.full(25, 1 / 25), means, np.full(25, std))


def mixture_8gaussians(radius: float = 2.0, std: float = 0.02) -> GaussianMixture:
    """8 equal-weight Gaussians evenly spaced on a circle of radius 2, std 0.02.

    The ring of Unrolled GAN / VEEGAN (Metz et al. 2017; Srivastava et al. 2017): centres at
    angles 2 pi k / 8, k = 0..7, starting at (radius, 0).
    """
    angles = 2 * np.pi * np.arange(8) / 8
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return _mixture_from_numpy(np.full(8, 1 / 8), means, np.full(8, std))


def _mixture_from_numpy(weights, means, stds) -> GaussianMixture:
    # Built with numpy then moved once: no eager jax ops (each would compile on first use).
    return GaussianMixture(
        weights=jnp.asarray(weights, jnp.float32),
        means=jnp.asarray(means, jnp.float32),
        stds=jnp.asarray(stds, jnp.float32),
    )


@functools.partial(jax.jit, static_argnames=("dim", "num_components", "random_weights"))
def random_mixture(
    key: Key[Array, ""],
    dim: int = 64,
    num_components: int = 16,
    *,
    separation: float = 10.0,
    std: float = 1.0,
    random_weights: bool = False,
) -> GaussianMixture:
    """A d-dimensional mixture whose centres are exactly ``separation`` apart or more.

    The centres are +-(separation / sqrt 2) q_i for a random orthonormal basis (q_i) of R^d
    (the vertices of a randomly rotated cross-polytope), taken in the order +q_1, -q_1, +q_2, ...
    Any two distinct centres are therefore at distance separation (orthogonal pair) or
    sqrt(2) * separation (antipodal pair), so ``num_components <= 2 * dim``. All components share
    ``std``; with the defaults (separation 10 = 10 std) components overlap negligibly even in 64-D.

    Args:
      key: PRNG key for the rotation and (optionally) the weights.
      dim: dimension d.
      num_components: K <= 2 d.
      separation: minimum distance between two centres.
      std: per-coordinate standard deviation of every component.
      random_weights: draw weights from Dirichlet(1, ..., 1) instead of uniform weights.

    Returns:
      The mixture.
    """
    if num_components > 2 * dim:
        raise ValueError(f"num_components={num_components} > 2 * dim = {2 * dim}")
    k_rot, k_w = jax.random.split(key)
    q, r = jnp.linalg.qr(jax.random.normal(k_rot, (dim, dim)))
    q = q * jnp.sign(jnp.diag(r))  # Haar-distributed rotation
    signs = jnp.where(jnp.arange(num_components) % 2 == 0, 1.0, -1.0)
    means = (separation / math.sqrt(2)) * signs[:, None] * q.T[jnp.arange(num_components) // 2]
    if random_weights:
        e = jax.random.exponential(k_w, (num_components,))  # normalised Exp(1) ~ Dirichlet(1)
        weights = e / jnp.sum(e)
    else:
        weights = jnp.full((num_components,), 1 / num_components)
    return GaussianMixture(weights=weights, means=means, stds=jnp.full((num_components,), std))


# ----------------------------------------------------------------------------------------------
# 2-D benchmark sets


def _sample_25gaussians(key: Key[Array, ""], n: int) -> Float[Array, "n 2"]:
    return mixture_25gaussians().sample(key, n)


def _sample_8gaussians(key: Key[Array, ""], n: int) -> Float[Array, "n 2"]:
    return mixture_8gaussians().sample(key, n)


def _sample_checkerboard(key: Key[Array, ""], n: int) -> Float[Array, "n 2"]:
    """Uniform on the 8 black cells of a 4x4 board of side-2 squares covering [-4, 4]^2.

    A cell (i, j) = (floor(x / 2), floor(y / 2)) is black when i + j is even.
    """
    kx, ky, kc = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (n,), minval=-4.0, maxval=4.0)
    cx = jnp.floor(x / 2)  # in {-2, -1, 0, 1}
    cy = 2 * jax.random.randint(kc, (n,), -1, 1) + jnp.mod(cx, 2)  # same parity as cx
    y = 2 * (cy + jax.random.uniform(ky, (n,)))
    return jnp.stack([x, y], axis=-1)


def _sample_swissroll(key: Key[Array, ""], n: int) -> Float[Array, "n 2"]:
    """The 2-D Swiss roll t (cos t, sin t), t ~ U[1.5 pi, 4.5 pi], scaled by 1/5, noise std 0.2."""
    kt, ke = jax.random.split(key)
    t = 1.5 * jnp.pi * (1 + 2 * jax.random.uniform(kt, (n,)))
    x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1) / 5
    return x + 0.2 * jax.random.normal(ke, (n, 2))


def _sample_moons(key: Key[Array, ""], n: int) -> Float[Array, "n 2"]:
    """Two interleaved half circles (as sklearn's make_moons, noise std 0.1), centred, scaled x2."""
    kt, kb, ke = jax.random.split(key, 3)
    theta = jnp.pi * jax.random.uniform(kt, (n,))
    upper = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    lower = jnp.stack([1 - jnp.cos(theta), 0.5 - jnp.sin(theta)], axis=-1)
    which = jax.random.bernoulli(kb, 0.5, (n, 1))
    x = jnp.where(which, lower, upper) + 0.1 * jax.random.normal(ke, (n, 2))
    return 2 * (x - jnp.array([0.5, 0.25]))


_TOY_SAMPLERS: dict[str, Callable[[Key[Array, ""], int], Float[Array, "n 2"]]] = {
    "25gaussians": _sample_25gaussians,
    "8gaussians": _sample_8gaussians,
    "checkerboard": _sample_checkerboard,
    "swissroll": _sample_swissroll,
    "moons": _sample_moons,
}

_TOY_MIXTURES: dict[str, Callable[[], GaussianMixture]] = {
    "25gaussians": mixture_25gaussians,
    "8gaussians": mixture_8gaussians,
}

TOY_NAMES = tuple(_TOY_SAMPLERS)


@functools.partial(jax.jit, static_argnums=(0, 2))
def sample_toy(name: str, key: Key[Array, ""], n: int) -> Float[Array, "n 2"]:
    """Draw ``n`` points of the 2-D toy set ``name`` (one of ``TOY_NAMES``)."""
    if name not in _TOY_SAMPLERS:
        raise ValueError(f"unknown toy data set {name!r}; known: {', '.join(TOY_NAMES)}")
    return _TOY_SAMPLERS[name](key, n)


def toy_mixture(name: str) -> GaussianMixture | None:
    """The exact mixture behind toy set ``name``, or None when the set is not a mixture."""
    if name not in _TOY_SAMPLERS:
        raise ValueError(f"unknown toy data set {name!r}; known: {', '.join(TOY_NAMES)}")
    make = _TOY_MIXTURES.get(name)
    return None if make is None else make()


# ----------------------------------------------------------------------------------------------
# Trainer-facing data object: a batch is a pure function of (seed, step)


class ToyData:
    """Toy data with the trainer's ``batch(step, batch_size, ...)`` interface.

    The global batch of step ``s`` is drawn from ``fold_in(key(seed), s)`` and each process keeps
    its contiguous ``batch_size // process_count`` slice, so the global batch is the same for any
    process count and resuming at step k reproduces the uninterrupted run exactly.

    Args:
      source: a name from ``TOY_NAMES`` or a :class:`GaussianMixture` (e.g. ``random_mixture``).
      seed: data seed.
    """

    def __init__(self, source: str | GaussianMixture, seed: int = 0):
        if isinstance(source, str):
            sample_toy(source, jax.random.key(0), 1)  # validates the name
        self.source = source
        self.seed = seed
        self.mixture = source if isinstance(source, GaussianMixture) else toy_mixture(source)
        self.shape: tuple[int, ...] = (2,) if isinstance(source, str) else (source.dim,)
        self.num_examples: int | None = None  # an infinite stream
        # one compiled program per batch size: drawing a batch op by op dispatched ~10 small
        # programs (9 ms per batch of 512 against 0.8 ms; 22 % of a toy LSGM run's wall time)
        self._draw: dict[int, Callable] = {}

    def sample(self, key: Key[Array, ""], n: int) -> Float[Array, "n d"]:
        """``n`` fresh samples of the true distribution."""
        if isinstance(self.source, str):
            return sample_toy(self.source, key, n)
        return self.source.sample(key, n)

    def batch(
        self, step: int, batch_size: int, *, process_index: int = 0, process_count: int = 1
    ) -> dict[str, Float[np.ndarray, "b d"]]:
        """This process's slice of the global batch of ``step``: ``{"x": float32 [b, d]}``."""
        sl = process_slice(batch_size, process_index, process_count)
        if batch_size not in self._draw:
            self._draw[batch_size] = jax.jit(
                lambda key, s: self.sample(jax.random.fold_in(key, s), batch_size)
            )
        x = np.asarray(self._draw[batch_size](jax.random.key(self.seed), step), dtype=np.float32)
        return {"x": x[sl]}


class PointData:
    """The user's own points: an ``(N, d)`` float array in an ``.npz`` (key ``x``, ``points`` or
    the file's only array), with the toy sets' interface.

    The global batch of step ``s`` draws ``batch_size`` indices uniformly with replacement from
    ``fold_in(key(seed), s)``: a pure function of (seed, step), as for the toy sets. ``sample``
    draws held-out-style batches the same way from any key.
    """

    def __init__(self, path: str, seed: int = 0):
        try:
            with np.load(path) as f:
                names = [k for k in ("x", "points") if k in f.files]
                names = names or (list(f.files) if len(f.files) == 1 else [])
                if not names:
                    raise KeyError(f"{path} holds arrays {f.files}; name the (N, d) array 'x'")
                points = np.asarray(f[names[0]])
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:  # truncated
            raise ValueError(f"cannot read points from {path!r}: {e}") from e
        if points.ndim != 2 or not np.issubdtype(points.dtype, np.floating):
            raise ValueError(
                f"{path} must hold an (N, d) float array; got {points.dtype} {points.shape}"
            )
        if not np.all(np.isfinite(points)):
            raise ValueError(f"{path} holds NaN or infinite values")
        self.points = points.astype(np.float32)
        self.seed = seed
        self.shape: tuple[int, ...] = (points.shape[1],)
        self.num_examples: int | None = points.shape[0]
        self.mixture = None

    def sample(self, key: Key[Array, ""], n: int) -> Float[Array, "n d"]:
        idx = jax.random.randint(key, (n,), 0, self.points.shape[0])
        return jnp.asarray(self.points)[idx]

    def batch(
        self, step: int, batch_size: int, *, process_index: int = 0, process_count: int = 1
    ) -> dict[str, Float[np.ndarray, "b d"]]:
        """This process's slice of the global batch of ``step``: ``{"x": float32 [b, d]}``."""
        sl = process_slice(batch_size, process_index, process_count)
        key = jax.random.fold_in(jax.random.key(self.seed), step)
        return {"x": np.asarray(self.sample(key, batch_size))[sl]}


def process_slice(batch_size: int, process_index: int, process_count: int) -> slice:
    """The contiguous part of a global batch that process ``process_index`` reads."""
    if batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} not divisible by process_count {process_count}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    per = batch_size // process_count
    return slice(process_index * per, (process_index + 1) * per)
