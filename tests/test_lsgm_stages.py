"""LSGM's stage options: stage 2 from a separately trained VAE's checkpoint (and the errors when it
is missing or does not match), and per-stage batch sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _config(**lsgm):
    from configs.toy.lsgm import get_config

    c = get_config()
    c.lsgm.vae.hidden, c.lsgm.vae.depth = 16, 1
    c.lsgm.score.hidden, c.lsgm.score.depth, c.lsgm.score.embed_dim = 16, 1, 8
    c.lsgm.stage1_steps, c.lsgm.stage2_steps = 2, 2
    c.training.batch_size = 16
    c.training.num_steps = 2
    c.training.n_jitted_steps = 2
    c.training.ckpt_every = 2
    c.training.log_every = 2
    for k, v in lsgm.items():
        c.lsgm[k] = v
    return c


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


@pytest.mark.slow  # ~25 s of CPU: a 2-step stage-1 run
def test_stage2_starts_from_a_separately_trained_vae(tmp_path):
    from jaxdiff.api import train
    from jaxdiff.build import build_method

    stage1, info = train(_config(), str(tmp_path / "vae"), progress=False)
    assert info["step"] == 2
    c = _config(stage1_steps=0, vae_checkpoint=str(tmp_path / "vae"))
    state = build_method(c).init(jax.random.key(3), {})
    got, want = _leaves(state.params["vae"]), _leaves(stage1.params["vae"])
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    fresh = build_method(_config(stage1_steps=0)).init(jax.random.key(3), {})
    new = _leaves(fresh.params["vae"])
    assert not all(np.array_equal(a, b) for a, b in zip(new, want, strict=True))

    other = _config(stage1_steps=0, vae_checkpoint=str(tmp_path / "vae"))
    other.lsgm.vae.hidden = 24
    with pytest.raises(ValueError, match="do not match"):
        build_method(other).init(jax.random.key(3), {})
    missing = _config(stage1_steps=0, vae_checkpoint=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no checkpoint"):
        build_method(missing).init(jax.random.key(3), {})


@pytest.mark.slow  # ~25 s of CPU: three toy methods, two compiled steps
def test_each_stage_trains_on_its_batch_size():
    """Stage 1 with batch_size_stage1 4 gives the gradients of the first 4 examples (same keys);
    stage 2 with 0 uses all 16; a size beyond the batch is an error."""
    from jaxdiff.build import build_method

    x = jax.random.normal(jax.random.key(1), (16, 2))
    keys = jax.random.split(jax.random.key(2), 16)
    sized = build_method(_config(batch_size_stage1=4))
    state = sized.init(jax.random.key(0), {})
    plain = build_method(_config())
    g4 = jax.jit(lambda s, x, k: sized.grads(0, s, {"x": x}, k).grads)(state, x, keys)
    ref = jax.jit(lambda s, x, k: plain.grads(0, s, {"x": x}, k).grads)(state, x[:4], keys[:4])
    for a, b in zip(_leaves(g4), _leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    full = jax.jit(lambda s, x, k: plain.grads(0, s, {"x": x}, k).grads)(state, x, keys)
    assert any(not np.allclose(a, b) for a, b in zip(_leaves(g4), _leaves(full), strict=True))
    too_big = build_method(_config(batch_size_stage2=32))
    with pytest.raises(ValueError, match="batch_size_stage"):
        too_big.grads(0, state, {"x": x}, keys)


@pytest.mark.slow  # ~20 s of CPU
def test_drop_inactive_var_measures_lsgms_kl_once_and_masks_the_score_input():
    """The first stage-2 step stores LSGM's active-channel mask (per-channel Monte-Carlo KL of
    the top latent > 0.1, VAE in evaluation mode) and later steps keep it; with a channel
    inactive the network never sees it: d eps_0 / d z_1 = 0, and eps_1 is the Normal part."""
    from jaxdiff.build import build_method
    from jaxdiff.methods.lsgm_vae_io import active_channels

    m = build_method(_config(drop_inactive_var=True, stage1_steps=1))
    state = m.init(jax.random.key(0), {})
    x = 3.0 * jax.random.normal(jax.random.key(1), (16, 2))
    keys = jax.random.split(jax.random.key(2), 16)
    grads = jax.jit(lambda s, x, k: m.grads(0, s, {"x": x}, k).aux["is_active"])
    # the reference: LSGM's KL per channel written out from the encoder's outputs
    enc = m.vae(state.params["vae"], None, train=False).encode(x, jax.random.key(5))
    z, mu, ls = (np.asarray(enc[k][0], np.float64) for k in ("z", "mu", "log_sigma"))
    kl = (-0.5 * ((z - mu) / np.exp(ls)) ** 2 - ls + 0.5 * z**2).mean(axis=0)
    got = np.asarray(active_channels(m, state.params["vae"], None, x, jax.random.key(5)))
    np.testing.assert_array_equal(got, (kl > 0.1).astype(np.float32))
    first = np.asarray(grads(state.replace(step=jnp.asarray(1)), x, keys))
    assert set(np.unique(first)) <= {0.0, 1.0}
    fake = jnp.asarray([1.0, 0.0])
    later = state.replace(step=jnp.asarray(2), opt_state={**state.opt_state, "is_active": fake})
    np.testing.assert_array_equal(np.asarray(grads(later, x, keys)), [1.0, 0.0])
    prior = state.params["prior"]  # a network that mixes channels (its output layer is 0 at init)
    noise = lambda a: a + 0.3 * jax.random.normal(jax.random.key(9), a.shape)  # noqa: E731
    prior = {**prior, "net": jax.tree.map(noise, prior["net"])}
    t = jnp.full((1,), 0.5)
    eps = m.eps_fn(prior, active=fake)
    jac = jax.jacfwd(lambda z: eps(z[None], t)[0])(jnp.asarray([0.3, -0.7]))
    assert float(jac[0, 1]) == 0.0
    full = jax.jacfwd(lambda z: m.eps_fn(prior)(z[None], t)[0])(jnp.asarray([0.3, -0.7]))
    assert abs(float(full[0, 1])) > 0.0
    sigma = float(jnp.sqrt(m.process.kernel_var(t))[0])
    np.testing.assert_allclose(float(eps(jnp.asarray([[0.3, -0.7]]), t)[0, 1]), -0.7 * sigma,
                               rtol=1e-5)  # fmt: skip
