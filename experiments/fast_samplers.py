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

``--trained WORKDIR --fid_stats STATS.npz`` instead measures a trained score model (e.g. the VP
run of ``configs/compare/vp.py``): FID of ``--fid_num`` samples (one seed, the same for every
row) against NFE in {5, 10, 20, 50} for DDIM, DPM-Solver++(2M), UniPC, EM and the Heun
probability-flow ODE solver, all on the log-SNR grid, plus the adaptive Tsit5 reference.
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
    "dpm_solver",
    "dpmpp_2s",
    "unipc",
    "deis",
    "ipndm",
    "edm_heun",
    "em",
]
VP_GRIDS = ["logsnr", "karras", "uniform"]
CLD_SAMPLERS = ["gddim", "gddim_sde", "sscs", "em"]
CLD_GRIDS = ["quadratic", "uniform"]
EVALS = {"edm_heun": 2, "ode_heun": 2}
TRAINED_SAMPLERS = ["ddim", "dpmpp_2m", "unipc", "em", "ode_heun"]
TRAINED_NFES = [5, 10, 20, 50]


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


def _sample_fn(process, score, sampler, shape, steps, grid="quadratic"):
    return jax.jit(lambda k: sample(process, score, k, shape, sampler, steps=steps, grid=grid))


def spread(x, mix):
    """Mean of ``|x - m_k|^2 / (d s_k^2)`` over samples, k the nearest centre: 1 for exact draws
    of well-separated components, above 1 when a sampler leaves noise, below when it contracts."""
    d2 = jnp.sum((x[:, None, :] - mix.means[None]) ** 2, axis=-1)
    k = jnp.argmin(d2, axis=-1)
    return float(jnp.mean(jnp.min(d2, axis=-1) / (x.shape[-1] * mix.stds[k] ** 2)))


def cld_seeds(seeds, num, projections, nfes=(20, 50), floor_repeats=8, only=None):
    """Seed-resolved CLD comparison: per data set a floor from ``floor_repeats`` pairs of true
    sets of size ``num`` (its spread is the noise scale of one SW / floor value), then for every
    seed s fresh prior draws, a fresh truth set and fresh projections shared by all samplers."""
    sets = {
        "25gaussians": mixture_25gaussians(),
        "mixture64": random_mixture(jax.random.key(0), dim=64, num_components=16),
    }
    process = CLD()
    rows, floors = [], {}
    for data, mix in sets.items():
        if only and data not in only:
            continue
        score = mixture_score_fn(process, mix.weights, mix.means, mix.stds)

        def sw_of(key, x, y):
            return sliced_wasserstein(key, x, y, num_projections=projections)

        pairs = []
        for k in jax.random.split(jax.random.key(1), floor_repeats):
            k1, k2, k3 = jax.random.split(k, 3)
            pairs.append(float(sw_of(k3, mix.sample(k1, num), mix.sample(k2, num))))
        floor = float(np.mean(pairs))
        true_spread = spread(mix.sample(jax.random.key(5), num), mix)
        floors[data] = {"floor": floor, "rel_std": float(np.std(pairs) / floor),
                        "truth_spread": true_spread}  # fmt: skip
        print(data, floors[data], flush=True)
        for nfe in nfes:
            fns = {
                name: _sample_fn(process, score, make_sampler(name), (num, mix.dim), nfe - 1)
                for name in CLD_SAMPLERS
            }
            for seed in range(seeds):
                k_sample, k_truth, k_proj = jax.random.split(jax.random.key(100 + seed), 3)
                truth = mix.sample(k_truth, num)
                for name, fn in fns.items():
                    out = fn(k_sample)
                    ms = mode_stats(out.data, mix)
                    rows.append({
                        "data": data, "sampler": name, "nfe": int(out.nfe), "seed": seed,
                        "sw_ratio": float(sw_of(k_proj, out.data, truth)) / floor,
                        "hq": float(ms["high_quality_frac"]), "modes": int(ms["modes_covered"]),
                        "mode_kl": float(ms["mode_kl"]), "spread": spread(out.data, mix),
                    })  # fmt: skip
                    print(rows[-1], flush=True)
    return rows, floors


def _pm(rows, key):
    v = np.array([r[key] for r in rows])
    return f"{v.mean():.4f} +- {v.std(ddof=1):.4f}"


