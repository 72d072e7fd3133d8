"""LSGM's stage-1 training options: NVAE's KL balancing against its formula on fixed inputs,
Adamax against optax's, and the stage switch of the VAE's optimiser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.objectives import lsgm as L
from jaxdiff.train.state import adam_l2, adamax_l2, switch_at


def _balance_reference(kl_all, num_scales, groups, kl_coeff):
    """NVAE's kl_balancer written out in numpy for fixed per-group KLs (b, S * G), top first."""
    alpha = np.concatenate([np.full(groups, 4.0**s / groups) for s in range(num_scales)])
    alpha = alpha / alpha.min()
    if kl_coeff >= 1.0:
        return np.ones(kl_all.shape[1])
    c = np.abs(kl_all).mean(axis=0) + 0.01
    gamma = c / alpha * c.sum()
    return gamma / gamma.mean()


def test_kl_balance_alpha_is_nvaes_square_rule():
    a = np.asarray(L.kl_balance_alpha(3, 2))
    np.testing.assert_allclose(a, [1, 1, 4, 4, 16, 16])
    np.testing.assert_allclose(L.kl_balance_alpha(1, 5), np.ones(5))


@pytest.mark.parametrize("kl_coeff", [0.3, 1.0])
def test_kl_balance_coefficients_match_the_formula_on_fixed_inputs(kl_coeff):
    kl_all = np.array(
        [[3.0, 0.5, 12.0, -0.2, 40.0, 1.0], [5.0, 0.1, 8.0, 0.4, 20.0, 3.0]], np.float32
    )
    got = L.kl_balance_coeffs(jnp.asarray(kl_all), L.kl_balance_alpha(3, 2), kl_coeff)
    want = _balance_reference(kl_all.astype(np.float64), 3, 2, kl_coeff)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    if kl_coeff < 1:  # a group with more KL per unit alpha is penalised more; mean 1
        assert float(got.mean()) == pytest.approx(1.0, rel=1e-6)
        assert got[0] > got[1] and got[2] > got[3]


def test_kl_balance_passes_no_gradient_through_its_coefficients():
    kl_all = jnp.asarray([[1.0, 2.0], [3.0, 0.5]])
    alpha = L.kl_balance_alpha(1, 2)

    def loss(k):
        return jnp.sum(k * L.kl_balance_coeffs(k, alpha, 0.5))

    g = jax.grad(loss)(kl_all)
    gamma = L.kl_balance_coeffs(kl_all, alpha, 0.5)
    np.testing.assert_allclose(g, jnp.broadcast_to(gamma, kl_all.shape), rtol=1e-6)


def _run(tx, grads, params):
    state = tx.init(params)
    out = []
    for g in grads:
        upd, state = tx.update(g, state, params)
        params = optax.apply_updates(params, upd)
        out.append(params)
    return out


def test_adamax_l2_is_optax_adamax_on_the_l2_gradient():
    key = jax.random.key(0)
    params = {"w": jax.random.normal(key, (4, 3)), "b": jnp.arange(3.0)}
    grads = [jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)) + 0.1 * i, params) for i in range(6)]
    lr, eps, wd = 1e-2, 1e-3, 3e-4
    got = _run(adamax_l2(optax.constant_schedule(lr), eps, wd), grads, params)
    ref = optax.chain(optax.add_decayed_weights(wd), optax.adamax(lr, eps=eps))
    want = _run(ref, grads, params)
    for a, b in zip(got, want, strict=True):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)
    # PyTorch's rule by hand for the first step: m = 0.1 g', u = |g'| + eps, p -= lr m / 0.1 / u
    g0 = grads[0]["b"] + wd * params["b"]
    step1 = params["b"] - lr * g0 / (jnp.abs(g0) + eps)
    np.testing.assert_allclose(got[0]["b"], step1, rtol=1e-6)


def test_switch_at_runs_the_first_then_the_second_from_a_fresh_state():
    params = {"w": jnp.asarray([1.0, -2.0])}
    grads = [{"w": jnp.asarray([0.5 * i + 0.1, -0.3 * i])} for i in range(5)]
    sched = optax.constant_schedule(1e-2)
    first, second = adamax_l2(sched, 1e-3), adam_l2(sched, 1e-3)
    got = _run(switch_at(2, first, second), grads, params)
    a = _run(first, grads[:2], params)
    b = _run(second, grads[2:], a[-1])
    for x, y in zip(got, a + b, strict=True):
        np.testing.assert_allclose(x["w"], y["w"], rtol=1e-6)
