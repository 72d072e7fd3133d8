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

``--cld_seeds S`` is the seed-resolved CLD comparison (paired SW / floor differences; sizes,
NFEs and samplers by ``--cld_num``, ``--cld_nfes``, ``--cld_samplers gddim,gddim:order=3,...``)
and ``--floor_scan 10000,100000`` the SW floor's pair-to-pair spread against the sample size.
"""

from __future__ import annotations

import argparse
import functools
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


def _sampler_spec(spec):
    """``name`` or ``name:key=value:...`` (integer values), e.g. ``gddim:order=3``."""
    name, *opts = spec.split(":")
    options = {k: int(v) for k, v in (o.split("=") for o in opts)}
    return name, make_sampler(name, **options)


def floor_scan(sizes, projections, repeats=8, data="25gaussians"):
    """SW between pairs of exact sample sets of each size: the floor and its relative spread
    from pair to pair (the noise of one SW / floor value), to size the seed-resolved runs."""
    mix = mixture_25gaussians() if data == "25gaussians" else random_mixture(
        jax.random.key(0), dim=64, num_components=16)  # fmt: skip
    sw = jax.jit(functools.partial(sliced_wasserstein, num_projections=projections))
    out = []
    for n in sizes:
        vals = []
        for k in jax.random.split(jax.random.key(1), repeats):
            k1, k2, k3 = jax.random.split(k, 3)
            vals.append(float(sw(k3, mix.sample(k1, n), mix.sample(k2, n))))
        v = np.array(vals)
        out.append({"data": data, "n": n, "projections": projections, "floor": float(v.mean()),
                    "rel_std": float(v.std(ddof=1) / v.mean())})  # fmt: skip
        print(out[-1], flush=True)
    return out


def cld_seeds(seeds, num, projections, nfes=(20, 50), floor_repeats=8, only=None,
              samplers=CLD_SAMPLERS):  # fmt: skip
    """Seed-resolved CLD comparison: per data set a floor from ``floor_repeats`` pairs of true
    sets of size ``num`` (its spread is the noise scale of one SW / floor value), then for every
    seed s fresh prior draws, a fresh truth set and fresh projections shared by all samplers
    (``samplers``: names or ``name:key=value`` specs, the first one the reference of the paired
    differences)."""
    sets = {
        "25gaussians": mixture_25gaussians(),
        "mixture64": random_mixture(jax.random.key(0), dim=64, num_components=16),
    }
    process = CLD()
    rows, floors = [], {}
    sw_of = jax.jit(functools.partial(sliced_wasserstein, num_projections=projections))
    for data, mix in sets.items():
        if only and data not in only:
            continue
        score = mixture_score_fn(process, mix.weights, mix.means, mix.stds)
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
            fns = {}
            for spec in samplers:
                _, sampler = _sampler_spec(spec)
                fns[spec] = _sample_fn(process, score, sampler, (num, mix.dim), nfe - 1)
            for seed in range(seeds):
                k_sample, k_truth, k_proj = jax.random.split(jax.random.key(100 + seed), 3)
                truth = mix.sample(k_truth, num)
                for name, fn in fns.items():
                    t0 = time.perf_counter()
                    out = jax.block_until_ready(fn(k_sample))
                    secs = time.perf_counter() - t0
                    ms = mode_stats(out.data, mix)
                    rows.append({
                        "data": data, "sampler": name, "nfe": int(out.nfe), "seed": seed,
                        "sw_ratio": float(sw_of(k_proj, out.data, truth)) / floor,
                        "hq": float(ms["high_quality_frac"]), "modes": int(ms["modes_covered"]),
                        "mode_kl": float(ms["mode_kl"]), "spread": spread(out.data, mix),
                        "seconds": secs,
                    })  # fmt: skip
                    print(rows[-1], flush=True)
    return rows, floors


def _pm(rows, key):
    v = np.array([r[key] for r in rows])
    return f"{v.mean():.4f} +- {v.std(ddof=1):.4f}"


def cld_table(rows, ref_name="gddim"):
    """Markdown: mean +- std over seeds, and the paired difference from ``ref_name``'s SW / floor
    (mean +- std over seeds, its standard error, and in how many seeds it is positive)."""
    lines = ["| data | NFE | sampler | SW / floor | HQ fraction | spread | mode KL | modes (min) "
             f"| SW / floor minus {ref_name}'s (std; s.e.; seeds > 0) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    keys = dict.fromkeys((r["data"], r["nfe"]) for r in rows)
    for data, nfe in keys:
        cell = [r for r in rows if r["data"] == data and r["nfe"] == nfe]
        ref = {r["seed"]: r["sw_ratio"] for r in cell if r["sampler"] == ref_name}
        for name in dict.fromkeys(r["sampler"] for r in cell):
            mine = [r for r in cell if r["sampler"] == name]
            sw = np.array([r["sw_ratio"] for r in mine])
            hq = np.array([r["hq"] for r in mine])
            diff = np.array([r["sw_ratio"] - ref[r["seed"]] for r in mine])
            se = diff.std(ddof=1) / np.sqrt(len(diff))
            d = "" if name == ref_name else (
                f"{diff.mean():+.3f} +- {diff.std(ddof=1):.3f}; {se:.3f}; "
                f"{int((diff > 0).sum())}/{len(diff)}")  # fmt: skip
            lines.append(
                f"| {data} | {nfe} | {name} | {sw.mean():.3f} +- {sw.std(ddof=1):.3f} | "
                f"{hq.mean():.3f} +- {hq.std(ddof=1):.3f} | {_pm(mine, 'spread')} | "
                f"{_pm(mine, 'mode_kl')} | {min(r['modes'] for r in mine)} | {d} |"
            )
    return "\n".join(lines)


def trained(workdir, stats, num, nfes=TRAINED_NFES, names=TRAINED_SAMPLERS, grid="logsnr",
            out=None, reference=True):  # fmt: skip
    """FID of ``num`` samples of the run in ``workdir`` for each sampler and NFE (the final
    denoising step counted; 2-NFE-per-step solvers at the odd NFE below), NFE by NFE, then the
    run's adaptive Tsit5 (rtol = atol = 1e-3) for reference. One seed for all rows: the same
    prior draws. Rows go to the JSON file ``out`` as they come."""
    from jaxdiff import api

    rows = []
    # A run that ends with a denoising step (VP digits) spends one NFE on it; LSGM's latent
    # sampler does not denoise (its SamplingSpec has denoise=False), so every NFE is a step.
    extra = int(getattr(getattr(api.restore(workdir).method, "sampling", None), "denoise", True))
    cells = [(n, nfe) for nfe in nfes for n in names] + ([("ode_tsit5", None)] if reference else [])
    for name, nfe in cells:
        if nfe is None:
            run_ = api.restore(workdir, sampler=name, rtol=1e-3, atol=1e-3)
        else:
            steps = max((nfe - extra) // EVALS.get(name, 1), 1)
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


def trained_figure(rows, path):
    """FID against NFE, one line per sampler (the adaptive reference as a horizontal line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name in dict.fromkeys(r["sampler"] for r in rows if r["grid"] != "adaptive"):
        pts = sorted((r["nfe"], r["fid"]) for r in rows
                     if r["sampler"] == name and r["grid"] != "adaptive")  # fmt: skip
        ax.plot(*zip(*pts, strict=True), "o-", label=name)
    for r in rows:
        if r["grid"] == "adaptive":
            ax.axhline(r["fid"], color="k", lw=0.7, ls="--",
                       label=f"{r['sampler']} (adaptive, {r['nfe']} NFE)")  # fmt: skip
    ax.set(xscale="log", xlabel="NFE", ylabel=f"FID ({rows[0]['num']} samples)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


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
    ap.add_argument("--trained_samplers", default=",".join(TRAINED_SAMPLERS),
                    help="with --trained: the samplers")  # fmt: skip
    ap.add_argument("--no_reference", action="store_true",
                    help="with --trained: skip the adaptive Tsit5 reference")  # fmt: skip
    ap.add_argument("--trained_figure", default=None, help="with --trained: FID vs NFE figure")
    ap.add_argument("--cld_seeds", type=int, default=0, help="seed-resolved CLD comparison")
    ap.add_argument("--cld_num", type=int, default=10_000, help="with --cld_seeds: samples")
    ap.add_argument("--projections", type=int, default=1024, help="with --cld_seeds: SW dirs")
    ap.add_argument("--cld_data", default=None, help="with --cld_seeds: e.g. mixture64")
    ap.add_argument("--cld_nfes", default="20,50", help="with --cld_seeds: NFEs")
    ap.add_argument("--cld_samplers", default=",".join(CLD_SAMPLERS),
                    help="with --cld_seeds: names or name:key=value specs; the first is the "
                    "reference of the paired differences")  # fmt: skip
    ap.add_argument("--floor_scan", default=None,
                    help="only the SW floor and its pair-to-pair spread at these sizes, "
                    "e.g. 1000,10000,100000 (with --projections, --cld_data)")  # fmt: skip
    args = ap.parse_args()
    if args.cld_seeds:
        only = args.cld_data.split(",") if args.cld_data else None
        nfes = [int(x) for x in args.cld_nfes.split(",")]
        samplers = args.cld_samplers.split(",")
        rows, floors = cld_seeds(args.cld_seeds, args.cld_num, args.projections, nfes,
                                 only=only, samplers=samplers)  # fmt: skip
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": rows, "floors": floors, "num": args.cld_num,
                           "projections": args.projections}, f, indent=1)  # fmt: skip
        print(floors)
        print(cld_table(rows, samplers[0]))
        return
    if args.floor_scan:
        sizes = [int(x) for x in args.floor_scan.split(",")]
        rows = floor_scan(sizes, args.projections, data=args.cld_data or "25gaussians")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"floor_scan": rows}, f, indent=1)
        return
    if args.trained:
        if not args.fid_stats:
            ap.error("--trained needs --fid_stats STATS.npz (`jaxdiff fid-stats`)")
        nfes = [int(x) for x in args.nfes.split(",")]
        names = args.trained_samplers.split(",")
        rows = trained(args.trained, args.fid_stats, args.fid_num, nfes, names, out=args.json,
                       reference=not args.no_reference)  # fmt: skip
        print(trained_table(rows))
        if args.trained_figure:
            trained_figure(rows, args.trained_figure)
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
