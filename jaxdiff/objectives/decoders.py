"""LSGM's decoder distributions p(x | z_0) (Sec. 5 and App. E of Vahdat et al. 2021; NVAE's
``util/distributions.py``): Bernoulli for binary images, a discretised logistic per channel, the
discretised mixture of logistics (``dml``, PixelCNN++'s, Salimans et al. 2017, Eq. 2-3) of the
CIFAR-10 and CelebA-HQ models, and a Gaussian for toy data.

Images are in [-1, 1] on a grid of ``2^num_bits`` levels (``quantise``; CelebA-HQ uses 5 bits,
LSGM's ``--num_x_bits 5``): a level's bin has half-width 1 / (2^num_bits - 1), and the two edge
bins take the logistic's tails.

``dml`` parameter layout (last axis), the official one: ``num_mix`` mixture logits, then for each
colour channel c a block of ``3 num_mix``: means, log-scales (clamped at -7), and the
autoregressive coefficients ``tanh(.)``. For RGB, channel 1's mean adds ``coeff[0] x_0`` and
channel 2's ``coeff[1] x_0 + coeff[2] x_1`` (the coefficients of the blocks of channels 0, 1, 2).
Grey images (one channel) have no coefficients: ``num_mix`` logits + means + log-scales.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxdiff.processes.base import batch_sum

LIKELIHOODS = ("gaussian", "bernoulli", "logistic", "dml")
LOG_SCALE_MIN = -7.0  # NVAE's clamp of the logistics' log-scales


def out_channels(likelihood: str, channels: int, num_mix: int = 10) -> int:
    """Channels of the decoder's output for data with ``channels`` channels."""
    if likelihood == "dml":
        if channels == 3:
            return 10 * num_mix  # logits + 3 x (means, log-scales, coefficients)
        if channels == 1:
            return 3 * num_mix  # logits, means, log-scales
        raise ValueError(f"the dml decoder models RGB or grey images, got {channels} channels")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; use {LIKELIHOODS}")
    return channels if likelihood == "bernoulli" else 2 * channels


def max_level(num_bits: int) -> int:
    """The largest level 2^num_bits - 1 (255 for 8-bit data)."""
    if not 1 <= int(num_bits) <= 8:
        raise ValueError(f"num_bits is between 1 and 8, got {num_bits}")
    return 2 ** int(num_bits) - 1


def quantise(x: Float[Array, "..."], num_bits: int) -> Float[Array, "..."]:
    """8-bit images in [-1, 1] reduced to ``num_bits`` (LSGM's ``pre_process``): level
    floor(k / 2^(8 - num_bits)) of the 8-bit level k, mapped back to [-1, 1]."""
    if int(num_bits) == 8:
        return x
    k = jnp.round((jnp.asarray(x, jnp.float32) + 1.0) * 127.5)
    level = jnp.floor(k / 2 ** (8 - int(num_bits)))
    return 2.0 * level / max_level(num_bits) - 1.0


def to_grid(x: Float[Array, "..."], num_bits: int) -> Float[Array, "..."]:
    """The nearest level of the ``num_bits`` grid on [-1, 1]."""
    m = max_level(num_bits)
    return 2.0 * jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 0.5 * m) / m - 1.0


def _log_sigmoid_diff(a: Array, b: Array) -> Array:
    """log(sigmoid(a) - sigmoid(b)) for a > b, stable.

    Both log-sigmoids round to the same float when a and b are far in a tail: the difference is
    then floored at 1e-30 (the caller selects the density branch there), so that the unselected
    branch of its ``where`` has a finite gradient instead of inf * 0 = NaN."""
    diff = -jnp.expm1(jax.nn.log_sigmoid(b) - jax.nn.log_sigmoid(a))
    return jax.nn.log_sigmoid(a) + jnp.log(jnp.maximum(diff, 1e-30))


