"""NVAE's BatchNorm running averages in LSGM: PyTorch's update rule (momentum 0.05 as in LSGM's
``layers/neural_operations.py``) against numpy, evaluation mode against the stored averages, the
trainer carrying them in ``opt_state['batch_stats']``, and NVAE's ``readjust_bn``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff.nets.nvae_cells import BatchNorm, merge_batch_stats, set_bn_mode, split_batch_stats

MOMENTUM, EPS = 0.05, 1e-5  # LSGM: get_batchnorm(..., momentum=0.05), BN_EPS 1e-5


def _bn(c, key):
    bn = BatchNorm(c, running_stats=True)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    bn.scale[...] = jax.random.uniform(k1, (c,), minval=0.5, maxval=2.0)
    bn.bias[...] = jax.random.normal(k2, (c,))
    bn.running_mean[...] = jax.random.normal(k3, (c,))
    bn.running_var[...] = jax.random.uniform(k4, (c,), minval=0.5, maxval=2.0)
    return bn


def test_running_averages_follow_pytorchs_update_rule():
    """Two training-mode passes: output normalised by the batch's biased variance, averages
    updated with the batch mean and the unbiased variance (torch.nn.BatchNorm2d)."""
    c = 5
    bn = _bn(c, jax.random.key(0))
    rm, rv = (
        np.asarray(bn.running_mean[...], np.float64),
        np.asarray(bn.running_var[...], np.float64),
    )
    scale, bias = np.asarray(bn.scale[...], np.float64), np.asarray(bn.bias[...], np.float64)
    for i in range(2):
        x = 3.0 + 2.0 * jax.random.normal(jax.random.key(10 + i), (4, 3, 5, c))
        y = np.asarray(bn(x), np.float64)
        xn = np.asarray(x, np.float64)
        mean, var = xn.mean(axis=(0, 1, 2)), xn.var(axis=(0, 1, 2))
        np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + EPS) * scale + bias, atol=2e-5)
        rm = (1 - MOMENTUM) * rm + MOMENTUM * mean
        rv = (1 - MOMENTUM) * rv + MOMENTUM * xn.var(axis=(0, 1, 2), ddof=1)
        np.testing.assert_allclose(np.asarray(bn.running_mean[...]), rm, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(bn.running_var[...]), rv, rtol=1e-5, atol=1e-6)


def test_eval_mode_normalises_with_the_running_averages_and_leaves_them():
    c = 3
    bn = set_bn_mode(_bn(c, jax.random.key(1)), train=False)
    rm, rv = np.asarray(bn.running_mean[...]), np.asarray(bn.running_var[...])
    x = 1.0 + jax.random.normal(jax.random.key(2), (2, 4, 4, c))
    y = np.asarray(bn(x), np.float64)
    ref = (np.asarray(x, np.float64) - rm) / np.sqrt(rv + EPS) * np.asarray(bn.scale[...])
    np.testing.assert_allclose(y, ref + np.asarray(bn.bias[...]), atol=2e-5)
    np.testing.assert_array_equal(np.asarray(bn.running_mean[...]), rm)
    np.testing.assert_array_equal(np.asarray(bn.running_var[...]), rv)
    # one example alone gives the same output: nothing depends on the rest of the batch
    np.testing.assert_allclose(np.asarray(bn(x[:1])), y[:1], atol=1e-6)


def test_eval_mode_without_running_averages_is_an_error():
    bn = set_bn_mode(BatchNorm(2), train=False)
    with pytest.raises(ValueError, match="running_stats"):
        bn(jnp.ones((2, 2, 2, 2)))


def test_running_averages_are_not_differentiated():
    bn = _bn(2, jax.random.key(3))
    graph, state = nnx.split(bn)
    state = nnx.to_pure_dict(state)  # as the library: plain arrays in, fresh variables inside

    def f(state, x):
        m = nnx.merge(graph, state)
        m(x)
        return jnp.sum(nnx.state(m, nnx.BatchStat)["running_mean"][...])

    g = jax.grad(f, argnums=1)(state, jnp.ones((2, 2, 2, 2)))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


# -- LSGM with the digits NVAE ------------------------------------------------------------------


def _method(**lsgm):
    from configs.lsgm.mnist_offline import get_config
    from jaxdiff.build import build_method

    c = get_config("nvae")
    c.lsgm.vae.num_channels = 8
    c.lsgm.vae.num_latent_per_group = 4
    c.lsgm.score.nf, c.lsgm.score.in_ch = 16, 8
    c.lsgm.stage1_steps, c.lsgm.stage2_steps = 1, 1
    for k, v in lsgm.items():
        c.lsgm[k] = v
    method = build_method(c)
    return method, method.init(jax.random.key(0), {})


@pytest.fixture(scope="module")
def nvae_method():
    return _method()


def _first_bn_path(stats, *prefix):
    """Path of the first BatchNorm under ``prefix`` (``pre, 0``: the encoder's first, whose input
    is the stem's output; ``dec, 0, 0``: the decoder's first, after ``dec_comb[0]``)."""
    node, path = _get(stats, prefix), list(prefix)
    while "running_mean" not in node:
        k = sorted(node, key=str)[0]
        node, path = node[k], [*path, k]
    return path


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def test_state_keeps_averages_apart_from_the_trained_parameters(nvae_method):
    method, state = nvae_method
    assert method.bn_stats
    stats = state.opt_state["batch_stats"]["vae"]
    names = {str(p[-1].key) for p, _ in jax.tree_util.tree_flatten_with_path(stats)[0]}
    assert names == {"running_mean", "running_var"}
    params = {str(p[-1].key) for p, _ in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    assert not params & names  # the optimisers (and their weight decay) never see them
    first = _get(stats, _first_bn_path(stats, "pre", 0))
    np.testing.assert_array_equal(np.asarray(first["running_mean"]), 0.0)  # PyTorch's buffers
    np.testing.assert_array_equal(np.asarray(first["running_var"]), 1.0)


@pytest.mark.slow  # ~60 s of CPU: one compile of LSGM's step (both stages) on the NVAE
def test_training_step_updates_the_averages_by_the_rule(nvae_method):
    """The grads hook (stage 1 at step 0, stage 2 at step 1) returns the new averages in
    ``aux``; the encoder's first BN (input: the stem's output) against the numpy rule."""
    method, state = nvae_method
    x = (jax.random.uniform(jax.random.key(4), (6, 32, 32, 1)) > 0.5).astype(jnp.float32)
    keys = jax.random.split(jax.random.key(5), 6)
    grads = jax.jit(lambda state, x, keys: method.grads(0, state, {"x": x}, keys).aux)
    old = state.opt_state["batch_stats"]["vae"]
    path = _first_bn_path(old, "pre", 0)
    h = np.asarray(method.vae(state.params["vae"], old).stem(method.preprocess(x)), np.float64)
    ref_m = (1 - MOMENTUM) * 0.0 + MOMENTUM * h.mean(axis=(0, 1, 2))
    ref_v = (1 - MOMENTUM) * 1.0 + MOMENTUM * h.var(axis=(0, 1, 2), ddof=1)
    for step in (0, 1):
        aux = grads(state.replace(step=jnp.asarray(step, jnp.int32)), x, keys)
        new = aux["batch_stats"]["vae"]
        assert jax.tree.structure(new) == jax.tree.structure(old)
        np.testing.assert_allclose(_get(new, path)["running_mean"], ref_m, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(_get(new, path)["running_var"], ref_v, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # ~30 s of CPU: eager NVAE decodes
def test_eval_mode_uses_the_stored_averages_and_train_mode_the_batch(nvae_method):
    """Decoding in evaluation mode: per-example (a batch of one gives the same rows) and moved by
    a change of a stored average; in training mode (``vae_train_mode``) neither holds."""
    method, state = nvae_method
    params, stats = state.params["vae"], state.opt_state["batch_stats"]["vae"]
    shapes = [method.top_shape, *method.rest_shapes]
    zs = [jax.random.normal(jax.random.key(6 + i), (4, *s)) for i, s in enumerate(shapes)]

    def decode(stats, train, zs):
        vae = method.vae(params, stats, train=train)
        return np.asarray(vae.decode(vae.split_top(zs[0]) + zs[1:]))

    ev = decode(stats, False, zs)
    np.testing.assert_allclose(decode(stats, False, [z[:1] for z in zs]), ev[:1], atol=1e-5)
    tr = decode(stats, True, zs)
    assert np.abs(decode(stats, True, [z[:2] for z in zs]) - tr[:2]).max() > 1e-3
    shifted = {**stats, "post": jax.tree.map(lambda a: a + 1.0, stats["post"])}
    assert np.abs(decode(shifted, False, zs) - ev).max() > 1e-3
    np.testing.assert_allclose(decode(shifted, True, zs), tr, atol=1e-6)


def test_readjust_bn_runs_the_decoder_in_training_mode_on_prior_samples(nvae_method):
    """NVAE's set_bn: batches of prior samples decoded in training mode; with two batches the
    decoder's first BN follows the rule twice on the inputs we rebuild; the encoder's averages
    do not move."""
    method, state = nvae_method
    key, b = jax.random.key(9), 3
    new = method.readjust_bn(state, key, num_batches=2, batch_size=b, temp=0.8)
    old_s, new_s = state.opt_state["batch_stats"]["vae"], new.opt_state["batch_stats"]["vae"]
    for part in ("pre", "enc"):
        assert all(
            np.array_equal(a, c)
            for a, c in zip(jax.tree.leaves(old_s[part]), jax.tree.leaves(new_s[part]), strict=True)
        )
    vae = method.vae(state.params["vae"], old_s, train=False)
    path = _first_bn_path(old_s, "dec", 0, 0)
    rm, rv = 0.0, 1.0
    shapes = [method.top_shape, *method.rest_shapes]
    for k in jax.random.split(key, 2):
        zs = [0.8 * jax.random.normal(jax.random.fold_in(k, i), (b, *s)) for i, s in
              enumerate(shapes)]  # fmt: skip
        z0 = vae.split_top(zs[0])[0]
        prior = jnp.broadcast_to(vae.prior_ftr0[...], (b, *vae.prior_ftr0.shape))
        h = vae.dec_comb[0](jnp.concatenate([prior, vae.eps_convs[0](z0)], axis=-1))
        h = np.asarray(h, np.float64)
        rm = (1 - MOMENTUM) * rm + MOMENTUM * h.mean(axis=(0, 1, 2))
        rv = (1 - MOMENTUM) * rv + MOMENTUM * h.var(axis=(0, 1, 2), ddof=1)
    np.testing.assert_allclose(_get(new_s, path)["running_mean"], rm, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_get(new_s, path)["running_var"], rv, rtol=1e-4, atol=1e-6)


def test_split_and_merge_are_inverse():
    tree = {"a": {"running_mean": 1, "scale": 2}, "c": {"d": {"running_var": 4}, "e": 5}}
    params, stats = split_batch_stats(tree)
    assert params == {"a": {"scale": 2}, "c": {"d": {}, "e": 5}}
    assert stats == {"a": {"running_mean": 1}, "c": {"d": {"running_var": 4}}}
    assert merge_batch_stats(params, stats) == tree
