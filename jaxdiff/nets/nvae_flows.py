"""NVAE's inverse autoregressive flow cells as LSGM uses them (``--num_nf``; facts from NVlabs/LSGM
``layers/neural_ar_operations.py`` and ``layers/cells.py``).

Each latent group's posterior sample passes through ``num_nf`` ``PairedCellAR`` s: two
``CellAR`` s, the second with the spatial order mirrored. A ``CellAR`` is the additive
autoregressive shift ``z' = z - mu(z)`` (Kingma et al. 2016, Eq. 10 with unit scale; LSGM's
``use_mix_log_cdf`` is False): ``mu`` comes from masked convolutions (3x3 to 6x channels without
the diagonal, ELU, depthwise 5x5 with it, ELU, 1x1 back with it), so output channel c of pixel p
sees only the channels < c of p and every channel of the pixels before p in raster order
(reversed when mirrored). The Jacobian is unit-triangular: ``log|det| = 0``, and the official
code returns zeros; log q of the flowed sample is log q of the pre-flow Gaussian sample.

Every masked conv is weight-normalised over its masked kernel (``exp(g) w m / ||w m||``), with
``g`` initialised at ``log(||w m|| + 0.01)`` (times 0.1 for the ``mu`` conv) and PyTorch's
default initialisation of ``w``. Here ``w`` is stored already masked (its masked entries have
zero gradient, so they stay zero): the spectral regulariser's effective kernel
(``layers.effective_kernels``) is then the one the layer applies. An importer of the official
``weight`` multiplies it by ``ar_mask`` first.

Parameter names against the official state dict (cell ``k`` of ``nf_cells``; ``cell1`` / ``cell2``):
``conv.conv_expand`` = ``conv.convz.0``, ``conv.conv_dw`` = ``conv.convz.2``, ``mu.conv_0`` =
``mu.conv_0``; ``kernel`` (HWIO) = ``weight`` (OIHW) transposed, ``log_weight_norm`` (out,) =
``log_weight_norm`` (out, 1, 1, 1), ``bias`` = ``bias``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff.nets.layers import weight_norm_kernel

AR_EXPANSION = 6  # CellAR: ARInvertedResidual(num_z, ..., ex=6)


def channel_mask(cin: int, groups: int, cout: int, zero_diag: bool) -> np.ndarray:
    """(cout, cin // groups) mask of the centre tap: output block i (of cout / cin outputs, or
    input block i of cin / cout inputs) sees input channels up to i, excluding i if
    ``zero_diag``; a depthwise conv (groups == cin) sees its own channel unless ``zero_diag``."""
    if groups == cin:
        return np.full((cout, 1), 0.0 if zero_diag else 1.0, np.float32)
    if groups != 1 or (cin % cout and cout % cin):
        raise ValueError(
            f"masked conv needs groups 1 or cin, cin | cout or cout | cin: {cin, cout}"
        )
    mask = np.ones((cout, cin), np.float32)
    if cout >= cin:
        r = cout // cin
        for i in range(cin):
            mask[i * r : (i + 1) * r, i + 1 :] = 0
            if zero_diag:
                mask[i * r : (i + 1) * r, i] = 0
    else:
        r = cin // cout
        for i in range(cout):
            mask[i, (i + 1) * r :] = 0
            if zero_diag:
                mask[i, i * r : (i + 1) * r] = 0
    return mask


def ar_mask(k: int, cin: int, groups: int, cout: int, zero_diag: bool, mirror: bool) -> np.ndarray:
    """The (k, k, cin // groups, cout) HWIO mask of an autoregressive conv: taps above the
    centre row and left of the centre on its row, the centre tap by ``channel_mask``; mirrored
    (both spatial axes reversed) for the second cell of a pair."""
    if k % 2 != 1:
        raise ValueError(f"masked conv needs an odd kernel size, got {k}")
    m = (k - 1) // 2
    mask = np.ones((cout, cin // groups, k, k), np.float32)
    mask[:, :, m:, :] = 0
    mask[:, :, m, :m] = 1
    mask[:, :, m, m] = channel_mask(cin, groups, cout, zero_diag)
    if mirror:
        mask = mask[:, :, ::-1, ::-1]
    return np.ascontiguousarray(mask.transpose(2, 3, 1, 0))


class ARConv(nnx.Module):
    """LSGM's ``ARConv2d``: a masked, weight-normalised conv (stride 1, padding k // 2)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        *,
        groups: int = 1,
        use_bias: bool = False,
        zero_diag: bool,
        mirror: bool,
        init_coeff: float = 1.0,
        rngs: nnx.Rngs,
    ):
        self.spec = (k, cin, groups, cout, bool(zero_diag), bool(mirror))  # static: the mask
        mask = self.mask()
        bound = 1.0 / np.sqrt(k * k * cin // groups)
        v = jax.random.uniform(rngs.params(), mask.shape, jnp.float32, -bound, bound) * mask
        self.kernel = nnx.Param(v)
        g = jnp.log(jnp.sqrt(jnp.sum(v * v, axis=(0, 1, 2))) + 1e-2) + np.log(init_coeff)
        self.log_weight_norm = nnx.Param(g)
        b = jax.random.uniform(rngs.params(), (cout,), jnp.float32, -bound, bound)
        self.bias = nnx.Param(b) if use_bias else None
        self.groups, self.pad = groups, k // 2

    def mask(self) -> np.ndarray:
        """The layer's ``ar_mask``."""
        return ar_mask(*self.spec)

    def weight(self) -> Float[Array, "k k ci co"]:
        """The kernel the layer applies: masked, then weight-normalised."""
        return weight_norm_kernel(self.kernel[...] * self.mask(), self.log_weight_norm[...])

    def __call__(self, x: Float[Array, "b h w ci"]) -> Float[Array, "b h w co"]:
        p = self.pad
        y = jax.lax.conv_general_dilated(
            x.astype(jnp.float32),
            self.weight(),
            (1, 1),
            ((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.groups,
        )
        return y if self.bias is None else y + self.bias[...]


class ARInvertedResidual(nnx.Module):
    """Masked 3x3 conv to 6x channels (no diagonal), ELU, masked depthwise 5x5 (diagonal kept)."""

    def __init__(self, nz: int, *, mirror: bool, rngs: nnx.Rngs):
        hid = AR_EXPANSION * nz
        self.conv_expand = ARConv(nz, hid, 3, zero_diag=True, mirror=mirror, rngs=rngs)
        self.conv_dw = ARConv(
            hid, hid, 5, groups=hid, zero_diag=False, mirror=mirror, rngs=rngs
        )  # fmt: skip
        self.hidden = hid

    def __call__(self, z: Array) -> Array:
        return self.conv_dw(jax.nn.elu(self.conv_expand(z)))


class CellAR(nnx.Module):
    """``z' = z - mu(z)``, mu = masked 1x1 conv (init scale 0.1) of ELU(``ARInvertedResidual``);
    returns (z', log|det dz'/dz| = 0 per element)."""

    def __init__(self, nz: int, *, mirror: bool, rngs: nnx.Rngs):
        self.conv = ARInvertedResidual(nz, mirror=mirror, rngs=rngs)
        self.mu = ARELUConv(self.conv.hidden, nz, mirror=mirror, rngs=rngs)

    def __call__(self, z: Float[Array, "b h w c"]) -> tuple[Array, Array]:
        new = z - self.mu(self.conv(z))
        return new, jnp.zeros_like(new)


class ARELUConv(nnx.Module):
    """LSGM's ``ELUConv`` as CellAR's ``mu``: ELU, then a masked 1x1 conv with bias (``conv_0``),
    its weight norm initialised 0.1 times smaller."""

    def __init__(self, cin: int, cout: int, *, mirror: bool, rngs: nnx.Rngs):
        self.conv_0 = ARConv(
            cin, cout, 1, use_bias=True, zero_diag=False, mirror=mirror, init_coeff=0.1, rngs=rngs
        )

    def __call__(self, x: Array) -> Array:
        return self.conv_0(jax.nn.elu(x))


class PairedCellAR(nnx.Module):
    """Two ``CellAR`` s, the second mirrored; returns (z', summed log-det per element)."""

    def __init__(self, nz: int, *, rngs: nnx.Rngs):
        self.cell1 = CellAR(nz, mirror=False, rngs=rngs)
        self.cell2 = CellAR(nz, mirror=True, rngs=rngs)

    def __call__(self, z: Float[Array, "b h w c"]) -> tuple[Array, Array]:
        z, ld1 = self.cell1(z)
        z, ld2 = self.cell2(z)
        return z, ld1 + ld2
