"""Layers of the module zoo against hand computations and independent references.

Small arrays; a test that builds a layer (random initialisation) builds and applies it inside one
``_jit`` call, since eagerly every random op and layer op is a separate XLA compile.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff.nets import layers as L
from jaxdiff.nets.embeddings import GaussianFourierEmbedding, sinusoidal_embedding
from jaxdiff.nets.functional import functional

K1 = np.array([1.0, 3.0, 3.0, 1.0])
# XLA's CPU backend at LLVM -O0 without the new fusion emitters: several times faster to compile.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def _jit(f):
    return jax.jit(f, compiler_options=FAST_COMPILE)


def _normal(seed, shape):
    """float32 test inputs from numpy (no compile)."""
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def upfirdn_reference(x, k2, up, down, pad0, pad1):
    """scipy.signal.upfirdn-style reference with explicit loops (one 2-D channel)."""
    h, w = x.shape
    u = np.zeros((h * up, w * up))
    u[::up, ::up] = x
    u = np.pad(u, ((pad0, pad1), (pad0, pad1)))
    kh = k2.shape[0]
    out = np.zeros((u.shape[0] - kh + 1, u.shape[1] - kh + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            # true convolution: flip the kernel
            out[i, j] = np.sum(u[i : i + kh, j : j + kh] * k2[::-1, ::-1])
    return out[::down, ::down]


@pytest.mark.parametrize("separable", [False, True])
@pytest.mark.parametrize(
    "up,down,pad", [(2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (1, 2)), (2, 2, (1, 2)), (1, 2, (2, 0))]
)
def test_upfirdn_matches_loop_reference(up, down, pad, separable):
    """Both code paths (depthwise conv for a general kernel, shifted slices for a rank-one one)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 7)).astype(np.float32)
    if separable:  # asymmetric and different per axis: checks the flip and the axis order
        k2 = np.outer(rng.normal(size=4), rng.normal(size=4)).astype(np.float32)
        assert L._separable_taps(k2) is not None
    else:
        k2 = rng.normal(size=(4, 4)).astype(np.float32)
        assert L._separable_taps(k2) is None
    got = L.upfirdn2d(jnp.asarray(x)[None, :, :, None], k2, up, down, pad)[0, :, :, 0]
    np.testing.assert_allclose(got, upfirdn_reference(x, k2, up, down, *pad), atol=1e-5)


