"""Building blocks of the module zoo: norms, residual blocks, attention, FIR resampling, GAN layers.

Conventions: images are NHWC; every module takes ``dtype`` (compute dtype) and keeps float32
parameters; normalisation statistics are computed in float32. Dropout is active iff a PRNG key is
passed. Facts (layer order, initialisation, FIR padding) follow score_sde's ``layerspp.py`` /
``up_or_down_sampling.py`` and DDGAN's ``layerspp.py`` / ``discriminator.py``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff import rng

Dtype = Any
SQRT2 = float(np.sqrt(2.0))


# ----------------------------------------------------------------------------------------------
# Convolution with a matmul kernel gradient on the CPU (issue #13).
#
# XLA's CPU backend computes a convolution's kernel gradient (a convolution contracting over
# batch and space) 5-10x slower than the forward convolution of the same layer (measured: 32x32,
# 128 -> 256 channels, batch 8: forward 0.48 s, forward + kernel gradient 4.9-6.5 s). ``conv2d``
# keeps XLA's convolution for the value, and gives it a ``custom_jvp`` whose tangent in the
# kernel is a sum of matmuls, one per kernel tap ``t``: ``view_t(x) @ dw[t]``, where ``view_t``
# is the padded input shifted by the tap. Reverse mode transposes that into the kernel gradient,
# ``dw[t] = view_t(x)^T g``, while the input's tangent stays XLA's convolution (so its
# transpose is XLA's input-gradient convolution). The rule is itself differentiable (R1's double
# backward, forward mode for the likelihood's divergence). Values are bit-identical to
# ``lax.conv_general_dilated`` (except the Winograd layers' below); derivatives equal to float
# rounding.
#
# The form matters to XLA:CPU. Its YNNPACK matmuls take only a left operand that contracts its
# last axis; ``view_t(x)^T g`` contracts the leading (batch x space) axis of both, so XLA hands
# it to Eigen (slower, on a pool of its own that competes with the step's other ops). The tangent
# is therefore written so that its transpose is ``(g^T view_t(x))^T`` with ``g^T`` written once
# (shared by the taps) and each tap's ``(co, ci)`` product taken as it is: both behind
# ``_cond_identity`` (below), since XLA otherwise folds the transposes back into the dot's
# dimension numbers. Per tap rather than one im2col matmul: the shifted views are not
# concatenated into 9x-wide patches (measured, one layer's forward + both gradients, batch 8:
# 32x32 256 -> 256 130 -> 109 ms, 128 -> 128 48 -> 36 ms; the DDPM++ step 3.9-4.3 -> 3.6 s).
# ``JAXDIFF_CONV_GRAD``: ``auto`` (default: the matmul gradient on the CPU backend only),
# ``matmul`` or ``xla``.
#
# Where the layer is a 3x3, stride 1, pad 1 convolution of an even-sized input of at least 16x16
# pixels (most of a DDPM++ / NCSN++ network's), the kernel tangent is instead Winograd's minimal
# filtering F(2x2, 3x3) (Lavin & Gray, 2016): the input as overlapping 4x4 tiles with stride 2,
# ``V = B^T d B`` per tile, the kernel ``U = G dw G^T``, sixteen products ``V_k U_k`` (one per
# entry of the 4x4 transformed tile) and the 2x2 output tiles ``A^T M A``. Its transpose, the
# kernel gradient, is sixteen ``(co, T) x (T, ci)`` matmuls over the T = b h w / 4 tiles: 16/36
# of the per-tap form's multiply-adds (4 per output pixel instead of 9), on canonical YNNPACK
# dots (one layer's kernel gradient alone, batch 8: 32x32 128 -> 128 20.8 -> 12.9 ms, 256 -> 128
# 38.8 -> 23.9 ms, 16x16 256 -> 256 9.1 -> 7.5 ms; at 8x8 2.7 ms either way, so smaller inputs
# keep the per-tap form; DDPM++'s step 1.107x). Float32 rounding
# differs from the per-tap sum by ~1e-6 relative (the transforms' entries are 0, +-1, +-1/2).
# ``JAXDIFF_WINOGRAD_GRAD``: ``auto`` (default: on the CPU backend only), ``on`` or ``off``.
#
# The same layers' value and input gradient are F(2x2, 3x3) too (``winograd_conv``): sixteen
# ``(T, ci) x (ci, co)`` matmuls on the transformed tiles instead of XLA's direct convolution
# (one layer, batch 8, forward + both gradients: 32x32 128 -> 128 19.7 -> 15.3 ms, 16x16 256 ->
# 256 15.7 -> 13.1 ms, 512 -> 256 31.1 -> 23.8 ms; the DDPM++ step 1.15x). The input tangent is
# written as the transpose of the input gradient's Winograd convolution (``g -> winograd_conv(g,
# flip(w))``), so reverse mode gets that convolution back; autodiff's own transpose of the
# forward transforms (pads and scattered adds) was slower than XLA's. The value then differs from
# XLA's convolution by float rounding (~2e-7 of its largest entry) rather than being
# bit-identical. ``JAXDIFF_WINOGRAD_CONV``: ``auto`` (default: on the CPU backend only), ``on``
# or ``off`` (XLA's convolution for the value and the input gradient).

_DN = ("NHWC", "HWIO", "NHWC")


def _cpu_switch(var: str, on: str, off: str) -> bool:
    """The environment switch ``var`` = 'auto' (on for the CPU backend only), ``on`` or ``off``."""
    mode = os.environ.get(var, "auto")
    if mode not in ("auto", on, off):
        raise ValueError(f"{var} must be auto, {on} or {off}, not {mode!r}")
    return mode == on or (mode == "auto" and jax.default_backend() == "cpu")


def _matmul_kernel_grad() -> bool:
    return _cpu_switch("JAXDIFF_CONV_GRAD", "matmul", "xla")


def conv_views(
    x: Float[Array, "b h w c"], kh: int, kw: int, strides: tuple, pads: tuple
) -> list[Float[Array, "b ho wo c"]]:
    """The ``kh * kw`` shifted (strided) views of the padded input, tap-major (``(i, j)``, the
    order of an HWIO kernel's leading axes): ``conv(x, w) = sum_t view_t(x) @ w[t]``."""
    (t, bt), (lt, rt) = pads
    sh, sw = strides
    xp = jnp.pad(x, ((0, 0), (t, bt), (lt, rt), (0, 0)))
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    return [
        xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv_mm(x: Array, w: Array, strides: tuple, pads: tuple) -> Array:
    if _winograd_conv_applies(x.shape, w.shape, strides, pads):
        return winograd_conv(x, w, w.reshape(-1)[0])
    return jax.lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


@functools.partial(jax.checkpoint, static_argnums=(3, 4))
def _kernel_tangent(x: Array, dw: Array, p: Array, strides: tuple, pads: tuple) -> Array:
    """``sum_t view_t(x) @ dw[t]``, so written that its transpose is ``dw[t] = (g^T
    view_t(x))^T`` with both transposes written out (see above). The gradient's ``(kh kw, co,
    ci) -> (kh, kw, ci, co)`` transpose is also written once (the conditional around ``dw``):
    left to XLA, it was fused into each of the optimiser's reads of the gradient (clipping,
    Adam's moments, the update) at ~1 ms per 3x3x256x256 read; written once, 0.3 ms + a copy
    (the DDPM++ step 1.04x faster). Rematerialised: the backward pass keeps ``x``, not its
    views. ``p``: a replicated runtime scalar for the conditionals."""
    kh, kw, ci, co = dw.shape
    views = conv_views(x, kh, kw, strides, pads)
    b, ho, wo, _ = views[0].shape
    dw_t = _cond_identity(p, jnp.swapaxes(_cond_identity(p, dw), 2, 3).reshape(kh * kw, co, ci))
    contract = (((1,), (1,)), ((), ()))  # (co, ci) x (n, ci) -> (co, n)
    products = [
        jax.lax.dot_general(dw_t[t], v.reshape(-1, ci), contract) for t, v in enumerate(views)
    ]
    z = functools.reduce(jnp.add, products)
    return _cond_identity(p, z).T.reshape(b, ho, wo, co)


_WINOGRAD_MIN_PIXELS = 256
# F(2x2, 3x3): y = A^T [(G w G^T) * (B^T d B)] A for a 4x4 input tile d (a correlation).
_WG_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WG_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_WG_AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def _winograd_shape(x_shape: tuple, w_shape: tuple, strides: tuple, pads: tuple) -> bool:
    """A 3x3, stride 1, pad 1 convolution of an even-sized input of >= 16x16 pixels."""
    _, h, w, _ = x_shape
    return (
        tuple(w_shape[:2]) == (3, 3)
        and strides == (1, 1)
        and pads == ((1, 1), (1, 1))
        and h % 2 == 0
        and w % 2 == 0
        and h * w >= _WINOGRAD_MIN_PIXELS
    )


def _winograd_applies(x_shape: tuple, w_shape: tuple, strides: tuple, pads: tuple) -> bool:
    """Whether the kernel tangent (so the kernel gradient) is F(2x2, 3x3)."""
    return _winograd_shape(x_shape, w_shape, strides, pads) and _cpu_switch(
        "JAXDIFF_WINOGRAD_GRAD", "on", "off"
    )


def _winograd_conv_applies(x_shape: tuple, w_shape: tuple, strides: tuple, pads: tuple) -> bool:
    """Whether the value and the input tangent (so the input gradient) are F(2x2, 3x3)."""
    return _winograd_shape(x_shape, w_shape, strides, pads) and _cpu_switch(
        "JAXDIFF_WINOGRAD_CONV", "on", "off"
    )


def _combine(coefs: Sequence[float], arrays: Sequence[Array]) -> Array:
    """``sum_i coefs[i] * arrays[i]``, skipping zeros and writing +-1 as adds / subtracts."""
    out = None
    for c, a in zip(coefs, arrays, strict=True):
        if c == 0:
            continue
        term = a if c == 1 else -a if c == -1 else c * a
        out = term if out is None else out + term
    return out


def winograd_input_tiles(x: Float[Array, "b h w c"]) -> list[list[Float[Array, "t c"]]]:
    """``V[a][c] = (B^T d B)[a, c]`` of every 4x4 tile ``d`` of the 1-padded input at stride 2
    (tiles row-major over ``(b, h / 2, w / 2)``), F(2x2, 3x3); ``h``, ``w`` even."""
    b, h, w, c = x.shape
    th, tw = h // 2, w // 2
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(b, th + 1, 2, tw + 1, 2, c)
    d = [  # tile row i, column j: padded pixel (2 p + i, 2 q + j) = (2 (p + i // 2) + i % 2, ...)
        [xp[:, i // 2 : i // 2 + th, i % 2, j // 2 : j // 2 + tw, j % 2, :] for j in range(4)]
        for i in range(4)
    ]
    rows = [[_combine(_WG_BT[a], [d[i][j] for i in range(4)]) for j in range(4)] for a in range(4)]
    return [[_combine(_WG_BT[k], rows[a]).reshape(-1, c) for k in range(4)] for a in range(4)]


def winograd_kernel(w: Float[Array, "3 3 ci co"], p: Array) -> Float[Array, "4 4 ci co"]:
    """``U = G w G^T`` of a 3x3 kernel, written once (behind a conditional on the runtime scalar
    ``p``: XLA would otherwise fuse the transform, and any transpose of ``w`` before it, into
    each of the sixteen matmuls' operands)."""
    rows = [[_combine(_WG_G[a], [w[i, j] for i in range(3)]) for j in range(3)] for a in range(4)]
    u = [jnp.stack([_combine(_WG_G[k], rows[a]) for k in range(4)]) for a in range(4)]
    return _cond_identity(p, jnp.stack(u))


def winograd_conv(
    x: Float[Array, "b h w ci"], w: Float[Array, "3 3 ci co"], p: Array
) -> Float[Array, "b h w co"]:
    """The 3x3, stride 1, pad 1 correlation (``lax.conv_general_dilated``, NHWC / HWIO) by
    F(2x2, 3x3): sixteen ``(T, ci) x (ci, co)`` matmuls ``M_k = V_k U_k`` over the T = b h w / 4
    input tiles, then the 2x2 output tiles ``A^T M A``; ``h``, ``w`` even. Equal to XLA's
    convolution to float rounding. ``p``: a runtime scalar for the kernel's conditional. Named
    ``winograd_conv`` in the program's metadata: the trainer looks for it (or a convolution)
    to choose how a CPU step is looped (``train.loop``)."""
    b, h, wd, _ = x.shape
    co = w.shape[-1]
    with jax.named_scope("winograd_conv"):
        v = winograd_input_tiles(x)
        u = winograd_kernel(w, p)
        m = [[v[a][k] @ u[a, k] for k in range(4)] for a in range(4)]  # (T, co) each
        out_rows = [
            [_combine(_WG_AT[r], [m[a][k] for a in range(4)]) for k in range(4)] for r in range(2)
        ]
        y = jnp.stack(
            [jnp.stack([_combine(_WG_AT[s], out_rows[r]) for s in range(2)]) for r in range(2)]
        )  # (r, s, T, co): output pixel (2 p + r, 2 q + s) of tile (n, p, q)
        y = y.reshape(2, 2, b, h // 2, wd // 2, co)
        return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, h, wd, co)


def _winograd_input_tangent(dx: Array, w: Array, p: Array) -> Array:
    """``conv(dx, w)`` for a 3x3, stride 1, pad 1 kernel, written as the transpose of ``g ->
    winograd_conv(g, flip(w))`` (the convolution's input gradient), so that reverse mode, which
    transposes the tangent, computes the input gradient as that Winograd convolution (forward
    mode gets the transposed form, as fast as XLA's convolution here). ``flip(w)`` (the kernel
    rotated by 180 degrees, ``ci`` and ``co`` swapped) is written once, behind a conditional."""
    b, h, wd, _ = dx.shape
    flipped = _cond_identity(p, jnp.swapaxes(w[::-1, ::-1], 2, 3))  # (3, 3, co, ci)
    g = jax.ShapeDtypeStruct((b, h, wd, w.shape[-1]), dx.dtype)
    return jax.linear_transpose(lambda g: winograd_conv(g, flipped, p), g)(dx)[0]


@jax.checkpoint
def _kernel_tangent_winograd(x: Array, dw: Array, p: Array) -> Array:
    """``conv(x, dw)`` for a 3x3, stride 1, pad 1 kernel tangent by F(2x2, 3x3) (see above),
    written so that its transpose, the kernel gradient, is sixteen canonical matmuls
    ``dU_k^T = dM_k^T V_k``, ``(co, T) x (T, ci)``: the cotangent is transposed once to
    ``(co, 2, 2, T)`` (behind a conditional, so that XLA writes it once rather than folding it
    into each dot), its output-transform transpose ``dM_k^T`` is then elementwise over
    contiguous rows. Rematerialised, like ``_kernel_tangent``."""
    b, h, w, ci = x.shape
    co = dw.shape[-1]
    th, tw = h // 2, w // 2
    v = winograd_input_tiles(x)
    dw_t = _cond_identity(p, jnp.swapaxes(_cond_identity(p, dw), 2, 3))  # (3, 3, co, ci)
    rows = [
        [_combine(_WG_G[a], [dw_t[i, j] for i in range(3)]) for j in range(3)] for a in range(4)
    ]
    u_t = [[_combine(_WG_G[k], rows[a]) for k in range(4)] for a in range(4)]  # (co, ci) each
    contract = (((1,), (1,)), ((), ()))  # (co, ci) x (T, ci) -> (co, T)
    m = [[jax.lax.dot_general(u_t[a][k], v[a][k], contract) for k in range(4)] for a in range(4)]
    out_rows = [
        [_combine(_WG_AT[r], [m[a][k] for a in range(4)]) for k in range(4)] for r in range(2)
    ]
    y = jnp.stack(
        [jnp.stack([_combine(_WG_AT[s], out_rows[r]) for s in range(2)]) for r in range(2)]
    )
    y = _cond_identity(p, y.reshape(2, 2, co, b, th, tw))  # (r, s, co, b, p, q)
    return y.transpose(3, 4, 0, 5, 1, 2).reshape(b, h, w, co)


@functools.partial(_conv_mm.defjvp, symbolic_zeros=True)
def _conv_mm_jvp(strides, pads, primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = _conv_mm(x, w, strides, pads)
    p = w.reshape(-1)[0]
    parts = []
    if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
        if _winograd_conv_applies(x.shape, w.shape, strides, pads):
            parts.append(_winograd_input_tangent(dx, w, p))
        else:
            parts.append(_conv_mm(dx, w, strides, pads))
    if not isinstance(dw, jax.custom_derivatives.SymbolicZero):
        if _winograd_applies(x.shape, w.shape, strides, pads):
            parts.append(_kernel_tangent_winograd(x, dw, p))
        else:
            parts.append(_kernel_tangent(x, dw, p, strides, pads))
    dy = parts[0] + parts[1] if len(parts) == 2 else parts[0] if parts else jnp.zeros_like(y)
    return y, dy


def conv2d(
    x: Float[Array, "b h w c"],
    w: Float[Array, "kh kw c o"],
    window_strides: Sequence[int] = (1, 1),
    padding: Any = "SAME",
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = _DN,
    feature_group_count: int = 1,
    precision: Any = None,
    **kwargs,
) -> Float[Array, "b ho wo o"]:
    """``lax.conv_general_dilated`` (same signature, usable as ``nnx.Conv``'s
    ``conv_general_dilated``), with the matmul kernel gradient (see above) where it applies:
    2-D NHWC / HWIO, no dilation, one feature group, default precision; 3x3, stride 1, pad 1
    layers of even inputs of >= 16x16 pixels by Winograd's F(2x2, 3x3) on the CPU."""
    plain = (
        x.ndim == 4
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1
        and precision is None
        and all(v is None for v in kwargs.values())
        and jax.lax.conv_dimension_numbers(x.shape, w.shape, dimension_numbers)
        == jax.lax.conv_dimension_numbers(x.shape, w.shape, _DN)
    )
    if not (plain and _matmul_kernel_grad()):
        return jax.lax.conv_general_dilated(
            x, w, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, precision=precision, **kwargs,
        )  # fmt: skip
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv_mm(x, w, strides, pads)


# ----------------------------------------------------------------------------------------------
# A fusion barrier for the residual stream on the CPU (issue #13).
#
# A residual block's input is the previous block's ``skip_rescale`` sum, an elementwise
# expression; in the backward pass its cotangent is likewise an elementwise sum of the skip
# path's and the branch's contributions (GroupNorm's backward, ...), which depend on the next
# block's. XLA:CPU fuses such cheap elementwise producers into every consumer instead of writing
# them once, so each block's fusions recompute the chain of all the blocks before it (forward)
# or after it (backward): in CLD's NCSN++ step, backward fusions of 160-240 operands, ~1.3 s of
# op time of a ~9 s step (docs/networks.md). ``fusion_barrier(x, p)`` is the identity computed
# as a ``lax.cond`` on a runtime scalar ``p`` (both branches the identity), in the value and in
# the tangent (so in the cotangent too): XLA neither fuses across a conditional nor folds a
# runtime predicate, so the stream and its cotangent are written once per block. (XLA:CPU
# removes ``optimization_barrier`` before fusion, and JAX drops a cond whose branches are the
# same function.) ``p`` must be replicated (a parameter's entry), so the predicate needs no
# communication when the batch is sharded. A ``custom_jvp``: forward mode and higher derivatives
# work. ``JAXDIFF_FUSION_BARRIER``: ``auto`` (default: on the CPU backend only; an accelerator
# reads a conditional's predicate on the host), ``on`` or ``off``.


def _fusion_barrier_on() -> bool:
    return _cpu_switch("JAXDIFF_FUSION_BARRIER", "on", "off")


def _cond_identity(p: Array, x: Array) -> Array:
    # the branches differ in form only (JAX drops a cond of two equal branches)
    return jax.lax.cond(p != 0.5, lambda t: t, lambda t: t * 1.0, x)


@jax.custom_jvp
def _barrier(x: Array, p: Array) -> Array:
    return _cond_identity(p, x)


@_barrier.defjvp
def _barrier_jvp(primals, tangents):
    (x, p), (dx, _) = primals, tangents
    return _barrier(x, p), _cond_identity(p, dx)


def fusion_barrier(x: Array, p: Array) -> Array:
    """``x``, written once here (and its tangent / cotangent) on the CPU: see above. ``p``: any
    replicated runtime scalar (e.g. a weight's first entry), only read."""
    if not _fusion_barrier_on():
        return x
    return _barrier(x, jnp.asarray(p, jnp.float32).reshape(-1)[0])


# ----------------------------------------------------------------------------------------------
# Initialisation (DDPM's variance_scaling(scale, fan_avg, uniform); scale 0 means 1e-10).


def default_init(scale: float = 1.0) -> Callable:
    """DDPM / score_sde initialiser; ``scale=0`` gives a near-zero (1e-10) init as the papers do."""
    return nnx.initializers.variance_scaling(scale if scale > 0 else 1e-10, "fan_avg", "uniform")


def conv(
    cin: int,
    cout: int,
    k: int = 3,
    *,
    rngs: nnx.Rngs,
    init_scale: float = 1.0,
    use_bias: bool = True,
    stride: int = 1,
    padding: Any = "SAME",
    dtype: Dtype = jnp.float32,
) -> nnx.Conv:
    """A ``k x k`` conv with DDPM init, float32 parameters and compute dtype ``dtype``."""
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=(stride, stride),
        padding=padding,
        use_bias=use_bias,
        kernel_init=default_init(init_scale),
        bias_init=nnx.initializers.zeros,
        dtype=dtype,
        param_dtype=jnp.float32,
        conv_general_dilated=conv2d,
        rngs=rngs,
    )


def dense(
    din: int,
    dout: int,
    *,
    rngs: nnx.Rngs,
    init_scale: float = 1.0,
    use_bias: bool = True,
    dtype: Dtype = jnp.float32,
) -> nnx.Linear:
    """A dense layer (also score_sde's NIN: a 1x1 "network in network" over channels)."""
    return nnx.Linear(
        din,
        dout,
        use_bias=use_bias,
        kernel_init=default_init(init_scale),
        bias_init=nnx.initializers.zeros,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def dropout(x: Array, rate: float, key: jax.Array | None) -> Array:
    """Inverted dropout (mask: :func:`jaxdiff.rng.dropout_keep`); identity when ``key`` is None
    or ``rate == 0``."""
    if key is None or rate <= 0.0:
        return x
    keep = rng.dropout_keep(key, rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def skip_rescale(a: Array, b: Array, rescale: bool = True) -> Array:
    """Residual sum, divided by sqrt(2) when ``rescale`` (score_sde's ``skip_rescale``)."""
    return (a + b) / SQRT2 if rescale else a + b


def num_groups(c: int) -> int:
    """score_sde's group count: ``min(C // 4, 32)``."""
    return max(min(c // 4, 32), 1)


# ----------------------------------------------------------------------------------------------
# Normalisation: GroupNorm, adaptive GroupNorm (DDGAN), PixelNorm, mapping network.


def group_norm_stats(x: Float[Array, "b h w c"], groups: int, eps: float) -> Array:
    """Normalises each group of channels over (h, w, c/groups), in float32.

    The statistics are per-channel means over the pixels (a reduction that keeps the channel axis
    contiguous) and then means over each group's channels. Reduced in one go over (h, w,
    c/groups) of a ``(b, h, w, groups, c/groups)`` view, the inner axis is the group's few
    channels: XLA:CPU ran those reductions (and their gradients) at 2-5 GB/s, the GroupNorm's
    forward and backward 1.6-2.3x slower than now (issue #13, docs/networks.md).
    """
    b, h, w, c = x.shape
    k = c // groups
    xf = x.astype(jnp.float32).reshape(b, h * w, c)

    def group_mean(v: Array) -> Array:  # (b, hw, c) -> (b, 1, c): each channel's group's mean
        m = v.mean(axis=1).reshape(b, groups, k).mean(axis=-1)
        return jnp.broadcast_to(m[:, :, None], (b, groups, k)).reshape(b, 1, c)

    centred = xf - group_mean(xf)
    var = group_mean(jnp.square(centred))
    return (centred * jax.lax.rsqrt(var + eps)).reshape(b, h, w, c)


class GroupNorm(nnx.Module):
    """GroupNorm with ``min(C//4, 32)`` groups, eps 1e-6, float32 statistics, learnt affine."""

    def __init__(
        self,
        channels: int,
        groups: int | None = None,
        eps: float = 1e-6,
        *,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs
        self.groups = groups or num_groups(channels)
        self.eps = eps
        self.dtype = dtype
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h w c"]:
        y = group_norm_stats(x, self.groups, self.eps) * self.scale[...] + self.bias[...]
        return y.astype(self.dtype)


class AdaptiveGroupNorm(nnx.Module):
    """DDGAN's AdaGN: ``gamma(w) * GN(x) + beta(w)`` with ``[gamma, beta] = Dense(w)``.

    The GroupNorm has no affine parameters; the style Dense's bias is initialised to gamma = 1,
    beta = 0, so a zero modulation (zero style weights or w = 0) is exactly GroupNorm.
    """

    def __init__(
        self,
        channels: int,
        style_dim: int,
        groups: int | None = None,
        eps: float = 1e-6,
        *,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.groups = groups or num_groups(channels)
        self.eps = eps
        self.dtype = dtype
        self.style = dense(style_dim, 2 * channels, rngs=rngs)  # float32 modulation
        self.style.bias.set_value(jnp.concatenate([jnp.ones(channels), jnp.zeros(channels)]))

    def __call__(
        self, x: Float[Array, "b h w c"], w: Float[Array, "b s"]
    ) -> Float[Array, "b h w c"]:
        gamma, beta = jnp.split(self.style(w.astype(jnp.float32)), 2, axis=-1)
        y = group_norm_stats(x, self.groups, self.eps)
        return (gamma[:, None, None, :] * y + beta[:, None, None, :]).astype(self.dtype)


def pixel_norm(z: Float[Array, "b d"], eps: float = 1e-8) -> Float[Array, "b d"]:
    """StyleGAN's PixelNorm: ``z / sqrt(mean(z^2) + eps)`` over the feature axis."""
    return z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + eps)


class MappingNetwork(nnx.Module):
    """DDGAN's z mapping: PixelNorm -> Dense(nz, d) -> SiLU -> n_mlp x [Dense(d, d) -> SiLU]."""

    def __init__(self, nz: int = 100, z_emb_dim: int = 256, n_mlp: int = 4, *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [dense(nz if i == 0 else z_emb_dim, z_emb_dim, rngs=rngs) for i in range(n_mlp + 1)]
        )

    def __call__(self, z: Float[Array, "b nz"]) -> Float[Array, "b d"]:
        h = pixel_norm(z.astype(jnp.float32))
        for layer in self.layers:
            h = jax.nn.silu(layer(h))
        return h


# ----------------------------------------------------------------------------------------------
# FIR up/down-sampling (upfirdn2d of StyleGAN2 / score_sde with the [1, 3, 3, 1] filter).


def fir_kernel(k: Sequence[float] = (1, 3, 3, 1), gain: float = 1.0) -> np.ndarray:
    """Separable FIR filter: outer product of ``k`` normalised to sum to ``gain``."""
    k1 = np.asarray(k, np.float32)
    k2 = np.outer(k1, k1) if k1.ndim == 1 else k1
    return (k2 / k2.sum() * gain).astype(np.float32)


def _separable_taps(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(kv, kh)`` with ``kernel == outer(kv, kh)`` if the 2-D kernel has rank one, else None."""
    u, sv, vt = np.linalg.svd(np.asarray(kernel, np.float64))
    if sv.size > 1 and sv[1] > 1e-7 * sv[0]:
        return None
    return u[:, 0] * np.sqrt(sv[0]), vt[0] * np.sqrt(sv[0])


def _upfirdn_1d(x: Array, taps: np.ndarray, axis: int, up: int, down: int, pad) -> Array:
    """upfirdn along one axis with shifted, strided slices (no depthwise conv)."""
    cfg = [(0, 0, 0)] * x.ndim
    cfg[axis] = (pad[0], pad[1] + up - 1, up - 1)  # zero-insert (after every sample) + pad
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype), cfg)
    k = len(taps)
    n_out = (xp.shape[axis] - k) // down + 1
    flipped = taps[::-1]  # true convolution
    out = None
    for i in range(k):
        if flipped[i] == 0.0:
            continue
        sl = jax.lax.slice_in_dim(xp, i, i + (n_out - 1) * down + 1, stride=down, axis=axis)
        term = sl * jnp.asarray(flipped[i], x.dtype)
        out = term if out is None else out + term
    return out


def upfirdn2d(
    x: Float[Array, "b h w c"],
    kernel: np.ndarray,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> Float[Array, "b ho wo c"]:
    """Zero-insert upsample by ``up``, pad, filter with ``kernel`` (true convolution), keep every
    ``down``-th sample; each channel independently. Same semantics as scipy.signal.upfirdn in 2D.

    A separable (rank-one) kernel, as every FIR kernel of the zoo is, runs as two 1-D passes of
    shifted strided slices: XLA's CPU backend is slow on depthwise convolutions and slower still
    on their gradients (measured 3-8x on the DDGAN digits nets); other kernels use the conv.
    """
    taps = _separable_taps(kernel)
    if taps is not None:
        y = _upfirdn_1d(x, taps[0], 1, up, down, pad)
        return _upfirdn_1d(y, taps[1], 2, up, down, pad)
    c = x.shape[-1]
    kh = kernel.shape[0]
    w = jnp.asarray(kernel[::-1, ::-1], x.dtype)
    w = jnp.broadcast_to(w[:, :, None, None], (kh, kernel.shape[1], 1, c))
    # lhs_dilation inserts up-1 zeros *between* samples; upfirdn also appends them after the last.
    padding = ((pad[0], pad[1] + up - 1), (pad[0], pad[1] + up - 1))
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(down, down),
        padding=padding,
        lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


def upsample_2d(
    x: Float[Array, "b h w c"], k: Sequence[float] = (1, 3, 3, 1), factor: int = 2
) -> Float[Array, "b h2 w2 c"]:
    """FIR upsampling by ``factor`` (gain factor^2 so that constants are preserved)."""
    kern = fir_kernel(k, factor**2)
    p = kern.shape[0] - factor
    return upfirdn2d(x, kern, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(
    x: Float[Array, "b h w c"], k: Sequence[float] = (1, 3, 3, 1), factor: int = 2
) -> Float[Array, "b h2 w2 c"]:
    """FIR downsampling by ``factor`` (anti-aliasing filter, then decimation)."""
    kern = fir_kernel(k)
    p = kern.shape[0] - factor
    return upfirdn2d(x, kern, down=factor, pad=((p + 1) // 2, p // 2))


def naive_upsample_2d(x: Float[Array, "b h w c"], factor: int = 2) -> Array:
    """Nearest-neighbour upsampling."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def naive_downsample_2d(x: Float[Array, "b h w c"], factor: int = 2) -> Array:
    """Average pooling."""
    b, h, w, c = x.shape
    return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


class FIRConv(nnx.Module):
    """StyleGAN2's fused resampling conv (score_sde ``up_or_down_sampling.Conv2d``).

    ``up``: a stride-2 transposed conv with the kernel, then the FIR filter (gain 4).
    ``down``: the FIR filter, then a stride-2 VALID conv. Padding is applied once.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 3,
        *,
        up: bool = False,
        down: bool = False,
        fir: Sequence[float] = (1, 3, 3, 1),
        init_scale: float = 1.0,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        assert not (up and down) and k % 2 == 1
        self.up, self.down, self.k, self.fir, self.dtype = up, down, k, tuple(fir), dtype
        self.kernel = nnx.Param(default_init(init_scale)(rngs.params(), (k, k, cin, cout)))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b ho wo o"]:
        x = x.astype(self.dtype)
        w = self.kernel[...].astype(self.dtype)
        dn = ("NHWC", "HWIO", "NHWC")
        if self.up:
            kern = fir_kernel(self.fir, 4.0)
            # transposed stride-2 conv == conv of the zero-inserted input with a "full" padding
            y = jax.lax.conv_general_dilated(
                x, w, (1, 1), ((self.k - 1,) * 2,) * 2, lhs_dilation=(2, 2), dimension_numbers=dn
            )
            p = (kern.shape[0] - 2) - (self.k - 1)
            y = upfirdn2d(y, kern, pad=((p + 1) // 2 + 1, p // 2 + 1))
        elif self.down:
            kern = fir_kernel(self.fir)
            p = (kern.shape[0] - 2) + (self.k - 1)
            y = upfirdn2d(x, kern, pad=((p + 1) // 2, p // 2))
            y = conv2d(y, w, (2, 2), "VALID", dimension_numbers=dn)
        else:
            y = conv2d(x, w, (1, 1), "SAME", dimension_numbers=dn)
        return y + self.bias[...].astype(self.dtype)


class Upsample(nnx.Module):
    """score_sde's Upsample: nearest (+3x3 conv) or FIR (+fused conv)."""

    def __init__(
        self,
        cin: int,
        cout: int | None = None,
        *,
        with_conv: bool = False,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        cout = cout or cin
        self.fir, self.fir_k, self.with_conv = fir, tuple(fir_kernel), with_conv
        self.conv = (
            (
                FIRConv(cin, cout, up=True, fir=fir_kernel, dtype=dtype, rngs=rngs)
                if fir
                else conv(cin, cout, 3, dtype=dtype, rngs=rngs)
            )
            if with_conv
            else None
        )

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h2 w2 o"]:
        if self.fir:
            return self.conv(x) if self.with_conv else upsample_2d(x, self.fir_k)
        h = naive_upsample_2d(x)
        return self.conv(h) if self.with_conv else h


class Downsample(nnx.Module):
    """score_sde's Downsample: avg-pool / stride-2 conv, or FIR (+fused conv)."""

    def __init__(
        self,
        cin: int,
        cout: int | None = None,
        *,
        with_conv: bool = False,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        cout = cout or cin
        self.fir, self.fir_k, self.with_conv = fir, tuple(fir_kernel), with_conv
        self.conv = (
            (
                FIRConv(cin, cout, down=True, fir=fir_kernel, dtype=dtype, rngs=rngs)
                if fir
                # score_sde pads one row / column at the bottom / right, then a VALID conv
                else conv(cin, cout, 3, stride=2, padding=((0, 1), (0, 1)), dtype=dtype, rngs=rngs)
            )
            if with_conv
            else None
        )

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h2 w2 o"]:
        if self.with_conv:
            return self.conv(x)
        return downsample_2d(x, self.fir_k) if self.fir else naive_downsample_2d(x)


# ----------------------------------------------------------------------------------------------
# Residual blocks (score_sde's ResnetBlockDDPMpp / ResnetBlockBigGANpp, DDGAN's AdaGN variants).


class _ResBlockBase(nnx.Module):
    def _norms(self, cin, cout, zemb_dim, dtype, rngs):
        if zemb_dim:
            self.norm0 = AdaptiveGroupNorm(cin, zemb_dim, dtype=dtype, rngs=rngs)
            self.norm1 = AdaptiveGroupNorm(cout, zemb_dim, dtype=dtype, rngs=rngs)
        else:
            self.norm0 = GroupNorm(cin, dtype=dtype)
            self.norm1 = GroupNorm(cout, dtype=dtype)
        self.adaptive = bool(zemb_dim)

    def _norm(self, norm, h, zemb):
        return norm(h, zemb) if self.adaptive else norm(h)


class ResBlockDDPM(_ResBlockBase):
    """DDPM residual block: GN-act-conv (+Dense(act(temb))) GN-act-dropout-conv, NIN shortcut.

    With ``zemb_dim`` both GroupNorms are adaptive (DDGAN's ``ResnetBlockDDPMpp_Adagn``).
    """

    def __init__(
        self,
        cin: int,
        cout: int | None = None,
        *,
        temb_dim: int | None = None,
        zemb_dim: int | None = None,
        dropout: float = 0.1,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
        conv_shortcut: bool = False,
        act: Callable = jax.nn.silu,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        cout = cout or cin
        self._norms(cin, cout, zemb_dim, dtype, rngs)
        self.conv0 = conv(cin, cout, 3, dtype=dtype, rngs=rngs)
        self.temb = dense(temb_dim, cout, dtype=dtype, rngs=rngs) if temb_dim else None
        self.conv1 = conv(cout, cout, 3, init_scale=init_scale, dtype=dtype, rngs=rngs)
        if cin == cout:
            self.shortcut = None
        elif conv_shortcut:
            self.shortcut = conv(cin, cout, 3, dtype=dtype, rngs=rngs)
        else:
            self.shortcut = dense(cin, cout, init_scale=0.1, dtype=dtype, rngs=rngs)
        self.rate, self.rescale, self.act, self.dtype = dropout, skip_rescale, act, dtype

    def __call__(
        self,
        x: Float[Array, "b h w c"],
        temb: Float[Array, "b e"] | None = None,
        zemb: Float[Array, "b s"] | None = None,
        *,
        key: jax.Array | None = None,
    ) -> Float[Array, "b h w o"]:
        x = fusion_barrier(x.astype(self.dtype), self.conv0.kernel[...])
        h = self.conv0(self.act(self._norm(self.norm0, x, zemb)))
        if self.temb is not None and temb is not None:
            h = h + self.temb(self.act(temb))[:, None, None, :]
        h = self.act(self._norm(self.norm1, h, zemb))
        h = self.conv1(dropout(h, self.rate, key))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return skip_rescale(x, h, self.rescale)


class ResBlockBigGAN(_ResBlockBase):
    """BigGAN residual block with optional up/down-sampling of both paths (FIR or naive),
    1x1-conv shortcut when channels change or the resolution changes."""

    def __init__(
        self,
        cin: int,
        cout: int | None = None,
        *,
        up: bool = False,
        down: bool = False,
        temb_dim: int | None = None,
        zemb_dim: int | None = None,
        dropout: float = 0.1,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
        act: Callable = jax.nn.silu,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        cout = cout or cin
        self._norms(cin, cout, zemb_dim, dtype, rngs)
        self.conv0 = conv(cin, cout, 3, dtype=dtype, rngs=rngs)
        self.temb = dense(temb_dim, cout, dtype=dtype, rngs=rngs) if temb_dim else None
        self.conv1 = conv(cout, cout, 3, init_scale=init_scale, dtype=dtype, rngs=rngs)
        self.shortcut = (
            conv(cin, cout, 1, dtype=dtype, rngs=rngs) if (cin != cout or up or down) else None
        )
        self.up, self.down, self.fir, self.fir_k = up, down, fir, tuple(fir_kernel)
        self.rate, self.rescale, self.act, self.dtype = dropout, skip_rescale, act, dtype

    def _resample(self, x):
        if self.up:
            return upsample_2d(x, self.fir_k) if self.fir else naive_upsample_2d(x)
        if self.down:
            return downsample_2d(x, self.fir_k) if self.fir else naive_downsample_2d(x)
        return x

    def __call__(
        self,
        x: Float[Array, "b h w c"],
        temb: Float[Array, "b e"] | None = None,
        zemb: Float[Array, "b s"] | None = None,
        *,
        key: jax.Array | None = None,
    ) -> Float[Array, "b ho wo o"]:
        x = fusion_barrier(x.astype(self.dtype), self.conv0.kernel[...])
        h = self.act(self._norm(self.norm0, x, zemb))
        h, x = self._resample(h), self._resample(x)
        h = self.conv0(h)
        if self.temb is not None and temb is not None:
            h = h + self.temb(self.act(temb))[:, None, None, :]
        h = self.act(self._norm(self.norm1, h, zemb))
        h = self.conv1(dropout(h, self.rate, key))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return skip_rescale(x, h, self.rescale)


# ----------------------------------------------------------------------------------------------
# Self-attention over spatial positions (DDPM's AttnBlock as in score_sde's AttnBlockpp).


def spatial_attention(
    q: Float[Array, "b h w c"], k: Float[Array, "b h w c"], v: Float[Array, "b h w c"]
) -> Float[Array, "b h w c"]:
    """Single-head dot-product attention over the h*w positions, softmax in float32."""
    b, h, w, c = q.shape
    logits = jnp.einsum("bic,bjc->bij", q.reshape(b, h * w, c), k.reshape(b, h * w, c))
    attn = jax.nn.softmax(logits.astype(jnp.float32) * c**-0.5, axis=-1).astype(v.dtype)
    return jnp.einsum("bij,bjc->bic", attn, v.reshape(b, h * w, c)).reshape(b, h, w, c)


class AttnBlock(nnx.Module):
    """GN -> q, k, v (NIN) -> attention -> NIN (init_scale) -> residual (/sqrt 2 if rescale)."""

    def __init__(
        self,
        channels: int,
        *,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        c = channels
        self.norm = GroupNorm(c, dtype=dtype)
        self.q = dense(c, c, init_scale=0.1, dtype=dtype, rngs=rngs)
        self.k = dense(c, c, init_scale=0.1, dtype=dtype, rngs=rngs)
        self.v = dense(c, c, init_scale=0.1, dtype=dtype, rngs=rngs)
        self.out = dense(c, c, init_scale=init_scale, dtype=dtype, rngs=rngs)
        self.rescale, self.dtype = skip_rescale, dtype

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h w c"]:
        x = x.astype(self.dtype)
        h = self.norm(x)
        h = self.out(spatial_attention(self.q(h), self.k(h), self.v(h)))
        return skip_rescale(x, h, self.rescale)


# ----------------------------------------------------------------------------------------------
# GAN layers: minibatch standard deviation (StyleGAN).


def minibatch_stddev(
    x: Float[Array, "b h w c"], group_size: int = 4, num_features: int = 1, eps: float = 1e-8
) -> Float[Array, "b h w c1"]:
    """Appends the across-group std (averaged over h, w, c) as ``num_features`` extra channels.

    Strided grouping as in the official code: the group is the *leading* axis of a reshape, so
    sample i is grouped with i + k * (b / group). Requires b divisible by ``min(b, group_size)``.
    """
    b, h, w, c = x.shape
    g = min(b, group_size)
    y = x.astype(jnp.float32).reshape(g, b // g, h, w, num_features, c // num_features)
    std = jnp.sqrt(jnp.var(y, axis=0) + eps)  # (b/g, h, w, F, c/F), biased variance
    std = std.mean(axis=(1, 2, 4))  # (b/g, F)
    std = jnp.tile(std, (g, 1))[:, None, None, :]
    std = jnp.broadcast_to(std, (b, h, w, num_features)).astype(x.dtype)
    return jnp.concatenate([x, std], axis=-1)


# ----------------------------------------------------------------------------------------------
# Spectral regularisation by power iteration (NVAE / LSGM ``sr_utils``), as a pure function.


WN_EPS = 1e-5  # added to ||v|| in NVAE's weight normalisation


def weight_norm_kernel(v: Float[Array, "... ci co"], log_g: Float[Array, " co"]) -> Array:
    """NVAE's weight-normalised kernel ``exp(log_g) * v / (||v|| + 1e-5)``, the norm per output
    channel over every other axis (Salimans & Kingma 2016)."""
    n = jnp.sqrt(jnp.sum(v * v, axis=tuple(range(v.ndim - 1))))
    return jnp.exp(log_g) * v / (n + WN_EPS)


def effective_kernels(params: Any) -> Any:
    """``params`` with every weight-normalised ``kernel`` (a dict holding ``kernel`` and
    ``log_weight_norm``) replaced by the kernel the layer applies; other leaves unchanged."""
    if not isinstance(params, dict):
        return params
    out = {k: effective_kernels(v) for k, v in params.items()}
    if "kernel" in out and "log_weight_norm" in out and out["log_weight_norm"] is not None:
        out["kernel"] = weight_norm_kernel(out["kernel"], out["log_weight_norm"])
    return out


def _is_kernel(path: tuple, leaf: Array) -> bool:
    name = str(path[-1]) if path else ""
    return leaf.ndim >= 2 and "kernel" in name


def _kernel_matrix(w: Array) -> Array:
    """(..., in, out) kernel -> (out, in * prod(...)) matrix, as PyTorch's weight.view(out, -1)."""
    return jnp.moveaxis(w, -1, 0).reshape(w.shape[-1], -1).astype(jnp.float32)


def _normalize(v: Array, eps: float = 1e-3) -> Array:
    return v / jnp.maximum(jnp.linalg.norm(v), eps)


def spectral_state_init(params: Any, key: jax.Array) -> dict[str, tuple[Array, Array]]:
    """Random unit (u, v) singular-vector guesses for every conv/dense kernel of ``params``."""
    state = {}
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for i, (path, leaf) in enumerate(leaves):
        if _is_kernel(path, leaf):
            m = _kernel_matrix(leaf)
            ku, kv = jax.random.split(jax.random.fold_in(key, i))
            state[jax.tree_util.keystr(path)] = (
                _normalize(jax.random.normal(ku, (m.shape[0],))),
                _normalize(jax.random.normal(kv, (m.shape[1],))),
            )
    return state


def spectral_regularizer(
    params: Any, state: dict[str, tuple[Array, Array]], num_iter: int = 4
) -> tuple[Float[Array, ""], dict[str, tuple[Array, Array]]]:
    """NVAE's spectral regulariser ``sum_l sigma_max(W_l)`` estimated by power iteration.

    Runs ``num_iter`` power iterations (40 on the first call in NVAE) from the threaded state
    (u, v are not differentiated), then returns ``(sum_l u^T W_l v, new_state)``; the loss is
    differentiable in the kernels. Thread ``new_state`` into the next call. Weight-normalised
    layers are regularised through the kernel they apply (:func:`effective_kernels`), as NVAE
    does, so the gradient reaches both ``kernel`` and ``log_weight_norm``.
    """
    total = jnp.zeros((), jnp.float32)
    new_state = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(effective_kernels(params))[0]:
        name = jax.tree_util.keystr(path)
        if name not in state:
            continue
        m = _kernel_matrix(leaf)
        msg = jax.lax.stop_gradient(m)
        u, v = state[name]

        def body(_, uv, msg=msg):
            u, _v = uv
            v = _normalize(msg.T @ u)
            return _normalize(msg @ v), v

        u, v = jax.lax.fori_loop(0, num_iter, body, (u, v))
        new_state[name] = (u, v)
        total = total + u @ m @ v
    return total, new_state


def norm_scale_penalty(params: Any) -> Float[Array, ""]:
    """NVAE's companion term ``sum max|gamma|`` over the normalisation layers' scales."""
    total = jnp.zeros((), jnp.float32)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(p, "key", p)) for p in path]
        if len(keys) >= 2 and keys[-1] == "scale" and "norm" in keys[-2]:
            total = total + jnp.max(jnp.abs(leaf))
    return total
