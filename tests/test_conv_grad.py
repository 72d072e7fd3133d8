"""``layers.conv2d``: XLA's convolution with a matmul (im2col) kernel gradient on the CPU, and
Winograd's F(2x2, 3x3) for the 3x3, stride-1 layers of inputs of >= 16x16 pixels.

The value must be bit-identical to ``lax.conv_general_dilated`` (equal to float rounding where
the value is Winograd's); first and second reverse-mode derivatives and forward-mode tangents
equal to float rounding (issue #13).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff.nets import layers

DN = ("NHWC", "HWIO", "NHWC")
CASES = [  # (kernel, strides, padding)
    (3, (1, 1), "SAME"),
    (1, (1, 1), "SAME"),
    (3, (2, 2), "VALID"),
    (3, (1, 1), ((2, 0), (1, 1))),
]


def _ref(x, w, strides, padding):
    return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)


def _fast(x, w, strides, padding):
    return layers.conv2d(x, w, strides, padding, dimension_numbers=DN)


def _data(k, hw=(7, 6)):
    x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
    w = jax.random.normal(jax.random.key(1), (k, k, 3, 4)) * 0.3
    w2 = jax.random.normal(jax.random.key(2), (k, k, 4, 2)) * 0.3
    return x, w, w2


@pytest.fixture(autouse=True)
def _matmul_mode(monkeypatch):
    monkeypatch.setenv("JAXDIFF_CONV_GRAD", "matmul")


@pytest.mark.parametrize("k, strides, padding", CASES)
def test_value_bit_identical_and_gradients_match(k, strides, padding):
    x, w, _ = _data(k)
    np.testing.assert_array_equal(_fast(x, w, strides, padding), _ref(x, w, strides, padding))

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, padding)))

    g_fast = jax.grad(loss(_fast), argnums=(0, 1))(x, w)
    g_ref = jax.grad(loss(_ref), argnums=(0, 1))(x, w)
    for a, b in zip(g_fast, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k, strides, padding", CASES[:3])
def test_second_order_r1_and_forward_mode(k, strides, padding):
    """R1-style double backward through two layers, and jvp in both arguments."""
    x, w, w2 = _data(k)

    def r1(conv):
        def d(w, w2, x):
            return jnp.sum(conv(jax.nn.silu(conv(x, w, strides, "SAME")), w2, strides, padding))

        return lambda w, w2, x: jnp.sum(jax.grad(d, argnums=2)(w, w2, x) ** 2)

    g_fast = jax.grad(r1(_fast), argnums=(0, 1))(w, w2, x)
    g_ref = jax.grad(r1(_ref), argnums=(0, 1))(w, w2, x)
    for a, b in zip(g_fast, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    tangents = (jnp.cos(x), jnp.sin(w))
    _, t_fast = jax.jvp(lambda x, w: _fast(x, w, strides, padding), (x, w), tangents)
    _, t_ref = jax.jvp(lambda x, w: _ref(x, w, strides, padding), (x, w), tangents)
    np.testing.assert_allclose(t_fast, t_ref, rtol=1e-5, atol=1e-5)


def test_kernel_gradient_is_a_matmul_and_xla_mode_falls_back(monkeypatch):
    """The kernel gradient's program has no convolution in it (one dot); ``xla`` is plain."""
    x, w, _ = _data(3)

    def conv_count():  # a new function each time: the mode is read when tracing
        grad_w = jax.grad(lambda w: jnp.sum(_fast(x, w, (1, 1), "SAME") ** 2))
        return jax.jit(grad_w).lower(w).as_text().count("stablehlo.convolution")

    assert conv_count() == 1  # the forward value only
    monkeypatch.setenv("JAXDIFF_CONV_GRAD", "xla")
    assert conv_count() == 2  # forward + XLA's kernel-gradient convolution


def test_kernel_gradient_is_one_canonical_matmul_per_tap():
    """The kernel gradient is ``g^T view_t(x)``, (co, n) x (n, ci), for each of the 9 taps: the
    left operand contracts its last axis, the form XLA:CPU gives to YNNPACK, and the compiled
    program keeps it (no dot contracting a leading axis, which XLA would hand to Eigen)."""
    x, w, _ = _data(3)
    n, ci, co = 2 * 7 * 6, 3, 4
    lowered = jax.jit(jax.grad(lambda w: jnp.sum(_fast(x, w, (1, 1), "SAME") ** 2))).lower(w)
    dots = re.findall(r"stablehlo\.dot_general .*", lowered.as_text())
    assert len(dots) == 9
    for dot in dots:
        assert "contracting_dims = [1] x [0]" in dot
        assert f"(tensor<{co}x{n}xf32>, tensor<{n}x{ci}xf32>)" in dot
    compiled = re.findall(r" dot\(.*", lowered.compile().as_text())
    assert compiled and all("lhs_contracting_dims={1}" in d for d in compiled)


