"""LSGM's IAF cells (``--num_nf``): the masks against LSGM's channel_mask on fixed cases, the
flow's log-determinant against autodiff of its Jacobian, the autoregressive order of each cell,
and the NVAE's log q at the pre-flow sample."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff.nets.nvae_flows import AR_EXPANSION, PairedCellAR, ar_mask, channel_mask


def test_channel_mask_fixed_cases():
    """LSGM's channel_mask written out: 2 -> 4 channels without the diagonal, 4 -> 2 with it,
    depthwise with and without."""
    np.testing.assert_array_equal(channel_mask(2, 1, 4, True), [[0, 0], [0, 0], [1, 0], [1, 0]])
    np.testing.assert_array_equal(channel_mask(2, 1, 4, False), [[1, 0], [1, 0], [1, 1], [1, 1]])
    np.testing.assert_array_equal(channel_mask(4, 1, 2, False), [[1, 1, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(channel_mask(4, 1, 2, True), [[0, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(channel_mask(3, 3, 3, False), np.ones((3, 1)))
    np.testing.assert_array_equal(channel_mask(3, 3, 3, True), np.zeros((3, 1)))


def test_spatial_mask_sees_only_earlier_pixels():
    m = ar_mask(3, 1, 1, 1, zero_diag=True, mirror=False)[..., 0, 0]
    np.testing.assert_array_equal(m, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    m = ar_mask(3, 1, 1, 1, zero_diag=False, mirror=True)[..., 0, 0]
    np.testing.assert_array_equal(m, [[0, 0, 0], [0, 1, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="odd"):
        ar_mask(2, 1, 1, 1, zero_diag=False, mirror=False)


def _strong_pair(nz, seed):
    """A PairedCellAR with unit weight norms (LSGM initialises mu's 10x smaller), so that the
    couplings the masks allow are large and a wrong mask shows in the Jacobian."""
    pair = PairedCellAR(nz, rngs=nnx.Rngs(seed))
    for _, m in nnx.iter_graph(pair):
        if hasattr(m, "log_weight_norm") and m.log_weight_norm is not None:
            m.log_weight_norm[...] = jnp.zeros_like(m.log_weight_norm[...])
    return pair


@pytest.mark.parametrize("nz", [1, 3])
def test_log_det_is_the_log_abs_det_of_the_autodiff_jacobian(nz):
    h = w = 3
    pair = _strong_pair(nz, 0)
    z = jax.random.normal(jax.random.key(1), (1, h, w, nz))

    def flow(v):
        return pair(v.reshape(1, h, w, nz))[0].reshape(-1)

    jac = np.asarray(jax.jit(jax.jacfwd(flow))(z.reshape(-1)), np.float64)
    sign, logdet = np.linalg.slogdet(jac)
    _, ld = pair(z)
    assert sign > 0
    np.testing.assert_allclose(logdet, float(ld.sum()), atol=1e-4)
    # the flow is not the identity: the masks let earlier variables through
    assert np.abs(jac - np.eye(jac.shape[0])).max() > 0.05


@pytest.mark.parametrize("mirror", [False, True])
def test_each_cell_is_autoregressive_in_raster_order(mirror):
    """cell1's Jacobian is unit lower-triangular in raster order (pixels row-major, channels
    within a pixel); cell2's (mirrored) in the reversed pixel order with channels forward."""
    h = w = 3
    nz = 2
    pair = _strong_pair(nz, 2)
    cell = pair.cell2 if mirror else pair.cell1
    z = jax.random.normal(jax.random.key(3), (1, h, w, nz))
    jac_fn = jax.jit(jax.jacfwd(lambda v: cell(v.reshape(1, h, w, nz))[0].reshape(-1)))
    jac = np.asarray(jac_fn(z.reshape(-1)))
    if mirror:  # reverse the pixel order, keep the channel order
        idx = np.arange(h * w * nz).reshape(h * w, nz)[::-1].reshape(-1)
        jac = jac[np.ix_(idx, idx)]
    np.testing.assert_allclose(np.diag(jac), 1.0, atol=1e-6)
    assert np.abs(np.triu(jac, 1)).max() == 0.0
    assert np.abs(np.tril(jac, -1)).max() > 0.05


@pytest.mark.slow  # ~40 s of CPU: two NVAE initialisations and a compiled encoder pass
def test_nvae_log_q_is_the_pre_flow_gaussian_density():
    """With num_nf > 0 the groups are flowed samples; log q is N(z_q; mu, sigma) minus the
    (zero) log-det, as LSGM's nvae.py; the flow's parameter count is the official one."""
    from jaxdiff.nets.vae import NVAE
    from jaxdiff.objectives import lsgm as L

    nz = 4
    kw = dict(image_size=16, in_ch=1, out_ch=1, num_channels=8, channel_mult=(1, 2),
              num_groups_per_scale=2, num_latent_per_group=nz, num_cell_per_cond_enc=1,
              num_cell_per_cond_dec=1, arch_instance="res_bnswish", use_se=False)  # fmt: skip
    vae = NVAE(num_nf=2, rngs=nnx.Rngs(0), **kw)
    x = jax.random.uniform(jax.random.key(4), (3, 16, 16, 1), minval=-1, maxval=1)
    graph, params = nnx.split(vae)
    encode = jax.jit(lambda p, x, k: nnx.merge(graph, p).encode(x, k))
    enc = encode(nnx.to_pure_dict(params), x, jax.random.split(jax.random.key(5), 3))
    for z, zq, ld in zip(enc["z"], enc["z_q"], enc["log_det"], strict=True):
        assert np.abs(np.asarray(z - zq)).max() > 1e-4  # the flow moved the sample
        np.testing.assert_array_equal(np.asarray(ld), 0.0)
    plain = NVAE(num_nf=0, rngs=nnx.Rngs(0), **kw)
    n_flow = sum(x.size for x in jax.tree.leaves(nnx.state(vae.nf_cells)))
    hid = AR_EXPANSION * nz
    per_cell = (9 * nz * hid + hid) + (25 * hid + hid) + (hid * nz + 2 * nz)  # weight + wn (+ b)
    assert n_flow == 2 * 2 * 2 * per_cell  # groups x num_nf x (cell1, cell2)
    n_all = sum(x.size for x in jax.tree.leaves(nnx.state(vae)))
    assert n_all - n_flow == sum(x.size for x in jax.tree.leaves(nnx.state(plain)))
    log_q = L.log_normal(enc["z_q"][0], enc["mu"][0], enc["log_sigma"][0])
    assert np.all(np.isfinite(np.asarray(log_q)))