def disc_logistic_logp(
    x: Float[Array, "..."], mean: Float[Array, "..."], log_s: Float[Array, "..."], num_bits: int
) -> Float[Array, "..."]:
    """log P(bin of x) of a logistic(mean, e^log_s) discretised to the ``num_bits`` grid
    (PixelCNN++ Eq. 2): CDF(x + h) - CDF(x - h), h = 1 / (2^bits - 1), the edge bins open."""
    m = max_level(num_bits)
    inv_s = jnp.exp(-log_s)
    c = x - mean
    plus, minus = inv_s * (c + 1.0 / m), inv_s * (c - 1.0 / m)
    lower_edge = jax.nn.log_sigmoid(plus)  # x = -1: mass of (-inf, -1 + h]
    upper_edge = -jax.nn.softplus(minus)  # x = 1: mass of [1 - h, inf)
    middle = _log_sigmoid_diff(plus, jnp.minimum(minus, plus - 1e-6))
    # far in the tails the difference underflows: density at the bin centre times its width
    mid = inv_s * c
    pdf = mid - log_s - 2.0 * jax.nn.softplus(mid) + math.log(2.0 / m)
    middle = jnp.where(middle > -12.0, middle, pdf)
    return jnp.where(x < -0.999, lower_edge, jnp.where(x > 0.999, upper_edge, middle))


# ----------------------------------------------------------------------------------------------
# The discretised mixture of logistics


def _dml_split(params: Array, channels: int, num_mix: int):
    """(logits (..., M), means (..., C, M), log-scales (..., C, M), coefficients or None)."""
    want = out_channels("dml", channels, num_mix)
    if params.shape[-1] != want:
        raise ValueError(
            f"dml with {num_mix} components on {channels} channels needs {want} decoder outputs,"
            f" got {params.shape[-1]}"
        )
    logits = params[..., :num_mix]
    rest = params[..., num_mix:].reshape(*params.shape[:-1], channels, -1)
    means = rest[..., :num_mix]
    log_s = jnp.maximum(rest[..., num_mix : 2 * num_mix], LOG_SCALE_MIN)
    coeffs = jnp.tanh(rest[..., 2 * num_mix :]) if channels == 3 else None
    return logits, means, log_s, coeffs


def _dml_means(means: Array, coeffs: Array | None, x: Array) -> Array:
    """Per-component means of each channel given the previous channels' values x (..., C)."""
    if coeffs is None:
        return means
    x0, x1 = x[..., 0:1], x[..., 1:2]
    m1 = means[..., 1, :] + coeffs[..., 0, :] * x0
    m2 = means[..., 2, :] + coeffs[..., 1, :] * x0 + coeffs[..., 2, :] * x1
    return jnp.stack([means[..., 0, :], m1, m2], axis=-2)


def dml_logp(
    params: Float[Array, "b h w o"], x: Float[Array, "b h w c"], num_mix: int, num_bits: int
) -> Float[Array, "b h w"]:
    """log p(x) per pixel of the discretised mixture (PixelCNN++ Eq. 2-3): logsumexp over the
    components of log pi_m + sum_c log P(x_c | mean_cm(x_<c), s_cm)."""
    logits, means, log_s, coeffs = _dml_split(params, x.shape[-1], num_mix)
    mu = _dml_means(means, coeffs, x)
    per = disc_logistic_logp(x[..., None], mu, log_s, num_bits).sum(axis=-2)  # (..., M)
    return jax.nn.logsumexp(per + jax.nn.log_softmax(logits, axis=-1), axis=-1)


def dml_sample(
    params: Float[Array, "b h w o"],
    key: jax.Array,
    channels: int,
    num_mix: int,
    num_bits: int,
    temp: float = 1.0,
) -> Float[Array, "b h w c"]:
    """Exact draws of the discretised mixture: a component by Gumbel-max on logits / temp, then
    channel by channel a logistic draw (scale times temp), clipped and rounded to the grid, the
    next channel's mean taking the rounded value (the density conditions on bins)."""
    logits, means, log_s, coeffs = _dml_split(params, channels, num_mix)
    k_c, k_u = jax.random.split(key)
    comp = jax.random.categorical(k_c, logits / temp, axis=-1)
    pick = jax.nn.one_hot(comp, num_mix, dtype=means.dtype)[..., None, :]  # (..., 1, M)
    mean, scale = (means * pick).sum(-1), jnp.exp((log_s * pick).sum(-1)) * temp
    u = jax.random.uniform(k_u, mean.shape, mean.dtype, 1e-6, 1.0 - 1e-6)
    noise = scale * (jnp.log(u) - jnp.log1p(-u))
    x0 = to_grid(mean[..., 0] + noise[..., 0], num_bits)
    if coeffs is None:
        return x0[..., None]
    c = (coeffs * pick).sum(-1)
    x1 = to_grid(mean[..., 1] + c[..., 0] * x0 + noise[..., 1], num_bits)
    x2 = to_grid(mean[..., 2] + c[..., 1] * x0 + c[..., 2] * x1 + noise[..., 2], num_bits)
    return jnp.stack([x0, x1, x2], axis=-1)