def test_nnx_conv_uses_it():
    conv = layers.conv(3, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (2, 5, 5, 3))
    ref = _ref(x, conv.kernel[...], (1, 1), "SAME") + conv.bias[...]
    np.testing.assert_array_equal(conv(x), ref)
    assert conv.conv_general_dilated is layers.conv2d

    graphdef, params = nnx.split(conv)

    def loss(params):  # the module's own call takes the matmul path: one convolution left
        return jnp.sum(nnx.merge(graphdef, params)(x) ** 2)

    text = jax.jit(jax.grad(loss)).lower(params).as_text()
    assert text.count("stablehlo.convolution") == 1


# Winograd F(2x2, 3x3) kernel gradient: 3x3, stride 1, pad 1, even input of >= 16x16 pixels.
WINO = [(16, 16), (16, 18), (20, 16)]


@pytest.mark.parametrize("conv_mode", ["on", "off"])
@pytest.mark.parametrize("hw", WINO)
def test_winograd_matches_the_convolution(hw, conv_mode, monkeypatch):
    """Value, first and second (R1) reverse-mode derivatives and forward-mode tangents of the
    Winograd paths equal XLA's convolution's to float rounding: the kernel gradient always, the
    value and the input gradient with ``JAXDIFF_WINOGRAD_CONV`` on (off: XLA's, the value
    bit-identical)."""
    monkeypatch.setenv("JAXDIFF_WINOGRAD_CONV", conv_mode)
    x, w, w2 = _data(3, hw)
    assert layers._winograd_applies(x.shape, w.shape, (1, 1), ((1, 1), (1, 1)))
    assert layers._winograd_conv_applies(x.shape, w.shape, (1, 1), ((1, 1), (1, 1))) == (
        conv_mode == "on"
    )
    y, y_ref = _fast(x, w, (1, 1), "SAME"), _ref(x, w, (1, 1), "SAME")
    if conv_mode == "off":
        np.testing.assert_array_equal(y, y_ref)
    else:  # 27-term sums (~6 here); the transforms' entries are 0, +-1, +-1/2
        scale = float(jnp.max(jnp.abs(y_ref)))
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-6 * scale)
        assert not np.array_equal(y, y_ref)  # the Winograd path did run

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (1, 1), "SAME")))

    g_fast = jax.grad(loss(_fast), argnums=(0, 1))(x, w)
    g_ref = jax.grad(loss(_ref), argnums=(0, 1))(x, w)
    for a, b in zip(g_fast, g_ref, strict=True):  # kernel gradient: sums of 2 h w terms, ~50
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6 * float(jnp.max(jnp.abs(b))))

    def r1(conv):
        def d(w, w2, x):
            h = jax.nn.silu(conv(x, w, (1, 1), "SAME"))
            return jnp.sum(jnp.tanh(conv(h, w2, (1, 1), "SAME")))

        return lambda w, w2, x: jnp.sum(jax.grad(d, argnums=2)(w, w2, x) ** 2)

    g_fast = jax.grad(r1(_fast), argnums=(0, 1))(w, w2, x)
    g_ref = jax.grad(r1(_ref), argnums=(0, 1))(w, w2, x)
    for a, b in zip(g_fast, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6 * float(jnp.max(jnp.abs(b))))

    tangents = (jnp.cos(x), jnp.sin(w))
    _, t_fast = jax.jvp(lambda x, w: _fast(x, w, (1, 1), "SAME"), (x, w), tangents)
    _, t_ref = jax.jvp(lambda x, w: _ref(x, w, (1, 1), "SAME"), (x, w), tangents)
    np.testing.assert_allclose(t_fast, t_ref, rtol=1e-5, atol=1e-5)


