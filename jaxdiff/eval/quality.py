"""Sample quality of image models as the field measures it: Inception features -> FID and friends.

Protocol (TF FID / fid-helper): images in [-1, 1] are quantised to uint8 as a PNG would store them,
grey images are repeated to three channels, the Inception-v3 of the TF FID code resizes them to
299 x 299 (``jaxdiff.eval.inception``) and its 2048-d pool3 features are compared with the
reference statistics (mean and covariance) of the data set: FID (float64 sqrtm); with reference
*features* also KID and precision / recall / density / coverage; with the classifier's logits the
Inception Score. ``reference_stats`` writes the statistics of a data set once (``jaxdiff
fid-stats``), with a record of how they were made.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, UInt8

from jaxdiff.eval import fid as F
from jaxdiff.eval.inception import FIDInception, quantize_images


def to_uint8_rgb(images: Float[np.ndarray, "b h w c"]) -> UInt8[np.ndarray, "b h w 3"]:
    """[-1, 1] float NHWC (1 or 3 channels) -> uint8 RGB."""
    x = np.asarray(quantize_images(jnp.asarray(images)))
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (b, h, w, 1 or 3) images, got shape {x.shape}")
    return x


def features(
    model: FIDInception, batches: Iterable[np.ndarray], limit: int | None = None
) -> dict[str, np.ndarray]:
    """Pool3 features (and logits when the weights have the classifier) of image batches in
    [-1, 1]; stops after ``limit`` images."""
    pool, logits, seen = [], [], 0
    for x in batches:
        out = jax.device_get(model(to_uint8_rgb(x)))
        pool.append(np.asarray(out["pool3"], np.float64))
        if "logits" in out:
            logits.append(np.asarray(out["logits"], np.float64))
        seen += len(x)
        if limit is not None and seen >= limit:
            break
    res = {"pool3": np.concatenate(pool)[:limit]}
    if logits:
        res["logits"] = np.concatenate(logits)[:limit]
    return res


def batched(images: np.ndarray, batch: int) -> Iterable[np.ndarray]:
    for i in range(0, len(images), batch):
        yield images[i : i + batch]


def save_stats(path: str, feats: np.ndarray, record: dict[str, Any]) -> None:
    """Writes ``mu``, ``sigma`` (and the features when there are at most 50k) and a record."""
    mu, sigma = F.feature_stats(feats)
    extra = {"features": feats.astype(np.float32)} if len(feats) <= 50_000 else {}
    np.savez(path, mu=mu, sigma=sigma, record=json.dumps(record), **extra)


def load_stats(path: str) -> dict[str, Any]:
    """``mu``, ``sigma``, optional ``features`` and the ``record`` of a stats file (also the TF
    FID code's ``.npz`` files, which hold ``mu`` and ``sigma`` only)."""
    with np.load(path) as f:
        if "mu" not in f.files or "sigma" not in f.files:
            raise ValueError(f"{path} holds {f.files}; a FID statistics file needs 'mu', 'sigma'")
        out = {"mu": f["mu"], "sigma": f["sigma"]}
        if "features" in f.files:
            out["features"] = f["features"]
        out["record"] = json.loads(str(f["record"])) if "record" in f.files else {}
    return out


def quality_metrics(
    fake: dict[str, np.ndarray], reference: dict[str, Any], kid_subset: int = 1000
) -> dict[str, float]:
    """FID against the reference statistics; KID and precision / recall / density / coverage
    when the reference holds features; IS when the fake features hold logits."""
    f = fake["pool3"]
    mu, sigma = F.feature_stats(f)
    res = {"fid": F.fid_from_stats(mu, sigma, reference["mu"], reference["sigma"])}
    real = reference.get("features")
    if real is not None:
        n = min(len(real), len(f))
        kid, kid_std = F.kid(real, f, subset_size=min(kid_subset, n))
        res.update(kid=kid, kid_std=kid_std)
        if n > 5:
            m = F.manifold_metrics(real[:n], f[:n])
            res.update({k: float(v) for k, v in m.items()})
    if "logits" in fake:
        res["inception_score"], res["inception_score_std"] = F.inception_score(fake["logits"])
    return res