def dml_mean(params: Float[Array, "b h w o"], channels: int, num_mix: int) -> Array:
    """NVAE's decoded image of a mixture: the mixture-weighted means and coefficients, channel by
    channel clamped to [-1, 1] (the samples LSGM reports; it never samples pixels)."""
    logits, means, _, coeffs = _dml_split(params, channels, num_mix)
    w = jax.nn.softmax(logits, axis=-1)[..., None, :]
    m = (means * w).sum(-1)
    x0 = jnp.clip(m[..., 0], -1.0, 1.0)
    if coeffs is None:
        return x0[..., None]
    c = (coeffs * w).sum(-1)
    x1 = jnp.clip(m[..., 1] + c[..., 0] * x0, -1.0, 1.0)
    x2 = jnp.clip(m[..., 2] + c[..., 1] * x0 + c[..., 2] * x1, -1.0, 1.0)
    return jnp.stack([x0, x1, x2], axis=-1)


# ----------------------------------------------------------------------------------------------
# One entry point per operation, by name


def decoder_nll(
    likelihood: str,
    params: Float[Array, "b ... o"],
    x: Float[Array, "b ... c"],
    num_mix: int = 10,
    num_bits: int = 8,
) -> Float[Array, " b"]:
    """-log p(x | z) per example (nats), summed over dimensions.

    ``bernoulli``: x in {-1, 1}, params are logits. ``logistic``: x on the ``num_bits`` grid in
    [-1, 1], params = (mean, log_scale). ``dml``: x on the grid, params as the module docstring.
    ``gaussian``: params = (mean, log_sigma).
    """
    x = x.astype(jnp.float32)
    params = params.astype(jnp.float32)
    if likelihood == "bernoulli":
        target = 0.5 * (x + 1.0)
        return batch_sum(jnp.logaddexp(0.0, params) - target * params)
    if likelihood == "dml":
        return -batch_sum(dml_logp(params, x, num_mix, num_bits))
    mean, log_s = jnp.split(params, 2, axis=-1)
    if likelihood == "gaussian":
        log_s = jnp.maximum(log_s, -9.0)
        r = (x - mean) * jnp.exp(-log_s)
        return batch_sum(0.5 * r**2 + log_s + 0.5 * math.log(2 * math.pi))
    if likelihood == "logistic":
        log_s = jnp.maximum(log_s, LOG_SCALE_MIN)
        return -batch_sum(disc_logistic_logp(x, mean, log_s, num_bits))
    raise ValueError(f"unknown likelihood {likelihood!r}; use {LIKELIHOODS}")


def decoder_mean(
    likelihood: str, params: Float[Array, "b ... o"], channels: int | None = None, num_mix: int = 10
) -> Float[Array, "b ... c"]:
    """The decoder distribution's mean (LSGM decodes samples to the mean, never samples x).
    ``channels`` (the data's) is needed by ``dml`` only."""
    params = params.astype(jnp.float32)
    if likelihood == "bernoulli":
        return 2.0 * jax.nn.sigmoid(params) - 1.0
    if likelihood == "dml":
        if channels is None:
            raise ValueError("decoder_mean('dml', ...) needs the data's channels")
        return dml_mean(params, channels, num_mix)
    mean = jnp.split(params, 2, axis=-1)[0]
    return jnp.clip(mean, -1.0, 1.0) if likelihood == "logistic" else mean


def decoder_sample(
    likelihood: str,
    params: Float[Array, "b ... o"],
    key: jax.Array,
    channels: int,
    num_mix: int = 10,
    num_bits: int = 8,
) -> Float[Array, "b ... c"]:
    """One exact draw x ~ p(x | z) (discrete likelihoods on their grid)."""
    params = params.astype(jnp.float32)
    if likelihood == "dml":
        return dml_sample(params, key, channels, num_mix, num_bits)
    if likelihood == "bernoulli":
        return jnp.where(jax.random.bernoulli(key, jax.nn.sigmoid(params)), 1.0, -1.0)
    mean, log_s = jnp.split(params, 2, axis=-1)
    if likelihood == "gaussian":
        return mean + jnp.exp(jnp.maximum(log_s, -9.0)) * jax.random.normal(key, mean.shape)
    if likelihood == "logistic":
        x = mean + jnp.exp(jnp.maximum(log_s, LOG_SCALE_MIN)) * jax.random.logistic(key, mean.shape)
        return to_grid(x, num_bits)
    raise ValueError(f"unknown likelihood {likelihood!r}; use {LIKELIHOODS}")
