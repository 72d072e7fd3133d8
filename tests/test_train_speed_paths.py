"""How the trainer runs the ``n_jitted_steps`` steps of one call, and that the ways agree.

On the CPU a convolutional step is dispatched step by step (its compiled one-step program called
``n`` times from Python: XLA's CPU backend runs convolutions inside a loop body ~20x slower, and
an unrolled multi-step conv program compiles for tens of minutes, issue #13); other steps are
unrolled (up to 8) or scanned. Whichever way, the same steps must give the same parameters,
EMA and metrics: bit for bit between one-step calls and dispatched groups (the same program),
to float rounding against the fused programs (XLA may fuse a multi-step program differently).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.build import build_data, build_method
from jaxdiff.nets import layers
from jaxdiff.train import loop, parallel
from jaxdiff.train.protocol import Method, PhaseGrads
from jaxdiff.train.state import create_state
from jaxdiff.train.step import StepSettings


def _conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


class ConvDenoiser(Method):
    """A two-layer conv net trained to predict the negated noise of noisy 8x8 images."""

    groups = ("net",)

    def __init__(self):
        self.optimizers = {"net": optax.adam(1e-2)}
        self.ema_decay = {"net": 0.9}

    def init(self, key, batch):
        k1, k2 = jax.random.split(key)
        params = {
            "w1": 0.3 * jax.random.normal(k1, (3, 3, 1, 4)),
            "w2": 0.3 * jax.random.normal(k2, (3, 3, 4, 1)),
        }
        return create_state({"net": params}, self.optimizers, ema_groups=("net",))

    def net(self, params, x):
        return _conv(jnp.tanh(_conv(x, params["w1"])), params["w2"])

    def grads(self, phase, state, batch, keys):
        x = batch["x"]
        noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(keys)

        def loss(p):
            return jnp.mean(jnp.square(self.net(p, x + noise) + noise))

        value, g = jax.value_and_grad(loss)(state.params["net"])
        return PhaseGrads({"net": g}, {"loss": value})

    def sampling_params(self, state):
        return state.ema["net"]

    def sample_fn(self, params, key, num):
        y = jax.random.normal(key, (num, 8, 8, 1))
        return y + self.net(params, y), jnp.asarray(1, jnp.int32)


class WinogradDenoiser(ConvDenoiser):
    """The same net through ``layers.conv2d`` on 16x16 images: on the CPU both layers are
    Winograd matmuls, and the step's program has no convolution op at all."""

    def net(self, params, x):
        conv = functools.partial(layers.conv2d, padding="SAME")
        return conv(jnp.tanh(conv(x, params["w1"])), params["w2"])


def _conv_case(method=None, hw=8):
    method = method or ConvDenoiser()
    rs = np.random.default_rng(0)
    images = rs.uniform(-1, 1, (12, 16, hw, hw, 1)).astype(np.float32)
    return method, lambda step: {"x": images[step]}


def _mlp_case():
    from configs.toy.vp import get_config

    c = get_config()
    c.model.hidden, c.model.depth = 32, 1
    c.training.batch_size = 16
    data = build_data(c)
    return build_method(c), lambda step: data.batch(step, 16)


def _train(method, batch_of, n: int, calls: int, loop_mode: str):
    """Runs ``calls`` trainer calls of ``n`` steps; (final state, stacked losses, choice)."""
    mesh = parallel.make_mesh()
    sharding = parallel.batch_sharding(mesh)
    state = method.init(jax.random.key(0), batch_of(0))
    state = parallel.replicate(jax.device_get(state), mesh)
    fn = loop.make_train_fn(method, mesh, n, StepSettings(loop=loop_mode))
    losses = []
    for c in range(calls):
        batches = tuple(
            parallel.global_batch({"x": np.asarray(batch_of(c * n + i)["x"])}, sharding)
            for i in range(n)
        )
        state, metrics = fn(state, batches, jax.random.key(1))
        assert metrics["loss"].shape == (n,)
        losses.append(np.asarray(metrics["loss"]))
    return jax.device_get(state), np.concatenate(losses), fn.steps_loop


def _leaves(state):
    return jax.tree.leaves((state.params, state.opt_state, state.ema))


def _choice(method, batch_of, n: int) -> str:
    mesh = parallel.make_mesh()
    fn = loop.make_train_fn(method, mesh, n)
    state = parallel.replicate(jax.device_get(method.init(jax.random.key(0), batch_of(0))), mesh)
    batch = parallel.global_batch(batch_of(0), parallel.batch_sharding(mesh))
    return fn.choose(state, batch, jax.random.key(1))


@pytest.mark.skipif(
    jax.default_backend() != "cpu",
    reason="checks the CPU's loop choice; accelerators always scan (StepSettings.steps_loop)",
)
def test_cpu_dispatches_convolutional_steps_and_fuses_the_others():
    conv, conv_batch = _conv_case()
    mlp, mlp_batch = _mlp_case()
    assert _choice(conv, conv_batch, 3) == "dispatch"
    wino, wino_batch = _conv_case(WinogradDenoiser(), hw=16)
    state = wino.init(jax.random.key(0), wino_batch(0))
    keys = jax.random.split(jax.random.key(1), 16)
    lowered = jax.jit(wino.grads, static_argnums=0).lower("net", state, wino_batch(0), keys)
    assert "convolution" not in lowered.as_text()  # only matmuls: found by its name
    assert _choice(wino, wino_batch, 3) == "dispatch"
    assert _choice(mlp, mlp_batch, 3) == "unroll"
    assert _choice(mlp, mlp_batch, 10) == "scan"
    assert _choice(mlp, mlp_batch, 1) == "dispatch"  # one step: its own program
    settings = StepSettings()
    assert settings.steps_loop(5, convolutional=True) == "dispatch"
    assert settings.steps_loop(9, convolutional=True) == "dispatch"
    assert StepSettings(loop="scan").steps_loop(5, convolutional=True) == "scan"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["conv", "mlp"])
def test_dispatched_and_fused_steps_give_the_same_parameters(case):
    method, batch_of = _conv_case() if case == "conv" else _mlp_case()
    single, loss1, _ = _train(method, batch_of, 1, 6, "auto")
    dispatched, loss_d, _ = _train(method, batch_of, 3, 2, "dispatch")
    # the same compiled one-step program: bit for bit
    for a, b in zip(_leaves(single), _leaves(dispatched), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loss1, loss_d)
    assert int(dispatched.step) == 6
    for mode in ("unroll", "scan"):
        fused, loss_f, chosen = _train(method, batch_of, 3, 2, mode)
        assert chosen == mode
        for a, b in zip(_leaves(single), _leaves(fused), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(loss1, loss_f, rtol=1e-5)
    # the six steps moved the parameters (the comparisons above are not between idle states)
    init = method.init(jax.random.key(0), batch_of(0))
    moved = max(
        float(np.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(init.params), strict=True)
    )
    assert moved > 1e-4  # the toy MLP is in its learning-rate warm-up


def test_a_wrong_number_of_batches_is_refused():
    method, batch_of = _conv_case()
    mesh = parallel.make_mesh()
    fn = loop.make_train_fn(method, mesh, 3)
    state = parallel.replicate(jax.device_get(method.init(jax.random.key(0), batch_of(0))), mesh)
    with pytest.raises(ValueError, match="expected 3 batches per call, got 2"):
        fn(state, (batch_of(0), batch_of(1)), jax.random.key(1))
    with pytest.raises(ValueError, match="training.loop must be one of"):
        StepSettings(loop="fused")
