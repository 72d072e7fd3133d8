"""LSGM's decoders: the discretised mixture of logistics against a direct float64 computation,
its normalisation over every bin, its sampler against its density, and 5-bit quantisation."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdiff.objectives import decoders as D


def _sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def _numpy_dml_prob(params, x, num_mix, num_bits):
    """P(x) per pixel written out: sum_m pi_m prod_c [F(x_c + h) - F(x_c - h)] with the logistic
    CDF F of mean_cm(x_<c), edge bins open to +-inf; float64, no log-space tricks."""
    params, x = np.asarray(params, np.float64), np.asarray(x, np.float64)
    c = x.shape[-1]
    h = 1.0 / (2**num_bits - 1)
    logits = params[..., :num_mix]
    pi = np.exp(logits - logits.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    blocks = params[..., num_mix:].reshape(*params.shape[:-1], c, -1)
    prob = np.zeros(x.shape[:-1])
    for m in range(num_mix):
        p_m = pi[..., m].copy()
        for ch in range(c):
            mean = blocks[..., ch, m].copy()
            if c == 3:  # coefficient k sits in the block of channel k
                coef = np.tanh(blocks[..., :, 2 * num_mix + m])
                if ch == 1:
                    mean += coef[..., 0] * x[..., 0]
                if ch == 2:
                    mean += coef[..., 1] * x[..., 0] + coef[..., 2] * x[..., 1]
            s = np.exp(np.maximum(blocks[..., ch, num_mix + m], -7.0))
            xc = x[..., ch]
            a, b = (xc - h - mean) / s, (xc + h - mean) / s
            # F(b) - F(a), or S(-a) - S(-b) above the mean (no cancellation near 1)
            mass = np.where(a > 0, _sigmoid(-a) - _sigmoid(-b), _sigmoid(b) - _sigmoid(a))
            mass = np.where(xc > 0.999, _sigmoid(-a), np.where(xc < -0.999, _sigmoid(b), mass))
            p_m = p_m * mass
        prob += p_m
    return prob


def _random_params(key, shape, channels, num_mix, scale_range=(-3.0, -1.0)):
    o = D.out_channels("dml", channels, num_mix)
    p = np.asarray(jax.random.normal(key, (*shape, o)), np.float64)
    blocks = p[..., num_mix:].reshape(*shape, channels, -1)
    blocks[..., :num_mix] = 0.6 * np.tanh(blocks[..., :num_mix])  # means in [-0.6, 0.6]
    lo, hi = scale_range
    blocks[..., num_mix : 2 * num_mix] = lo + (hi - lo) * _sigmoid(
        blocks[..., num_mix : 2 * num_mix]
    )
    p[..., num_mix:] = blocks.reshape(*shape, -1)
    return jnp.asarray(p, jnp.float32)


@pytest.mark.parametrize("channels,num_bits", [(3, 8), (3, 5), (1, 8), (1, 5)])
def test_dml_nll_matches_the_direct_float64_computation(channels, num_bits):
    num_mix = 4
    params = _random_params(jax.random.key(0), (2, 5, 5), channels, num_mix, (-2.0, 0.0))
    m = 2**num_bits - 1
    levels = np.array(jax.random.randint(jax.random.key(1), (2, 5, 5, channels), 0, m + 1))
    levels[:, 0, :2], levels[:, 1, :2] = 0, m  # both edge bins
    x = jnp.asarray(2.0 * levels / m - 1.0, jnp.float32)
    nll = D.decoder_nll("dml", params, x, num_mix=num_mix, num_bits=num_bits)
    want = -np.log(_numpy_dml_prob(params, x, num_mix, num_bits)).sum(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(nll, np.float64), want, rtol=2e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_dml_probabilities_sum_to_one_over_every_bin(channels):
    """5-bit data: the probabilities of all 32^C values of a pixel add up to one."""
    num_mix, num_bits = 3, 5
    params = _random_params(jax.random.key(2), (1, 1, 1), channels, num_mix, (-4.0, 0.0))
    grid = 2.0 * np.arange(32) / 31 - 1.0
    xs = np.asarray(list(itertools.product(grid, repeat=channels)), np.float32)
    xs = xs.reshape(-1, 1, 1, channels)
    p = jnp.broadcast_to(params, (xs.shape[0], *params.shape[1:]))
    logp = D.dml_logp(p, jnp.asarray(xs), num_mix, num_bits)
    assert float(jnp.exp(logp).sum()) == pytest.approx(1.0, abs=2e-5)


def test_single_logistic_is_the_one_component_mixture_on_grey_images():
    """The ``logistic`` decoder on one channel is ``dml`` with one component (any bit depth)."""
    x = 2.0 * jax.random.randint(jax.random.key(3), (4, 6, 6, 1), 0, 32) / 31 - 1.0
    ml = jax.random.normal(jax.random.key(4), (4, 6, 6, 2))
    dml_params = jnp.concatenate([jnp.zeros((4, 6, 6, 1)), ml], axis=-1)
    a = D.decoder_nll("logistic", ml, x, num_bits=5)
    b = D.decoder_nll("dml", dml_params, x, num_mix=1, num_bits=5)
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_dml_sampler_draws_from_its_density(channels):
    """Chi-square of 100k draws of one pixel (3 bits, 8^C values) against exp(log p)."""
    num_mix, num_bits, n = 3, 3, 100_000
    params = _random_params(jax.random.key(5), (1, 1, 1), channels, num_mix, (-2.0, -0.5))
    draws = D.dml_sample(
        jnp.broadcast_to(params, (n, 1, 1, params.shape[-1])), jax.random.key(6), channels,
        num_mix, num_bits,
    )  # fmt: skip
    levels = np.rint((np.asarray(draws).reshape(n, channels) + 1.0) * 3.5).astype(int)
    assert np.allclose(levels / 3.5 - 1.0, np.asarray(draws).reshape(n, channels), atol=1e-6)
    index = np.ravel_multi_index(tuple(levels.T), (8,) * channels)
    counts = np.bincount(index, minlength=8**channels)
    grid = 2.0 * np.arange(8) / 7 - 1.0
    xs = np.asarray(list(itertools.product(grid, repeat=channels)), np.float32)
    p = jnp.broadcast_to(params, (xs.shape[0], *params.shape[1:]))
    prob = np.exp(np.asarray(D.dml_logp(p, jnp.asarray(xs.reshape(-1, 1, 1, channels)), num_mix,
                                        num_bits), np.float64)).reshape(-1)  # fmt: skip
    expected = n * prob / prob.sum()
    keep = expected >= 5  # pool the rare bins
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    chi2 = float(((obs - exp) ** 2 / np.maximum(exp, 1e-12)).sum())
    assert stats.chi2.sf(chi2, len(obs) - 1) > 1e-3, chi2


def test_dml_mean_is_the_weighted_mean_with_clamped_coupling():
    """One pixel, two components: NVAE's decoded value written out."""
    num_mix = 2
    params = np.zeros((1, 1, 1, 20), np.float32)
    params[..., :2] = [0.0, np.log(3.0)]  # weights 1/4, 3/4
    blocks = params[..., 2:].reshape(1, 1, 1, 3, 6)
    blocks[..., :2] = [[0.8, 0.4], [0.3, -0.2], [0.5, 0.9]]  # means per channel
    blocks[..., 4:] = np.arctanh([[0.5, 0.1], [0.5, 0.5], [-0.5, 0.5]])  # coefficients
    params[..., 2:] = blocks.reshape(1, 1, 1, 18)
    out = np.asarray(D.decoder_mean("dml", jnp.asarray(params), 3, num_mix)).reshape(3)
    w = np.array([0.25, 0.75])
    x0 = np.clip(w @ [0.8, 0.4], -1, 1)
    x1 = np.clip(w @ [0.3, -0.2] + (w @ [0.5, 0.1]) * x0, -1, 1)
    x2 = np.clip(w @ [0.5, 0.9] + (w @ [0.5, 0.5]) * x0 + (w @ [-0.5, 0.5]) * x1, -1, 1)
    assert 0 < x0 < 1 and 0 < x1 < 1 and x2 == 1.0  # one clamp active
    np.testing.assert_allclose(out, [x0, x1, x2], rtol=1e-6)


def test_quantise_to_five_bits_is_lsgms_preprocessing():
    """floor(k / 8) / 31 of the 8-bit level k, in [-1, 1]; idempotent on 5-bit data."""
    k = np.arange(256)
    x = jnp.asarray(2.0 * k / 255 - 1.0, jnp.float32)
    q = np.asarray(D.quantise(x, 5))
    np.testing.assert_allclose(q, 2.0 * np.floor(k * 255 / 8 / 255) / 31 - 1.0, atol=1e-6)
    assert len(np.unique(q)) == 32
    np.testing.assert_allclose(D.quantise(x, 8), x)
    np.testing.assert_allclose(D.quantise(D.to_grid(jnp.asarray(q), 5), 5), q, atol=1e-6)


def test_dml_rejects_wrong_channel_counts():
    with pytest.raises(ValueError, match="RGB or grey"):
        D.out_channels("dml", 2)
    with pytest.raises(ValueError, match="needs 100 decoder outputs"):
        D.decoder_nll("dml", jnp.zeros((1, 2, 2, 30)), jnp.zeros((1, 2, 2, 3)))
