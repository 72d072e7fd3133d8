"""Batch random draws from one key or from one key per example.

The trainer hands a method one PRNG key *per example* (``jax.random.split(step_key, B)`` over
the global batch). Every draw that has a batch axis goes through these functions: with a key
array of shape ``(b,)`` example ``i`` gets its numbers from ``keys[i]`` alone, so a micro-batch
of a step (gradient accumulation) draws exactly the numbers that the same examples draw inside
the full batch, and a step over ``K`` micro-batches equals the step over their union. With a
single key (shape ``()``) each function is the plain ``jax.random`` call of the whole shape,
which is what samplers and tests use.

``shape`` always includes the batch axis; with per-example keys its first entry must equal
``keys.shape[0]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array


def is_per_example(key: Array) -> bool:
    """Whether ``key`` holds one key per example (shape ``(b,)``)."""
    return jnp.ndim(key) == 1


def _each(key: Array, shape: tuple[int, ...], draw) -> Array:
    if not is_per_example(key):
        return draw(key, tuple(shape))
    if shape[0] != key.shape[0]:
        raise ValueError(f"{key.shape[0]} per-example keys for a batch of shape {shape}")
    return jax.vmap(lambda k: draw(k, tuple(shape[1:])))(key)


def normal(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """Standard normal draws of ``shape`` (batch axis first)."""
    return _each(key, shape, lambda k, s: jax.random.normal(k, s, dtype))


def uniform(key: Array, shape: tuple[int, ...], dtype=jnp.float32, minval=0.0, maxval=1.0) -> Array:
    """Uniform draws on ``[minval, maxval)`` of ``shape`` (batch axis first)."""
    return _each(key, shape, lambda k, s: jax.random.uniform(k, s, dtype, minval, maxval))


def randint(key: Array, shape: tuple[int, ...], minval: int, maxval: int) -> Array:
    """Integers in ``[minval, maxval)`` of ``shape`` (batch axis first)."""
    return _each(key, shape, lambda k, s: jax.random.randint(k, s, minval, maxval))


def split(key: Array, num: int = 2) -> Array:
    """``num`` keys (or ``num`` per-example key arrays), stacked on a new leading axis."""
    if not is_per_example(key):
        return jax.random.split(key, num)
    return jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, num))(key), 0, 1)


def fold_in(key: Array, data: int | Array) -> Array:
    """``jax.random.fold_in`` of a key or of every per-example key."""
    if not is_per_example(key):
        return jax.random.fold_in(key, data)
    return jax.vmap(lambda k: jax.random.fold_in(k, data))(key)


# ----------------------------------------------------------------------------------------------
# Dropout masks from a counter-based hash (issue #13)

# Threefry-2x32's rotation distances, round r uses ROTATIONS[r % 8] (Salmon et al. 2011,
# "Parallel random numbers: as easy as 1, 2, 3"); the key schedule's parity constant.
THREEFRY_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
THREEFRY_PARITY = 0x1BD11BDA


def threefry2x32(key: tuple[Array, Array], x: tuple[Array, Array]) -> tuple[Array, Array]:
    """Threefry-2x32 with 20 rounds of the counter words ``x`` (uint32, broadcasting) under the
    key words ``key``, as straight-line elementwise code.

    The same words as JAX's ``threefry2x32`` primitive (tested bit for bit), whose CPU lowering
    runs the rounds as a five-step loop over whole arrays (every step a pass over memory): here
    XLA fuses the 20 rounds into one loop. A round adds the second word into the first, rotates
    the second left and xors the first into it; every fourth round injects the key schedule
    ``(k0, k1, k0 ^ k1 ^ parity)``, rotated by one per injection, plus the injection's count.
    """
    ks = (key[0], key[1], key[0] ^ key[1] ^ np.uint32(THREEFRY_PARITY))
    a, b = x[0] + ks[0], x[1] + ks[1]
    for r in range(20):
        rot = THREEFRY_ROTATIONS[r % 8]
        a = a + b
        b = ((b << np.uint32(rot)) | (b >> np.uint32(32 - rot))) ^ a
        if r % 4 == 3:
            s = r // 4 + 1
            a = a + ks[s % 3]
            b = b + ks[(s + 1) % 3] + np.uint32(s)
    return a, b


def dropout_keep(key: Array, rate: float, shape: tuple[int, ...]) -> Array:
    """Keep mask of inverted dropout: ``P(keep) = 1 - round(rate * 2**16) / 2**16``.

    Each element compares 16 random bits with the threshold, and one Threefry-2x32 block (two
    32-bit words, :func:`threefry2x32`) serves four elements: block ``j`` of the ``(*shape[:-1],
    q = ceil(c / 4))`` block grid gives element ``j`` of each of the last axis's four quarters
    (contiguous runs: interleaving the four, stride 4, cost XLA:CPU 2.6x more). Its counter is
    the block's row-major index in that grid, so the mask is elementwise in the leading axes (a
    batch sharded over devices draws its own slice; a batch's first rows get the same mask at any
    batch size). ``jax.random.bernoulli`` spends a whole block per element (partitionable
    Threefry xors its two words), converts each to a float, and on the CPU hashes in a loop over
    whole arrays: its masks were 6% of the DDPM++ training step there, one (8, 32, 32, 128)
    dropout 5.0 ms against 0.8 ms now (issue #13, docs/networks.md). The rate is quantised to
    2**-16 (0.1 -> 0.099991; ``bernoulli`` quantises to 2**-23). ``key``: one Threefry key
    (typed, or its raw ``uint32[2]`` data); other key kinds fall back to ``bernoulli``.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    lead, c = tuple(shape[:-1]), (shape[-1] if shape else 1)
    grid = lead + (-(-c // 4),)
    if key.shape or str(jax.random.key_impl(key)) != "threefry2x32" or np.prod(grid) >= 2**32:
        return jax.random.bernoulli(key, 1.0 - rate, shape)
    counter = jnp.zeros(grid, jnp.uint32)  # row-major index, as a sum of per-axis iotas
    for axis in range(len(grid)):
        stride = np.uint32(np.prod(grid[axis + 1 :]))
        counter = counter + jax.lax.broadcasted_iota(jnp.uint32, grid, axis) * stride
    k = jax.random.key_data(key)
    w1, w2 = threefry2x32((k[0], k[1]), (jnp.zeros(grid, jnp.uint32), counter))
    low, threshold = np.uint32(0xFFFF), np.uint32(round(rate * 65536))
    halves = (w1 & low, w1 >> np.uint32(16), w2 & low, w2 >> np.uint32(16))
    keep = jnp.concatenate([h >= threshold for h in halves], axis=-1)  # quarters of the last axis
    return keep[..., :c].reshape(shape)