def test_winograd_conv_is_matmuls_only():
    """With the Winograd value and input gradient, the layer's value and both gradients contain
    no convolution: sixteen ``(T, ci) x (ci, co)`` dots for the value, sixteen ``(T, co) x (co,
    ci)`` for the input gradient (the transposed tangent transposed back), sixteen ``(co, T) x
    (T, ci)`` for the kernel gradient; all canonical (left operand contracting its last axis)
    after compilation. Odd sizes and inputs under 16x16 keep XLA's convolution."""
    x, w, _ = _data(3, (16, 16))
    t, ci, co = 2 * 8 * 8, 3, 4
    g = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(_fast(x, w, (1, 1), "SAME"))), (0, 1)))
    lowered = g.lower(x, w)
    text = lowered.as_text()
    assert "stablehlo.convolution" not in text
    dots = re.findall(r"stablehlo\.dot_general .*", text)
    assert len(dots) == 48
    forms = [  # value, input gradient, kernel gradient
        f"(tensor<{t}x{ci}xf32>, tensor<{ci}x{co}xf32>)",
        f"(tensor<{t}x{co}xf32>, tensor<{co}x{ci}xf32>)",
        f"(tensor<{co}x{t}xf32>, tensor<{t}x{ci}xf32>)",
    ]
    for form in forms:
        assert sum(form in d and "contracting_dims = [1] x [0]" in d for d in dots) == 16, form
    compiled = re.findall(r" dot\(.*", lowered.compile().as_text())
    assert compiled and all("lhs_contracting_dims={1}" in d for d in compiled)

    for hw in [(14, 14), (16, 17)]:  # 196 pixels < 256; odd width
        x_other = _data(3, hw)[0]
        assert (
            "stablehlo.convolution"
            in jax.jit(_fast, static_argnums=(2, 3)).lower(x_other, w, (1, 1), "SAME").as_text()
        )


def test_winograd_input_tiles_are_the_transformed_4x4_tiles():
    """``V[a][c]`` at tile ``(n, p, q)`` is ``(B^T d B)[a, c]`` of the 4x4 window of the
    1-padded input at ``(2 p, 2 q)``, computed here with numpy from the definition."""
    x = np.asarray(jax.random.normal(jax.random.key(4), (2, 6, 4, 3)))
    v = layers.winograd_input_tiles(jnp.asarray(x))
    bt = np.array(layers._WG_BT, np.float64)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for n, p, q in [(0, 0, 0), (1, 2, 1), (0, 1, 1), (1, 0, 1)]:
        d = xp[n, 2 * p : 2 * p + 4, 2 * q : 2 * q + 4, :]  # (4, 4, c)
        want = np.einsum("ai,ijc,kj->akc", bt, d, bt)
        t = (n * 3 + p) * 2 + q
        got = np.stack([np.stack([np.asarray(v[a][k][t]) for k in range(4)]) for a in range(4)])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_winograd_kernel_gradient_is_sixteen_canonical_matmuls(monkeypatch):
    """The Winograd kernel gradient is 16 ``(co, T) x (T, ci)`` dots over the T = b h w / 4
    tiles, none contracting a leading axis after compilation; ``JAXDIFF_WINOGRAD_GRAD=off``
    and inputs under 16x16 or of odd size keep the nine per-tap dots."""
    monkeypatch.setenv("JAXDIFF_WINOGRAD_CONV", "off")  # the value by XLA's convolution
    x, w, _ = _data(3, (16, 16))
    t, ci, co = 2 * 8 * 8, 3, 4

    def dots(x, w):
        f = jax.jit(jax.grad(lambda w: jnp.sum(_fast(x, w, (1, 1), "SAME") ** 2)))
        lowered = f.lower(w)
        return re.findall(r"stablehlo\.dot_general .*", lowered.as_text()), lowered

    found, lowered = dots(x, w)
    assert len(found) == 16
    for dot in found:
        assert "contracting_dims = [1] x [0]" in dot
        assert f"(tensor<{co}x{t}xf32>, tensor<{t}x{ci}xf32>)" in dot
    compiled = re.findall(r" dot\(.*", lowered.compile().as_text())
    assert compiled and all("lhs_contracting_dims={1}" in d for d in compiled)

    assert len(dots(*_data(3, (14, 14))[:2])[0]) == 9  # 196 pixels < 256
    assert len(dots(*_data(3, (16, 17))[:2])[0]) == 9  # odd width
    monkeypatch.setenv("JAXDIFF_WINOGRAD_GRAD", "off")
    assert len(dots(x, w)[0]) == 9
