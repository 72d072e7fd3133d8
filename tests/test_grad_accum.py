"""The trainer's optimiser step: K micro-batches equal one step on their union, for every method.

Each example draws its randomness from its own key (``jaxdiff.rng``), so accumulating the
gradients of 4 micro-batches of 8 gives, after several optimiser steps, the parameters of the
same steps on batches of 32 up to float summation order. Networks here have no batch statistics
(with BatchNorm the micro-batch statistics differ, as documented in docs/design.md).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from jaxdiff.build import build_data, build_method
from jaxdiff.train.step import StepSettings, _accumulate, optimizer_step


def _tiny(name: str):
    if name == "score":
        from configs.toy.vp import get_config

        c = get_config()
        c.model.hidden, c.model.depth = 32, 1
    elif name == "ddgan":
        from configs.toy.ddgan import get_config

        c = get_config()
        c.model.hidden = c.ddgan.disc.hidden = 16
        c.model.depth = c.ddgan.disc.depth = 1
        c.ddgan.lazy_reg = 2  # R1 on steps 0 and 2
    else:
        from configs.toy.lsgm import get_config

        c = get_config()
        c.lsgm.vae.hidden, c.lsgm.vae.depth = 16, 1
        c.lsgm.score.hidden, c.lsgm.score.depth = 16, 1
        c.lsgm.stage1_steps, c.lsgm.stage2_steps = 2, 2  # both stages
    c.training.batch_size = 32
    return c


def _run(method, data, settings: StepSettings, steps: int):
    state = method.init(jax.random.key(0), data.batch(0, 32))
    step = jax.jit(functools.partial(optimizer_step, method, settings=settings))
    for i in range(steps):
        state, metrics = step(state, data.batch(i, 32), jax.random.key(100 + i))
    return state, metrics


@pytest.mark.parametrize(
    "name,loop", [("score", "unroll"), ("score", "scan"), ("ddgan", "unroll"), ("lsgm", "unroll")]
)
def test_four_micro_batches_equal_one_batch_of_their_union(name, loop):
    c = _tiny(name)
    method, data = build_method(c), build_data(c)
    one, m1 = _run(method, data, StepSettings(grad_accum=1), 4)
    four, m4 = _run(method, data, StepSettings(grad_accum=4, loop=loop), 4)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    for a, b in zip(jax.tree.leaves(one.ema), jax.tree.leaves(four.ema), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-4, atol=1e-6)
    # the gradients themselves (Adam would hide a wrong scale): mean over micro-batches
    state = method.init(jax.random.key(0), data.batch(0, 32))
    keys = jax.random.split(jax.random.key(7), 32)
    batch = data.batch(3, 32)
    g1 = _accumulate(method, 0, state, batch, keys, StepSettings(grad_accum=1)).grads
    g4 = _accumulate(method, 0, state, batch, keys, StepSettings(grad_accum=4, loop=loop)).grads
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert max(float(np.abs(a).max()) for a in jax.tree.leaves(g1)) > 1e-4


def test_ema_warmup_and_once_per_optimiser_step():
    """EMA decay min(d, (1 + n) / (10 + n)) with n optimiser steps taken, one update per step
    whatever the number of micro-batches (score_sde / CLD-SGM)."""
    from jaxdiff.train.state import ema_update

    c = _tiny("score")
    c.training.ema_decay = 0.999
    method, data = build_method(c), build_data(c)
    settings = StepSettings(grad_accum=2, ema_warmup=True)
    state = method.init(jax.random.key(0), data.batch(0, 32))
    step = jax.jit(functools.partial(optimizer_step, method, settings=settings))
    ema = state.ema["score"]
    for i in range(3):
        state, _ = step(state, data.batch(i, 32), jax.random.key(i))
        ema = ema_update(ema, state.params["score"], min(0.999, (1 + i) / (10 + i)))
    for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(state.ema["score"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(state.step) == 3
