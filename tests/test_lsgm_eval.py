"""LSGM's evaluation: the importance-weighted NLL bound against the single-sample one on the same
draws, and the likelihood ODE's end time taken from the settings."""

from __future__ import annotations

import jax
import numpy as np
import pytest


def _tiny_method(**lsgm):
    from configs.toy.lsgm import get_config
    from jaxdiff.build import build_method

    c = get_config()
    c.lsgm.vae.hidden, c.lsgm.vae.depth = 16, 1
    c.lsgm.score.hidden, c.lsgm.score.depth, c.lsgm.score.embed_dim = 16, 1, 8
    c.lsgm.stage1_steps, c.lsgm.stage2_steps = 1, 1
    for k, v in lsgm.items():
        c.lsgm[k] = v
    method = build_method(c)
    state = method.init(jax.random.key(0), {})
    return method, state


@pytest.mark.slow  # ~40 s of CPU: 19 likelihood solves
def test_iw_bound_is_below_the_mean_single_sample_bound_and_tightens_with_k():
    """The toy VAE has one latent group (the SGM's), so each draw's single-sample bound is exactly
    -log w_k, and -log mean_k w_k <= mean_k -log w_k (Jensen), per example; the expectation of
    the IW bound decreases with K (Burda et al. 2016, Theorem 1)."""
    method, state = _tiny_method()
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32) * 2.0
    opts = dict(rtol=1e-4, atol=1e-4)
    one = method.nll(state, jax.random.key(1), x, num_iw_samples=1, **opts)
    assert "nll_iw" not in one
    res = {k: method.nll(state, jax.random.key(1), x, num_iw_samples=k, **opts) for k in (2, 16)}
    for k, r in res.items():
        assert r["num_iw_samples"] == k
        assert r["nll_iw"] < r["nll"], (k, r)
    assert res[16]["nll_iw"] < res[2]["nll_iw"]
    # the mean single-sample bound does not depend on K beyond Monte Carlo error
    assert abs(res[16]["nll"] - one["nll"]) < 0.1 * abs(one["nll"]) + 0.5


def test_nll_t_min_comes_from_the_settings():
    method, state = _tiny_method(nll_t_min=1e-6)
    assert method.c.nll_t_min == 1e-6
    x = np.zeros((4, 2), np.float32)
    a = method.nll(state, jax.random.key(2), x, rtol=1e-4, atol=1e-4)
    b = method.nll(state, jax.random.key(2), x, t_min=1e-6, rtol=1e-4, atol=1e-4)
    assert a["nll"] == pytest.approx(b["nll"], rel=1e-6)
    with pytest.raises(ValueError, match="num_iw_samples"):
        method.nll(state, jax.random.key(2), x, num_iw_samples=0)