def cld_table(rows):
    """Markdown: mean +- std over seeds, and the paired difference from gDDIM's SW / floor."""
    lines = ["| data | NFE | sampler | SW / floor | HQ fraction | spread | mode KL | modes (min) "
             "| SW / floor minus gDDIM's |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    keys = dict.fromkeys((r["data"], r["nfe"]) for r in rows)
    for data, nfe in keys:
        cell = [r for r in rows if r["data"] == data and r["nfe"] == nfe]
        ref = {r["seed"]: r["sw_ratio"] for r in cell if r["sampler"] == "gddim"}
        for name in dict.fromkeys(r["sampler"] for r in cell):
            mine = [r for r in cell if r["sampler"] == name]
            sw = np.array([r["sw_ratio"] for r in mine])
            hq = np.array([r["hq"] for r in mine])
            diff = np.array([r["sw_ratio"] - ref[r["seed"]] for r in mine])
            d = "" if name == "gddim" else f"{diff.mean():+.3f} +- {diff.std(ddof=1):.3f}"
            lines.append(
                f"| {data} | {nfe} | {name} | {sw.mean():.3f} +- {sw.std(ddof=1):.3f} | "
                f"{hq.mean():.3f} +- {hq.std(ddof=1):.3f} | {_pm(mine, 'spread')} | "
                f"{_pm(mine, 'mode_kl')} | {min(r['modes'] for r in mine)} | {d} |"
            )
    return "\n".join(lines)


def trained(workdir, stats, num, nfes=TRAINED_NFES, names=TRAINED_SAMPLERS, grid="logsnr",
            out=None):  # fmt: skip
    """FID of ``num`` samples of the run in ``workdir`` for each sampler and NFE (the final
    denoising step counted; 2-NFE-per-step solvers at the odd NFE below), NFE by NFE, then the
    run's adaptive Tsit5 (rtol = atol = 1e-3) for reference. One seed for all rows: the same
    prior draws. Rows go to the JSON file ``out`` as they come."""
    from jaxdiff import api

    rows = []
    cells = [(n, nfe) for nfe in nfes for n in names] + [("ode_tsit5", None)]
    for name, nfe in cells:
        if nfe is None:
            run_ = api.restore(workdir, sampler=name, rtol=1e-3, atol=1e-3)
        else:
            steps = max((nfe - 1) // EVALS.get(name, 1), 1)
            run_ = api.restore(workdir, sampler=name, steps=steps, grid=grid)
        t0 = time.perf_counter()
        res = api.sample_quality(run_, num, stats, seed=0)
        row = {"sampler": name, "grid": grid if nfe else "adaptive", "nfe": res["protocol"]["nfe"],
               "fid": float(res["fid"]), "seconds": time.perf_counter() - t0,
               "step": res["protocol"]["checkpoint_step"], "num": num}  # fmt: skip
        rows.append(row)
        print(row, flush=True)
        if out:
            with open(out, "w") as f:
                json.dump({"trained": workdir, "rows": rows}, f, indent=1)
    return rows


def trained_table(rows):
    """Markdown: FID per sampler (rows) and NFE (columns); odd NFE of 2-per-step solvers noted."""
    nfes = sorted({r["nfe"] for r in rows if r["grid"] != "adaptive"})
    cols = sorted({min(TRAINED_NFES, key=lambda n: abs(n - x)) for x in nfes})
    lines = ["| sampler | " + " | ".join(f"NFE {c}" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]  # fmt: skip
    for name in dict.fromkeys(r["sampler"] for r in rows):
        cells = []
        for c in cols:
            hit = [r for r in rows if r["sampler"] == name and r["grid"] != "adaptive"
                   and min(TRAINED_NFES, key=lambda n: abs(n - r["nfe"])) == c]  # fmt: skip
            cells.append("" if not hit else f"{hit[0]['fid']:.1f}" + (
                f" ({hit[0]['nfe']})" if hit[0]["nfe"] != c else ""))  # fmt: skip
        adaptive = [r for r in rows if r["sampler"] == name and r["grid"] == "adaptive"]
        if adaptive:
            cells = [f"{adaptive[0]['fid']:.1f} at {adaptive[0]['nfe']} NFE (adaptive)"] + [
                ""] * (len(cols) - 1)  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    ap.add_argument("--trained", default=None, help="a trained run's workdir: FID against NFE")
    ap.add_argument("--fid_stats", default=None, help="with --trained: reference statistics")
    ap.add_argument("--fid_num", type=int, default=300, help="with --trained: samples per cell")
    ap.add_argument("--nfes", default="5,10,20,50", help="with --trained: NFEs, in this order")
    ap.add_argument("--cld_seeds", type=int, default=0, help="seed-resolved CLD comparison")
    ap.add_argument("--cld_num", type=int, default=10_000, help="with --cld_seeds: samples")
    ap.add_argument("--projections", type=int, default=1024, help="with --cld_seeds: SW dirs")
    ap.add_argument("--cld_data", default=None, help="with --cld_seeds: e.g. mixture64")
    args = ap.parse_args()
    if args.cld_seeds:
        only = args.cld_data.split(",") if args.cld_data else None
        rows, floors = cld_seeds(args.cld_seeds, args.cld_num, args.projections, only=only)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": rows, "floors": floors, "num": args.cld_num,
                           "projections": args.projections}, f, indent=1)  # fmt: skip
        print(floors)
        print(cld_table(rows))
        return
    if args.trained:
        if not args.fid_stats:
            ap.error("--trained needs --fid_stats STATS.npz (`jaxdiff fid-stats`)")
        nfes = [int(x) for x in args.nfes.split(",")]
        rows = trained(args.trained, args.fid_stats, args.fid_num, nfes, out=args.json)
        print(trained_table(rows))
        return
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