def test_spectral_regularizer_uses_the_weight_normalised_kernel():
    """NVAE regularises the kernel a weight-normalised conv applies, exp(g) v / ||v||: the
    estimate equals its top singular value (numpy SVD), and since sigma is 1-homogeneous in
    exp(g), the gradients in log g sum to sigma itself."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    log_g = rng.normal(size=(5,)).astype(np.float32) * 0.3
    params = {"conv": {"kernel": jnp.asarray(v), "log_weight_norm": jnp.asarray(log_g)}}
    w = np.exp(log_g) * v / (np.sqrt((v.astype(np.float64) ** 2).sum((0, 1, 2))) + 1e-5)
    sigma = np.linalg.svd(np.moveaxis(w, -1, 0).reshape(5, -1))[1][0]
    state = L.spectral_state_init(params, jax.random.key(0))
    loss, state = L.spectral_regularizer(params, state, num_iter=60)
    np.testing.assert_allclose(loss, sigma, rtol=1e-4)
    g = jax.grad(lambda p: L.spectral_regularizer(p, state, 1)[0])(params)
    np.testing.assert_allclose(np.sum(g["conv"]["log_weight_norm"]), sigma, rtol=1e-3)
    # the raw kernel's own spectral norm is a different number: the test can tell them apart
    raw = np.linalg.svd(np.moveaxis(v, -1, 0).reshape(5, -1))[1][0]
    assert abs(raw - sigma) > 0.1 * sigma


def test_upfirdn_separable_path_equals_conv_path_with_gradients():
    """The slice path and the depthwise conv agree in value and in the input gradient."""
    k2 = L.fir_kernel((1, 3, 3, 1), 4.0)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))

    def conv_path(x, up, down, pad):
        w = jnp.broadcast_to(jnp.asarray(k2[::-1, ::-1])[:, :, None, None], (4, 4, 1, 3))
        padding = ((pad[0], pad[1] + up - 1),) * 2
        return jax.lax.conv_general_dilated(
            x, w, (down, down), padding, lhs_dilation=(up, up),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=3,
        )  # fmt: skip

    for up, down, pad in [(2, 1, (2, 1)), (1, 2, (1, 1))]:
        ref = conv_path(x, up, down, pad)
        got = L.upfirdn2d(x, k2, up, down, pad)
        np.testing.assert_allclose(got, ref, atol=1e-5)
        args = (up, down, pad)
        g_ref = jax.grad(lambda x, a=args: jnp.sum(conv_path(x, *a) ** 2))(x)
        g_got = jax.grad(lambda x, a=args: jnp.sum(L.upfirdn2d(x, k2, *a) ** 2))(x)
        np.testing.assert_allclose(g_got, g_ref, atol=1e-4)


def test_fir_upsample_impulse_is_outer_product_and_constant_preserved():
    x = jnp.zeros((1, 8, 8, 1)).at[0, 3, 3, 0].set(1.0)
    u = np.asarray(L.upsample_2d(x))[0, :, :, 0]
    # gain 4 times the normalised outer product = outer([1,3,3,1]/4, [1,3,3,1]/4)
    expected = np.zeros((16, 16))
    expected[5:9, 5:9] = np.outer(K1 / 4, K1 / 4)
    np.testing.assert_allclose(u, expected, atol=1e-6)
    c = L.upsample_2d(jnp.full((2, 8, 8, 3), 0.7))
    assert c.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(c[:, 1:-1, 1:-1], 0.7, rtol=1e-6)  # interior (zero padding at edges)


def test_fir_downsample_impulse_and_constant():
    d = L.downsample_2d(jnp.full((1, 8, 8, 2), -1.5))
    assert d.shape == (1, 4, 4, 2)
    np.testing.assert_allclose(d[:, 1:-1, 1:-1], -1.5, rtol=1e-6)
    x = jnp.zeros((1, 8, 8, 1)).at[0, 4, 4, 0].set(1.0)
    d = np.asarray(L.downsample_2d(x))[0, :, :, 0]
    k = np.outer(K1, K1) / 64.0
    np.testing.assert_allclose(d, upfirdn_reference(np.asarray(x)[0, :, :, 0], k, 1, 2, 1, 1), 1e-6)
    # output (i, j) filters inputs 2i-1 .. 2i+2: the impulse at 4 is seen by i = 1 and i = 2
    assert np.isclose(d[2, 2], (3 / 8) ** 2) and np.isclose(d[1, 1], (1 / 8) ** 2)
    assert np.isclose(d.sum(), 0.25)  # energy of one input sample spread over 4x fewer outputs


@pytest.mark.parametrize("up", [True, False])
def test_fused_fir_conv_equals_resample_then_conv(up):
    """StyleGAN2's fusion: up = upsample_2d then conv; down = conv then downsample_2d (interior)."""
    x = _normal(0, (1, 12, 12, 2))

    @_jit
    def run(x):
        m = L.FIRConv(2, 3, up=up, down=not up, rngs=nnx.Rngs(0))
        w, b = m.kernel[...], m.bias[...]

        def conv(z):
            dn = ("NHWC", "HWIO", "NHWC")
            return jax.lax.conv_general_dilated(z, w, (1, 1), "SAME", dimension_numbers=dn)

        if up:
            return m(x), conv(L.upsample_2d(x)) + b
        return m(x), L.downsample_2d(conv(x)) + b

    (y, ref), cut = run(x), (4 if up else 2)
    np.testing.assert_allclose(y[:, cut:-cut, cut:-cut], ref[:, cut:-cut, cut:-cut], atol=1e-5)


