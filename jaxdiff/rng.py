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
