"""LSGM's decoder distributions p(x | z_0) (Sec. 5): Bernoulli for binary images, NVAE's
discretised logistic for 8-bit images (here one component per channel), a Gaussian for toy data.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff.processes.base import batch_sum

LIKELIHOODS = ("gaussian", "bernoulli", "logistic")


def out_channels(likelihood: str, channels: int) -> int:
    """Channels of the decoder's output for data with ``channels`` channels."""
    return {"gaussian": 2 * channels, "bernoulli": channels, "logistic": 2 * channels}[likelihood]


def _log_sigmoid_diff(a: Array, b: Array) -> Array:
    """log(sigmoid(a) - sigmoid(b)) for a > b, stable.

    Both log-sigmoids round to the same float when a and b are far in a tail: the difference is
    then floored at 1e-30 (the caller selects the density branch there), so that the unselected
    branch of its ``where`` has a finite gradient instead of inf * 0 = NaN."""
    diff = -jnp.expm1(jax.nn.log_sigmoid(b) - jax.nn.log_sigmoid(a))
    return jax.nn.log_sigmoid(a) + jnp.log(jnp.maximum(diff, 1e-30))


def decoder_nll(
    likelihood: str, params: Float[Array, "b ... o"], x: Float[Array, "b ... c"]
) -> Float[Array, " b"]:
    """-log p(x | z) per example (nats), summed over dimensions.

    ``bernoulli``: x in {-1, 1}, params are logits. ``logistic``: 8-bit x in [-1, 1] (bins of
    width 2/255), params = (mean, log_scale). ``gaussian``: params = (mean, log_sigma).
    """
    x = x.astype(jnp.float32)
    params = params.astype(jnp.float32)
    if likelihood == "bernoulli":
        target = 0.5 * (x + 1.0)
        return batch_sum(jnp.logaddexp(0.0, params) - target * params)
    mean, log_s = jnp.split(params, 2, axis=-1)
    if likelihood == "gaussian":
        log_s = jnp.maximum(log_s, -9.0)
        r = (x - mean) * jnp.exp(-log_s)
        return batch_sum(0.5 * r**2 + log_s + 0.5 * math.log(2 * math.pi))
    if likelihood == "logistic":
        log_s = jnp.maximum(log_s, -7.0)
        inv_s = jnp.exp(-log_s)
        c = x - mean
        plus, minus = inv_s * (c + 1.0 / 255), inv_s * (c - 1.0 / 255)
        lower_edge = jax.nn.log_sigmoid(plus)  # x = -1: mass of (-inf, -1 + 1/255]
        upper_edge = -jax.nn.softplus(minus)  # x = 1: mass of [1 - 1/255, inf)
        middle = _log_sigmoid_diff(plus, jnp.minimum(minus, plus - 1e-6))
        # far in the tails the difference underflows: density at the bin centre times its width
        mid = inv_s * c
        pdf = mid - log_s - 2.0 * jax.nn.softplus(mid) + math.log(2.0 / 255)
        middle = jnp.where(middle > -12.0, middle, pdf)
        logp = jnp.where(x < -0.999, lower_edge, jnp.where(x > 0.999, upper_edge, middle))
        return -batch_sum(logp)
    raise ValueError(f"unknown likelihood {likelihood!r}; use {LIKELIHOODS}")


def decoder_mean(likelihood: str, params: Float[Array, "b ... o"]) -> Float[Array, "b ... c"]:
    """The decoder distribution's mean (LSGM decodes samples to the mean, never samples x)."""
    params = params.astype(jnp.float32)
    if likelihood == "bernoulli":
        return 2.0 * jax.nn.sigmoid(params) - 1.0
    mean = jnp.split(params, 2, axis=-1)[0]
    return jnp.clip(mean, -1.0, 1.0) if likelihood == "logistic" else mean
