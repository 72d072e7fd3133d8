"""Optimiser, accumulation, EMA and schedules of the shared train state."""

import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff.train.state import ema_update, learning_rate_schedule, make_optimizer


def test_ema_is_the_exponential_average():
    ema = {"w": jnp.zeros(2)}
    for k in range(3):
        ema = ema_update(ema, {"w": jnp.full(2, float(k + 1))}, 0.5)
    # 0.5^3 * 0 + 0.5^2 * 0.5 * 1 + 0.5 * 0.5 * 2 + 0.5 * 3
    np.testing.assert_allclose(ema["w"], 0.125 + 0.5 + 1.5)


def test_warmup_then_cosine_schedule():
    sched = learning_rate_schedule(1.0, warmup=10, schedule="cosine", total_steps=110, min_lr=0.1)
    assert abs(float(sched(0)) - 0.1) < 1e-6 and abs(float(sched(10)) - 1.0) < 1e-6
    assert abs(float(sched(60)) - (0.1 + 0.9 * 0.5)) < 1e-3  # half-way down the cosine
    assert abs(float(sched(110)) - 0.1) < 1e-6


def test_clipping_bounds_the_update_norm():
    tx = make_optimizer(1.0, grad_clip=1.0, b1=0.0, b2=0.0, eps=1e-12)
    params = {"w": jnp.zeros(4)}
    state = tx.init(params)
    updates, _ = tx.update({"w": jnp.array([30.0, 40.0, 0.0, 0.0])}, state, params)
    # Adam with b1 = b2 = 0 normalises each coordinate: |update| = lr for nonzero gradients.
    np.testing.assert_allclose(np.abs(updates["w"]), [1.0, 1.0, 0.0, 0.0], atol=1e-5)
    clip = optax.clip_by_global_norm(1.0)
    clipped, _ = clip.update({"w": jnp.array([30.0, 40.0])}, clip.init(None))
    np.testing.assert_allclose(jnp.linalg.norm(clipped["w"]), 1.0, rtol=1e-6)
