"""``layers.fusion_barrier``: the identity, with the residual stream's cotangent written once per
block on the CPU instead of recomputed inside every later fusion (issue #13).

Values and first / second / forward-mode derivatives must equal those without the barrier; on the
CPU the compiled loss (gradient) of a stack of BigGAN blocks has one (two) conditional(s) per
block, and its largest elementwise fusion no longer grows with the number of blocks.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff.nets import layers


def _stack(n: int, c: int = 8):
    blocks = [
        layers.ResBlockBigGAN(c, c, temb_dim=4, dropout=0.0, init_scale=1.0, rngs=nnx.Rngs(i))
        for i in range(n)
    ]
    graphdef, params = nnx.split(blocks)

    def loss(params, x, temb):
        h = x
        for block in nnx.merge(graphdef, params):
            h = block(h, temb)
        return jnp.sum(jnp.sin(h) ** 2)

    return loss, params


def _inputs(c: int = 8):
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, c))
    temb = jax.random.normal(jax.random.key(1), (2, 4))
    return x, temb


def _with(monkeypatch, mode, fn, *args):
    monkeypatch.setenv("JAXDIFF_FUSION_BARRIER", mode)
    return fn(*args)


def test_values_and_derivatives_equal_without_barrier(monkeypatch):
    loss, params = _stack(3)
    x, temb = _inputs()

    def value_and_grads():  # traced afresh under each setting
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x, temb)

    v_on, g_on = _with(monkeypatch, "on", value_and_grads)
    v_off, g_off = _with(monkeypatch, "off", value_and_grads)
    np.testing.assert_allclose(v_on, v_off, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_on), jax.tree.leaves(g_off), strict=True):
        # float rounding (fusion changes the summation order), relative to the array's scale
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6 * max(1.0, float(np.abs(b).max())))
    assert all(float(jnp.abs(a).max()) > 0 for a in jax.tree.leaves(g_on))


def test_forward_mode_and_second_order(monkeypatch):
    """jvp in x (the likelihood's divergence) and an R1-style double backward."""
    loss, params = _stack(2)
    x, temb = _inputs()
    v = jax.random.normal(jax.random.key(2), x.shape)

    def jvp_and_r1():
        f = lambda x: loss(params, x, temb)  # noqa: E731
        tangent = jax.jvp(f, (x,), (v,))[1]
        r1 = lambda p: jnp.sum(jax.grad(loss, argnums=1)(p, x, temb) ** 2)  # noqa: E731
        return tangent, jax.grad(r1)(params)

    t_on, r_on = _with(monkeypatch, "on", jvp_and_r1)
    t_off, r_off = _with(monkeypatch, "off", jvp_and_r1)
    np.testing.assert_allclose(t_on, t_off, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(r_on), jax.tree.leaves(r_off), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _compiled(monkeypatch, mode: str, n: int, gradient: bool) -> tuple[int, int]:
    """(conditionals, operands of the largest loop fusion) of the compiled loss or gradient."""
    monkeypatch.setenv("JAXDIFF_FUSION_BARRIER", mode)
    loss, params = _stack(n)
    fn = jax.grad(loss, argnums=(0, 1)) if gradient else loss
    text = jax.jit(fn).lower(params, *_inputs()).compile().as_text()
    operands = [
        len(m.group(1).split(",")) for m in re.finditer(r"= \S+ fusion\((.*?)\), kind=kLoop", text)
    ]
    return text.count(" conditional("), max(operands)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="inspects XLA:CPU's loop fusions")
@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "gradient"])
def test_chain_is_cut_on_cpu(monkeypatch, gradient):
    """Without the barrier XLA:CPU fuses the residual stream's chain (forward: the skip sums;
    backward: their cotangents through GroupNorm's backward) into later fusions, whose size
    grows with the depth; with it, a conditional per block and pass, and a largest fusion
    independent of the depth."""
    per_block = 2 if gradient else 1
    (c4, on4), (c8, on8) = (_compiled(monkeypatch, "on", n, gradient) for n in (4, 8))
    (z4, off4), (z8, off8) = (_compiled(monkeypatch, "off", n, gradient) for n in (4, 8))
    # the gradient's convolutions have conditionals of their own (``layers.conv2d``'s kernel
    # gradient): count the barrier's as the difference
    assert (c4 - z4, c8 - z8) == (4 * per_block, 8 * per_block)
    assert z8 == 2 * z4 and (z4 > 0) == gradient
    assert on8 == on4
    assert off8 > off4 > on4


def test_auto_is_cpu_only_and_bad_value(monkeypatch):
    monkeypatch.setenv("JAXDIFF_FUSION_BARRIER", "auto")
    assert layers._fusion_barrier_on() == (jax.default_backend() == "cpu")
    monkeypatch.setenv("JAXDIFF_FUSION_BARRIER", "yes")
    with pytest.raises(ValueError, match="JAXDIFF_FUSION_BARRIER must be auto, on or off"):
        layers.fusion_barrier(jnp.ones(3), jnp.ones(()))