def test_group_norm_matches_formula_and_adaptive_zero_modulation():
    x = _normal(1, (2, 4, 4, 8)) * 3 + 1
    w = _normal(2, (2, 5))

    @_jit
    def run(x, w):
        y = L.GroupNorm(8, groups=2)(x)
        ada = L.AdaptiveGroupNorm(8, 5, groups=2, rngs=nnx.Rngs(0))
        y_w0 = ada(x, jnp.zeros((2, 5)))
        ada.style.kernel[...] = jnp.zeros_like(ada.style.kernel[...])
        y_k0 = ada(x, w)
        return y, y_w0, y_k0, L.AdaptiveGroupNorm(8, 5, rngs=nnx.Rngs(0))(x, w)

    y, y_w0, y_k0, y_ada = (np.asarray(a) for a in run(x, w))
    xr = x.reshape(2, 4, 4, 2, 4)
    m, v = xr.mean(axis=(1, 2, 4), keepdims=True), xr.var(axis=(1, 2, 4), keepdims=True)
    np.testing.assert_allclose(y, ((xr - m) / np.sqrt(v + 1e-6)).reshape(x.shape), atol=1e-5)
    np.testing.assert_allclose(y_w0, y, atol=1e-6)  # w = 0
    np.testing.assert_allclose(y_k0, y, atol=1e-6)  # zero style weights
    assert not np.allclose(y_ada, y, atol=1e-3)


def test_attention_hand_computed():
    # two positions, one channel: q = k = (1, 2), v = (10, 20); logits q_i k_j / sqrt(1)
    q = jnp.array([1.0, 2.0]).reshape(1, 1, 2, 1)
    v = jnp.array([10.0, 20.0]).reshape(1, 1, 2, 1)
    out = np.asarray(L.spatial_attention(q, q, v)).ravel()
    for i, qi in enumerate([1.0, 2.0]):
        logits = np.array([qi * 1.0, qi * 2.0])
        p = np.exp(logits) / np.exp(logits).sum()
        assert np.isclose(out[i], p @ np.array([10.0, 20.0]), rtol=1e-5)
    # with scale 1/sqrt(C): C = 4, identical channels -> logits 4 q_i k_j / 2
    q4 = jnp.tile(q, (1, 1, 1, 4))
    out4 = np.asarray(L.spatial_attention(q4, q4, jnp.tile(v, (1, 1, 1, 4))))[0, 0, :, 0]
    p = np.exp(np.array([2.0, 4.0])) / np.exp(np.array([2.0, 4.0])).sum()
    assert np.isclose(out4[0], p @ np.array([10.0, 20.0]), rtol=1e-5)


def test_attn_block_near_identity_at_init_scale_zero():
    x = _normal(0, (2, 4, 4, 8))
    y = _jit(lambda x: L.AttnBlock(8, skip_rescale=True, init_scale=0.0, rngs=nnx.Rngs(0))(x))(x)
    np.testing.assert_allclose(y, x / math.sqrt(2), atol=1e-5)


def test_time_embeddings_hand_computed():
    e = np.asarray(sinusoidal_embedding(jnp.array([1.0, 2.0]), 4))
    freqs = np.array([1.0, 1e-4])  # 10000^(-k / (half - 1)), half = 2
    for r, t in enumerate([1.0, 2.0]):
        np.testing.assert_allclose(e[r], np.r_[np.sin(t * freqs), np.cos(t * freqs)], rtol=1e-5)

    @_jit
    def fourier(t, t2):
        f = GaussianFourierEmbedding(3, scale=16.0, rngs=nnx.Rngs(0))
        pure, params = functional(f)
        return f.W[...], f(t), jax.grad(lambda p: pure.apply(p, t2).sum())(params)

    W, out, g = fourier(np.array([0.25], np.float32), np.array([0.3, 0.7], np.float32))
    W, out = np.asarray(W), np.asarray(out)[0]
    np.testing.assert_allclose(out, np.r_[np.sin(0.5 * np.pi * W), np.cos(0.5 * np.pi * W)], 1e-5)
    assert np.all(np.asarray(g["W"]) == 0)  # fixed (stop-gradient) features


