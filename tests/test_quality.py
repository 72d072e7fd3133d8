"""FID & co. end to end on the offline digits: reference statistics, samples, the protocol record.

Runs the real FID Inception (skipped only when no weights are installed: `jaxdiff fid-weights`).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import api
from jaxdiff.eval import inception, quality


@pytest.fixture(scope="module")
def model():
    try:
        return inception.load_inception()
    except FileNotFoundError as e:
        pytest.skip(f"no FID Inception weights: {e}")


class _Images:
    """A stand-in method whose samples are given images (or noise): pure sample_fn."""

    def __init__(self, images: np.ndarray | None, shape=(32, 32, 1)):
        self.images, self.shape = images, shape

    def sampling_params(self, state):
        return jnp.zeros(())

    def sample_fn(self, params, key, num):
        if self.images is None:
            x = jax.random.uniform(key, (num, *self.shape), minval=-1, maxval=1)
        else:
            x = jnp.asarray(self.images[:num])
        return x, jnp.asarray(0, jnp.int32)


class _Run(NamedTuple):
    config: Any
    method: Any
    state: Any
    data: Any


@pytest.mark.slow
def test_fid_of_held_out_digits_is_small_and_of_noise_large(model, tmp_path):
    from configs.vp.digits import get_config

    config = get_config()
    stats = str(tmp_path / "digits.npz")
    record = api.fid_stats(config, stats, num=64, batch=64)
    assert record["num"] == 64 and record["weights_sha256"] == model.sha256
    ref = quality.load_stats(stats)
    assert ref["mu"].shape == (2048,) and ref["features"].shape == (64, 2048)
    data = api.build.build_data(config)
    held_out = data.images(64, 64)
    digits = api.sample_quality(
        _Run(config, _Images(held_out), None, data), 64, stats, batch_size=64
    )
    noise = api.sample_quality(_Run(config, _Images(None), None, data), 64, stats, batch_size=64)
    # digits against other digits: far closer than uniform noise images
    assert digits["fid"] < 0.25 * noise["fid"], (digits["fid"], noise["fid"])
    assert noise["precision"] < 0.05 < digits["precision"]
    assert digits["kid"] < noise["kid"]
    assert digits["protocol"]["num_samples"] == 64 and "reference" in digits["protocol"]


def test_grey_images_become_rgb_uint8():
    x = np.linspace(-1, 1, 2 * 4 * 4).reshape(2, 4, 4, 1).astype(np.float32)
    y = quality.to_uint8_rgb(x)
    assert y.dtype == np.uint8 and y.shape == (2, 4, 4, 3)
    assert y.min() == 0 and y.max() == 255 and np.all(y[..., 0] == y[..., 2])


def test_stats_files_need_mu_and_sigma(tmp_path):
    np.savez(tmp_path / "bad.npz", m=np.zeros(3))
    with pytest.raises(ValueError, match="mu"):
        quality.load_stats(str(tmp_path / "bad.npz"))


@pytest.mark.slow
def test_fid_during_training_is_logged_and_the_best_kept(model, tmp_path):
    from configs.vp.digits import get_config

    config = get_config()
    stats = str(tmp_path / "digits.npz")
    api.fid_stats(config, stats, num=64, batch=64)
    for k, v in dict(num_steps=20, n_jitted_steps=10, ckpt_every=10, eval_every=10,
                     batch_size=16, log_every=10).items():  # fmt: skip
        config.training[k] = v
    config.model.nf = 8
    config.sampling.update(sampler="em", steps=3, num=4)
    config.eval.update(fid_num=16, fid_stats=stats, likelihood_examples=4)
    work = str(tmp_path / "run")
    _, summary = api.train(config, work, progress=False)
    rows = [json.loads(line) for line in open(f"{work}/metrics.jsonl")]
    fids = [r for r in rows if "eval/fid" in r]
    assert [r["step"] for r in fids] == [10] and np.isfinite(fids[0]["eval/fid"])
    assert fids[0]["eval/nfe"] == 4  # 3 EM steps and the denoising step
    assert api.best_record(work) == {"step": 10, "metric": "fid", "value": fids[0]["eval/fid"]}
    end = summary["eval"]  # the end of the run: FID with its protocol, test-split bits/dim
    assert end["protocol"]["num_samples"] == 16 and end["protocol"]["checkpoint_step"] == 20
    assert end["protocol"]["reference_sha256"] and np.isfinite(end["fid"])
    assert end["test_examples"] == 4 and end["test_bpd"] > 0


@pytest.mark.slow
def test_fid_of_digit_halves_is_stable_and_grows_with_blur(model):
    """Two random halves of 200 offline digits: FID small and about the same for three seeds;
    one half blurred more and more: FID against the other half grows monotonically (measured:
    halves 36.9 / 36.3 / 37.8, blurred 137.4 and 272.3)."""
    from scipy.ndimage import gaussian_filter

    from jaxdiff.data.images import digits_data
    from jaxdiff.eval import fid as F

    images = digits_data(resolution=32).images(0, 200)
    feats = quality.features(model, quality.batched(images, 100))["pool3"]

    def fid(a, b):
        return F.fid_from_stats(*F.feature_stats(a), *F.feature_stats(b))

    halves = []
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(200)
        halves.append(fid(feats[perm[:100]], feats[perm[100:]]))
    perm = np.random.default_rng(0).permutation(200)
    a, b = perm[:100], perm[100:]
    blurred = [halves[0]]
    for sigma in (1.4, 2.8):  # each blur costs 100 Inception passes
        x = gaussian_filter(images[b], sigma=(0, sigma, sigma, 0), mode="nearest")
        blurred.append(fid(feats[a], quality.features(model, quality.batched(x, 100))["pool3"]))
    assert max(halves) < 1.25 * min(halves), halves  # stable across the random splits
    assert all(x < y for x, y in zip(blurred, blurred[1:], strict=False)), blurred
    assert blurred[-1] > 3 * blurred[0], blurred  # a strong blur is far from the data
