"""Fast samplers against NFE with exact scores (no training): issue 15's benchmark.

Data: the 2-D 25-Gaussians set (std 0.05, 5000 samples) and the 64-d mixture of 16 components
(1000 samples), under VP (DDIM, DPM-Solver++, UniPC, DEIS, iPNDM, EDM-Heun and EM for reference)
and CLD (gDDIM, SSCS, EM). NFE counts every score evaluation, the final denoising step included
(one-evaluation-per-step samplers run NFE - 1 steps; EDM-Heun (NFE - 1) / 2). Metrics are those
of ``experiments/sampler_accuracy.py``: SW / noise floor, modes covered, high-quality fraction,
wall time of the jitted sampler (compile excluded). It then times each sampler's step against
diffrax Euler-Maruyama at 10 NFE, batch 10^4, with a cheap Gaussian score, and draws
``docs/fast_samplers.png`` (SW / floor against NFE, best grid per sampler).

    python experiments/fast_samplers.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.data.toy import mixture_25gaussians, random_mixture
from jaxdiff.eval.metrics import mode_stats, sliced_wasserstein, sw_noise_floor
from jaxdiff.processes import VP, mixture_score_fn
from jaxdiff.processes.cld import CLD
from jaxdiff.solvers.samplers import make_sampler, sample

VP_SAMPLERS = [
    "ddim",
    "dpmpp_2m",
    "dpmpp_3m",
    "dpmpp_2m_sde",
    "unipc",
    "deis",
    "ipndm",
    "edm_heun",
    "em",
]
VP_GRIDS = ["logsnr", "karras", "uniform"]
CLD_SAMPLERS = ["gddim", "gddim_sde", "sscs", "em"]
CLD_GRIDS = ["quadratic", "uniform"]
EVALS = {"edm_heun": 2}


def run(process, name, mix, n, nfe, grid, floor, truth):
    per = EVALS.get(name, 1)
    steps = max((nfe - 1) // per, 1)
    score = mixture_score_fn(process, mix.weights, mix.means, mix.stds)
    sampler = make_sampler(name)
    fn = jax.jit(lambda k: sample(process, score, k, (n, mix.dim), sampler, steps=steps, grid=grid))
    fn = fn.lower(jax.random.key(0)).compile()
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(jax.random.key(0)))
    secs = time.perf_counter() - t0
    sw = float(sliced_wasserstein(jax.random.key(3), out.data, truth))
    ms = mode_stats(out.data, mix)
    return {
        "sampler": name,
        "grid": grid,
        "nfe": int(out.nfe),
        "sw_ratio": sw / floor,
        "modes": int(ms["modes_covered"]),
        "num_modes": int(ms["num_modes"]),
        "hq": float(ms["high_quality_frac"]),
        "seconds": secs,
    }


def overhead(batch=10_000, nfe=10, repeats=21):
    """Seconds per NFE of each sampler against diffrax EM on the same process, in one run:
    10 NFE, batch 10^4, a cheap exact score (Gaussian data, no mixture), so the solver's own
    per-step cost is what the ratio measures. VP samplers on the log-SNR grid, CLD's on the
    quadratic one; runs of the samplers are interleaved, the median is reported."""
    vp, cld = VP(), CLD()
    var0 = jnp.array([0.25, 4.0])

    def vp_score(y, t):
        return -y / (jnp.exp(2 * vp.log_alpha(t)) * var0 + vp.kernel_var(t))

    def cld_score(y, t):
        return cld.marginal(jnp.zeros_like(y[0]), t, var0=0.25).score(y)

    setups = [("VP", vp, vp_score, "logsnr", ["em", *VP_SAMPLERS[:-1]]),
              ("CLD", cld, cld_score, "quadratic", CLD_SAMPLERS[::-1])]  # fmt: skip
    fns = {}
    for proc, process, score, grid, names in setups:
        for name in names:
            per = EVALS.get(name, 1)
            steps = (nfe - 1) // per
            sampler = make_sampler(name)
            fn = jax.jit(
                lambda k, p=process, sc=score, s=sampler, st=steps, g=grid: (
                    sample(p, sc, k, (batch, 2), s, steps=st, grid=g).data
                )
            )
            jax.block_until_ready(fn(jax.random.key(0)))
            fns[(proc, name)] = (fn, steps * per + 1)
    runs = {key: [] for key in fns}
    for r in range(repeats):  # interleaved, so load changes hit every sampler alike
        for key, (fn, _) in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(jax.random.key(r)))
            runs[key].append(time.perf_counter() - t0)
    return {f"{name} ({proc})": float(np.median(runs[(proc, name)])) / evals
            for (proc, name), (_, evals) in fns.items()}  # fmt: skip


def plan(data, grids, nfes):
    """Every NFE on the first (default) grid; the other grids at 10 and 20 NFE on 25-Gaussians
    only; the 64-d set at 10, 20 and 50 NFE (a full sweep takes hours on a loaded CPU)."""
    if data != "25gaussians":
        return [(grids[0], nfe) for nfe in nfes if nfe in (10, 20, 50)]
    return [(grids[0], nfe) for nfe in nfes] + [
        (g, nfe) for g in grids[1:] for nfe in nfes if nfe in (10, 20)
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="NFE {5, 10, 20}, logsnr / quadratic only")
    ap.add_argument("--json", default=None)
    ap.add_argument("--figure", default="docs/fast_samplers.png")
    ap.add_argument("--overhead", action="store_true", help="only the per-NFE timing")
    ap.add_argument("--replot", default=None, help="only redraw the figure from a --json file")
    args = ap.parse_args()
    if args.overhead:
        for name, secs in overhead().items():
            print(f"| {name} | {secs * 1e3:.3f} ms |")
        return
    if args.replot:
        with open(args.replot) as f:
            figure(json.load(f)["rows"], args.figure)
        return
    nfes = [5, 10, 20] if args.quick else [5, 10, 15, 20, 50]
    vp_grids = ["logsnr"] if args.quick else VP_GRIDS
    cld_grids = ["quadratic"] if args.quick else CLD_GRIDS
    sets = {
        "25gaussians": (mixture_25gaussians(), 5000),
        "mixture64": (random_mixture(jax.random.key(0), dim=64, num_components=16), 1000),
    }
    rows = []
    for data, (mix, n) in sets.items():
        floor = sw_noise_floor(jax.random.key(1), mix.sample, n, num_repeats=3)
        truth = mix.sample(jax.random.key(2), n)
        for proc_name, process, names, grids in (
            ("VP", VP(), VP_SAMPLERS, vp_grids),
            ("CLD", CLD(), CLD_SAMPLERS, cld_grids),
        ):
            for name in names:
                for grid, nfe in plan(data, grids, nfes):
                    r = run(process, name, mix, n, nfe, grid, floor, truth)
                    r.update(data=data, process=proc_name)
                    rows.append(r)
                    print(r, flush=True)
    print("\n| data | process | sampler | grid | NFE | SW / floor | modes | HQ | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['data']} | {r['process']} | {r['sampler']} | {r['grid']} | {r['nfe']} | "
            f"{r['sw_ratio']:.2f} | {r['modes']}/{r['num_modes']} | {r['hq']:.3f} | "
            f"{r['seconds']:.3f} |"
        )
    per_step = overhead()
    print("\n| sampler | s / NFE (batch 1e4, 10 NFE) | vs EM on the same process |")
    print("|---|---|---|")
    for name, secs in per_step.items():
        em = per_step["em (CLD)" if "CLD" in name else "em (VP)"]
        print(f"| {name} | {secs * 1e3:.3f} ms | {secs / em:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "per_step": per_step}, f, indent=1)
    figure(rows, args.figure)


def figure(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datas = sorted({r["data"] for r in rows})
    fig, axes = plt.subplots(1, len(datas), figsize=(6 * len(datas), 4), squeeze=False)
    for ax, data in zip(axes[0], datas, strict=True):
        keys = sorted({(r["process"], r["sampler"]) for r in rows if r["data"] == data})
        colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(keys)))
        for key, colour in zip(keys, colours, strict=True):
            pts = {}
            for r in rows:
                if r["data"] == data and (r["process"], r["sampler"]) == key:
                    pts[r["nfe"]] = min(pts.get(r["nfe"], np.inf), r["sw_ratio"])
            xs = sorted(pts)
            style = "o--" if key[0] == "CLD" else "o-"
            ax.plot(xs, [pts[x] for x in xs], style, color=colour, label=f"{key[1]} ({key[0]})")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="NFE (denoising step included)",
            ylabel="SW / noise floor (best grid)",
            title=data,
        )
        ax.axhline(1.0, color="k", lw=0.5)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