def test_minibatch_stddev_strided_groups():
    xn = _normal(3, (8, 2, 2, 3))
    y = np.asarray(_jit(lambda x: L.minibatch_stddev(x, group_size=4))(xn))
    assert y.shape == (8, 2, 2, 4)
    for i in range(8):
        members = xn[[j for j in range(8) if j % 2 == i % 2]]  # i grouped with i + 2k
        expected = np.sqrt(members.var(axis=0) + 1e-8).mean()
        np.testing.assert_allclose(y[i, :, :, 3], expected, rtol=1e-5)
    np.testing.assert_allclose(y[..., :3], xn)


def test_pixel_norm_and_mapping():
    z = _normal(0, (4, 100)) * 7

    @_jit
    def run(z):
        m = L.MappingNetwork(100, 32, 3, rngs=nnx.Rngs(0))
        return L.pixel_norm(z), m(z), m(z * 5.0)

    zn, mz, mz5 = (np.asarray(a) for a in run(z))
    np.testing.assert_allclose(np.mean(zn.astype(np.float64) ** 2, axis=-1), 1.0, rtol=1e-5)
    assert mz.shape == (4, 32)
    np.testing.assert_allclose(mz, mz5, rtol=1e-4, atol=1e-6)  # PixelNorm: scale invariant


def test_spectral_regularizer_power_iteration_and_gradient():
    rng = np.random.default_rng(0)
    params = {
        "a": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 5)), jnp.float32)},
        "b": {"kernel": jnp.asarray(rng.normal(size=(6, 2)), jnp.float32), "bias": jnp.ones(2)},
    }

    @_jit
    def run(params, key):
        state = L.spectral_state_init(params, key)
        loss, state = L.spectral_regularizer(params, state, num_iter=40)
        # threaded state: one more cheap iteration stays converged; gradient is u v^T per kernel
        loss1, _ = L.spectral_regularizer(params, state, num_iter=1)
        g = jax.grad(lambda p: L.spectral_regularizer(p, state, 1)[0])(params)
        return loss, state, loss1, g

    loss, state, loss1, g = run(params, jax.random.key(0))
    assert set(state) == {"['a']['kernel']", "['b']['kernel']"}
    sig = [
        np.linalg.svd(np.moveaxis(np.asarray(params[n]["kernel"]), -1, 0).reshape(s, -1))[1][0]
        for n, s in (("a", 5), ("b", 2))
    ]
    np.testing.assert_allclose(loss, sum(sig), rtol=1e-4)
    np.testing.assert_allclose(loss1, sum(sig), rtol=1e-4)
    u, v = state["['b']['kernel']"]
    np.testing.assert_allclose(g["b"]["kernel"], np.outer(v, u), rtol=1e-3, atol=1e-5)
    assert np.all(np.asarray(g["b"]["bias"]) == 0)


def test_dropout_is_keyed():
    x = jax.device_put(np.ones((1000,), np.float32))
    assert L.dropout(x, 0.3, None) is x
    drop = _jit(lambda x, k: L.dropout(x, 0.3, k))
    a, b = np.asarray(drop(x, jax.random.key(0))), np.asarray(drop(x, jax.random.key(0)))
    np.testing.assert_array_equal(a, b)
    assert abs(float((a == 0).mean()) - 0.3) < 0.05 and abs(float(a.mean()) - 1.0) < 0.1


@pytest.mark.parametrize("up,down", [(False, False), (True, False), (False, True)])
def test_biggan_block_at_zero_init_is_rescaled_skip(up, down):
    """With init_scale 0 the residual branch vanishes: out = resample(x) / sqrt(2) (same C).

    The "zero" init is variance_scaling(1e-10), so the branch is ~1e-5, hence atol 1e-4."""
    x = _normal(0, (2, 8, 8, 8))

    @_jit
    def run(x):
        blk = L.ResBlockBigGAN(8, 8, up=up, down=down, fir=True, temb_dim=4, rngs=nnx.Rngs(0))
        y = blk(x, jnp.ones((2, 4)))
        if not (up or down):
            return y, x
        return y, blk.shortcut(L.upsample_2d(x) if up else L.downsample_2d(x))

    y, skip = run(x)
    np.testing.assert_allclose(y, skip / math.sqrt(2), atol=1e-4)
