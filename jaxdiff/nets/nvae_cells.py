"""NVAE's building blocks as used in LSGM (facts from NVlabs/LSGM ``layers/neural_operations.py``,
``layers/cells.py``): weight-normalised convolutions, batch normalisation, BN-Swish-conv and
depthwise "mbconv" branches, the residual cell with squeeze-and-excitation and its skips.

Conventions: images are NHWC; parameters are float32, activations in the compute ``dtype``,
normalisation statistics in float32. Initialisation follows PyTorch's defaults (kernels and biases
U(+-1/sqrt(fan_in))), so the weight-norm's log-scale starts at log(||v|| + 0.01) as in NVAE.

BatchNorm (``BatchNorm``) normalises with the statistics of the batch it sees in training mode, as
PyTorch's ``train()``. With ``running_stats=True`` (LSGM's method turns it on) it also keeps
PyTorch's running averages (``running_mean`` / ``running_var``, ``nnx.BatchStat`` variables, the
names of the official buffers), updated in training mode with NVAE's momentum 0.05, and uses them
in evaluation mode (``set_bn_mode``; LSGM's ``vae.eval()``). Under ``jax.jit`` with the batch
sharded over devices (``jaxdiff.train.parallel``), the batch mean is a global mean, i.e.
synchronised BN. In training mode a sample's output depends on the other samples of its batch, as
in LSGM's ``--vae_train_mode`` evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff.nets.layers import naive_upsample_2d, weight_norm_kernel

BN_EPS = 1e-5  # NVAE's BN_EPS
BN_MOMENTUM = 0.05  # LSGM layers/neural_operations.py: every BN has momentum 0.05
CELL_OPS = ("res_bnswish", "mconv_e6k5g0", "mconv_e3k5g0")


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class WNConv(nnx.Module):
    """NVAE's ``Conv2D``: a conv whose kernel is ``exp(g) * v / (||v|| + 1e-5)`` per output channel
    (weight normalisation, Salimans & Kingma 2016; ``g`` = ``log_weight_norm``, the norm is over
    (kh, kw, cin)), PyTorch padding ``k // 2``. ``weight_norm=False`` is a plain conv."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 3,
        *,
        stride: int = 1,
        groups: int = 1,
        use_bias: bool = True,
        weight_norm: bool = True,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        bound = 1.0 / np.sqrt(k * k * cin // groups)
        v = _uniform(rngs.params(), (k, k, cin // groups, cout), bound)
        self.kernel = nnx.Param(v)
        self.bias = nnx.Param(_uniform(rngs.params(), (cout,), bound)) if use_bias else None
        self.log_weight_norm = (
            nnx.Param(jnp.log(jnp.sqrt(jnp.sum(v * v, axis=(0, 1, 2))) + 1e-2))
            if weight_norm
            else None
        )
        self.stride, self.groups, self.pad, self.dtype = stride, groups, k // 2, dtype

    def weight(self) -> Float[Array, "k k ci co"]:
        """The effective (normalised) kernel."""
        v = self.kernel[...]
        if self.log_weight_norm is None:
            return v
        return weight_norm_kernel(v, self.log_weight_norm[...])

    def __call__(self, x: Float[Array, "b h w ci"]) -> Float[Array, "b h2 w2 co"]:
        p = self.pad
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            self.weight().astype(self.dtype),
            (self.stride, self.stride),
            ((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.groups,
        )
        return y if self.bias is None else y + self.bias[...].astype(self.dtype)


class BatchNorm(nnx.Module):
    """Batch normalisation over (b, h, w) with a learnt per-channel scale / bias (eps 1e-5).

    Training mode (``use_running_average`` False, the default) normalises with the batch's
    statistics (biased variance) and, with ``running_stats``, updates PyTorch's running averages
    (``torch.nn.BatchNorm2d`` / NVAE's ``SyncBatchNormSwish``, momentum ``BN_MOMENTUM``):
    ``running_mean <- (1 - m) running_mean + m mean``, ``running_var <- (1 - m) running_var +
    m n / (n - 1) var`` (the unbiased variance; n = b h w). Evaluation mode normalises with the
    running averages. The averages are not differentiated.
    """

    def __init__(self, channels: int, *, running_stats: bool = False, dtype=jnp.float32):
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        if running_stats:  # PyTorch's initial buffers
            self.running_mean = nnx.BatchStat(jnp.zeros((channels,), jnp.float32))
            self.running_var = nnx.BatchStat(jnp.ones((channels,), jnp.float32))
        self.running_stats = running_stats
        self.use_running_average = False
        self.momentum = BN_MOMENTUM
        self.dtype = dtype

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h w c"]:
        xf = x.astype(jnp.float32)
        if self.use_running_average:
            if not self.running_stats:
                raise ValueError("BatchNorm in evaluation mode needs running_stats=True")
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = xf.mean(axis=(0, 1, 2))
            var = jnp.square(xf - mean).mean(axis=(0, 1, 2))
            if self.running_stats:
                n = xf.shape[0] * xf.shape[1] * xf.shape[2]
                m = self.momentum
                unbiased = var * (n / max(n - 1, 1))
                sg = jax.lax.stop_gradient
                # `.value =` replaces the array; `[...] =` asks a tracer for its sharding, which
                # scans the whole jaxpr traced so far (quadratic: minutes for CelebA-HQ's NVAE)
                self.running_mean.value = (1 - m) * self.running_mean[...] + m * sg(mean)
                self.running_var.value = (1 - m) * self.running_var[...] + m * sg(unbiased)
        y = (xf - mean) * jax.lax.rsqrt(var + BN_EPS) * self.scale[...] + self.bias[...]
        return y.astype(self.dtype)


BN_STAT_NAMES = ("running_mean", "running_var")


def set_bn_mode(module: nnx.Module, train: bool) -> nnx.Module:
    """Every ``BatchNorm`` of ``module`` in training (batch statistics) or evaluation (running
    averages) mode; returns ``module``."""
    for _, m in nnx.iter_graph(module):
        if isinstance(m, BatchNorm):
            m.use_running_average = not train
    return module


def split_batch_stats(tree: dict) -> tuple[dict, dict]:
    """A pure parameter dict -> (trainable parameters, the BN running averages): the leaves
    named ``running_mean`` / ``running_var`` go to the second dict (same nesting, empty
    branches dropped)."""
    params, stats = {}, {}
    for k, v in tree.items():
        if isinstance(v, dict):
            p, s = split_batch_stats(v)
            params[k] = p
            if s:
                stats[k] = s
        elif k in BN_STAT_NAMES:
            stats[k] = v
        else:
            params[k] = v
    return params, stats


def merge_batch_stats(params: dict, stats: dict) -> dict:
    """Inverse of ``split_batch_stats``."""
    out = dict(params)
    for k, v in stats.items():
        out[k] = merge_batch_stats(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def upsample_bilinear_aligned(x: Float[Array, "b h w c"]) -> Float[Array, "b 2h 2w c"]:
    """2x bilinear upsampling with ``align_corners=True`` (PyTorch ``F.interpolate``): output pixel
    i samples the input at i (n - 1) / (2n - 1)."""

    def matrix(n: int) -> np.ndarray:
        src = np.arange(2 * n) * (n - 1) / max(2 * n - 1, 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        m = np.zeros((2 * n, n))
        np.add.at(m, (np.arange(2 * n), lo), 1.0 - (src - lo))
        np.add.at(m, (np.arange(2 * n), hi), src - lo)
        return m

    _, h, w, _ = x.shape
    y = jnp.einsum("ih,bhwc->biwc", jnp.asarray(matrix(h), x.dtype), x)
    return jnp.einsum("jw,biwc->bijc", jnp.asarray(matrix(w), x.dtype), y)


class BNSwishConv(nnx.Module):
    """``res_bnswish`` op: BN -> Swish -> [nearest 2x up] -> weight-normalised 3x3 conv (+bias);
    ``stride`` 2 downsamples, -1 upsamples."""

    def __init__(self, cin: int, cout: int, stride: int = 1, *, bn_stats=False, dtype, rngs):
        self.up = stride == -1
        self.norm = BatchNorm(cin, running_stats=bn_stats, dtype=dtype)
        self.conv = WNConv(cin, cout, 3, stride=abs(stride), dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        h = jax.nn.silu(self.norm(x))
        return self.conv(naive_upsample_2d(h) if self.up else h)


class InvertedResidual(nnx.Module):
    """``mconv_e{ex}k5g0`` op (MobileNetV2 block): [nearest 2x up] -> BN -> 1x1 expand to
    ``round(ex * cin)`` -> BN-Swish -> depthwise 5x5 -> BN-Swish -> 1x1 project -> BN. Its convs
    have no bias and no weight normalisation."""

    def __init__(
        self, cin: int, cout: int, stride: int = 1, ex: int = 6, *, bn_stats=False, dtype, rngs
    ):
        hid = int(round(cin * ex))
        kw = dict(use_bias=False, weight_norm=False, dtype=dtype, rngs=rngs)
        bn = dict(running_stats=bn_stats, dtype=dtype)
        self.up = stride == -1
        self.norm_in = BatchNorm(cin, **bn)
        self.conv_expand = WNConv(cin, hid, 1, **kw)
        self.norm_expand = BatchNorm(hid, **bn)
        self.conv_dw = WNConv(hid, hid, 5, stride=abs(stride), groups=hid, **kw)
        self.norm_dw = BatchNorm(hid, **bn)
        self.conv_project = WNConv(hid, cout, 1, **kw)
        self.norm_out = BatchNorm(cout, **bn)

    def __call__(self, x: Array) -> Array:
        h = self.norm_in(naive_upsample_2d(x) if self.up else x)
        h = jax.nn.silu(self.norm_expand(self.conv_expand(h)))
        h = jax.nn.silu(self.norm_dw(self.conv_dw(h)))
        return self.norm_out(self.conv_project(h))


class FactorizedReduce(nnx.Module):
    """Stride-2 skip of a down cell: Swish, then four 1x1 stride-2 weight-normalised convs on the
    input shifted by (0, 0), (1, 1), (0, 1), (1, 0) pixels, concatenated (cout/4 channels each,
    the last takes the remainder)."""

    def __init__(self, cin: int, cout: int, *, dtype, rngs):
        q = cout // 4
        outs = (q, q, q, cout - 3 * q)
        self.convs = nnx.List([WNConv(cin, o, 1, stride=2, dtype=dtype, rngs=rngs) for o in outs])

    def __call__(self, x: Array) -> Array:
        a = jax.nn.silu(x)
        shifted = (a, a[:, 1:, 1:], a[:, :, 1:], a[:, 1:, :])
        return jnp.concatenate([c(s) for c, s in zip(self.convs, shifted, strict=True)], axis=-1)


class UpSkip(nnx.Module):
    """Skip of an up cell: bilinear 2x upsampling (aligned corners), 1x1 weight-normalised conv
    without bias."""

    def __init__(self, cin: int, cout: int, *, dtype, rngs):
        self.conv = WNConv(cin, cout, 1, use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.conv(upsample_bilinear_aligned(x))


class SqueezeExcite(nnx.Module):
    """Squeeze-and-excitation (NVAE ``SE``): sigmoid gates from the spatial mean through
    Linear(c, max(c // 16, 4)) -> ReLU -> Linear, computed in float32."""

    def __init__(self, c: int, *, rngs: nnx.Rngs):
        r = max(c // 16, 4)
        b0, b1 = 1.0 / np.sqrt(c), 1.0 / np.sqrt(r)
        self.kernel0 = nnx.Param(_uniform(rngs.params(), (c, r), b0))
        self.bias0 = nnx.Param(_uniform(rngs.params(), (r,), b0))
        self.kernel1 = nnx.Param(_uniform(rngs.params(), (r, c), b1))
        self.bias1 = nnx.Param(_uniform(rngs.params(), (c,), b1))

    def __call__(self, x: Array) -> Array:
        s = x.astype(jnp.float32).mean(axis=(1, 2))
        s = jax.nn.relu(s @ self.kernel0[...] + self.bias0[...])
        g = jax.nn.sigmoid(s @ self.kernel1[...] + self.bias1[...])
        return x * g[:, None, None, :].astype(x.dtype)


class Cell(nnx.Module):
    """NVAE residual cell ``skip(x) + 0.1 * SE(branch(x))``.

    ``kind``: 'normal' (identity skip, cin == cout), 'down' (stride 2, ``FactorizedReduce`` skip)
    or 'up' (2x, ``UpSkip``). ``op``: 'res_bnswish' (branch = two ``BNSwishConv``) or
    'mconv_e6k5g0' / 'mconv_e3k5g0' (branch = one ``InvertedResidual`` with expansion 6 / 3).
    ``bn_stats``: the BatchNorms keep running averages (``BatchNorm``).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kind: str,
        op: str,
        use_se: bool = True,
        *,
        bn_stats: bool = False,
        dtype,
        rngs,
    ):
        stride = {"normal": 1, "down": 2, "up": -1}[kind]
        kw = dict(dtype=dtype, rngs=rngs)
        bkw = dict(bn_stats=bn_stats, **kw)
        if kind == "normal":
            assert cin == cout, (cin, cout)
            self.skip = None
        else:
            self.skip = (FactorizedReduce if kind == "down" else UpSkip)(cin, cout, **kw)
        if op == "res_bnswish":
            branch = [BNSwishConv(cin, cout, stride, **bkw), BNSwishConv(cout, cout, 1, **bkw)]
        elif op in ("mconv_e6k5g0", "mconv_e3k5g0"):
            branch = [InvertedResidual(cin, cout, stride, ex=int(op[7]), **bkw)]
        else:
            raise ValueError(f"unknown NVAE cell op {op!r}; known: {CELL_OPS}")
        self.branch = nnx.List(branch)
        self.se = SqueezeExcite(cout, rngs=rngs) if use_se else None

    def __call__(self, x: Array) -> Array:
        h = x
        for op in self.branch:
            h = op(h)
        if self.se is not None:
            h = self.se(h)
        return (x if self.skip is None else self.skip(x)) + 0.1 * h
