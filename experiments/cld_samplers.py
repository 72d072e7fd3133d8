"""CLD samplers with exact scores: EM vs SSCS vs the probability-flow ODE, and VP as a baseline.

No training: the data are Gaussian mixtures, whose perturbed score is exact for every linear
process (``jaxdiff.processes.mixture``), so the table measures the samplers' discretisation
error alone. Data: the 2-D 25-Gaussians set (std 0.05) and a 64-d mixture of 16 unit-variance
Gaussians 10 apart (``random_mixture``). NFE counts every score evaluation, the final
noise-free denoising step included (EM / SSCS: NFE - 1 steps; Heun: (NFE - 1) / 2 steps).

    python experiments/cld_samplers.py            # full table
    python experiments/cld_samplers.py --quick    # NFE {20, 50, 100, 200}, half the samples
    python experiments/cld_samplers.py --json out.json

Columns: SW_2 / noise floor (1 is perfect), modes covered, high-quality fraction (samples within
the 3-std ball of a centre, ``mode_stats``), KL(mode histogram || weights), wall time of the
jitted sampler (compile excluded).
"""

from __future__ import annotations

import argparse
import json
import time

import diffrax as dfx
import jax
import jax.numpy as jnp

from jaxdiff.data.toy import mixture_25gaussians, random_mixture
from jaxdiff.eval.metrics import mode_stats, sliced_wasserstein, sw_noise_floor
from jaxdiff.processes import VP, mixture_score_fn
from jaxdiff.processes.cld import CLD
from jaxdiff.solvers.samplers import AdaptiveProbabilityFlow, ProbabilityFlow, ReverseSDE, sample
from jaxdiff.solvers.sscs import SSCS

NFES = (20, 50, 100, 150, 200, 500, 1000)
QUICK_NFES = (20, 50, 100, 200)

# row name -> (process, sampler, grid, score evaluations per step)
ROWS = {
    "EM-CLD (QS)": (CLD(), ReverseSDE(dfx.Euler()), "quadratic", 1),
    "SSCS-CLD (uniform)": (CLD(), SSCS(), "uniform", 1),
    "SSCS-CLD (QS)": (CLD(), SSCS(), "quadratic", 1),
    "ODE-CLD (Heun, QS)": (CLD(), ProbabilityFlow(dfx.Heun()), "quadratic", 2),
    "EM-VP (QS)": (VP(), ReverseSDE(dfx.Euler()), "quadratic", 1),
    "ODE-VP (Heun, QS)": (VP(), ProbabilityFlow(dfx.Heun()), "quadratic", 2),
}
ADAPTIVE = {  # the paper's ODE sampler: adaptive RK, rtol = atol = 1e-5
    "ODE-CLD (Tsit5 1e-5)": CLD(),
    "ODE-VP (Tsit5 1e-5)": VP(),
}


def run_one(process, sampler, mixture, n, steps, grid, key):
    score = mixture_score_fn(process, mixture.weights, mixture.means, mixture.stds)
    fn = jax.jit(
        lambda k: sample(process, score, k, (n, mixture.dim), sampler, steps=steps, grid=grid)
    )
    fn = fn.lower(key).compile()  # ahead of time: the timing below excludes compilation
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(key))
    return out.data, int(out.nfe), time.perf_counter() - t0


def metrics(x, mixture, floor, key):
    k1, k2 = jax.random.split(key)
    ref = mixture.sample(k1, x.shape[0])
    sw = float(sliced_wasserstein(k2, x, ref, num_projections=256))
    stats = mode_stats(x, mixture)
    return {
        "sw_ratio": sw / floor,
        "modes": int(stats["modes_covered"]),
        "hq": float(stats["high_quality_frac"]),
        "mode_kl": float(stats["mode_kl"]),
        "nan": bool(jnp.isnan(x).any()),
    }


def benchmark(name, mixture, n, nfes, key):
    floor = sw_noise_floor(jax.random.fold_in(key, 1), mixture.sample, n, num_repeats=5)
    results = []
    for row, (process, sampler, grid, per_step) in ROWS.items():
        for nfe in nfes:
            steps = max((nfe - 1) // per_step, 1)
            x, got_nfe, secs = run_one(process, sampler, mixture, n, steps, grid, key)
            res = {"data": name, "row": row, "nfe": got_nfe, "seconds": secs}
            res.update(metrics(x, mixture, floor, jax.random.fold_in(key, 2)))
            results.append(res)
            print(f"  {row:22s} NFE {got_nfe:5d}  {res}", flush=True)
    for row, process in ADAPTIVE.items():
        sampler = AdaptiveProbabilityFlow(dfx.Tsit5(), rtol=1e-5, atol=1e-5)
        x, got_nfe, secs = run_one(process, sampler, mixture, n, 1, "uniform", key)
        res = {"data": name, "row": row, "nfe": got_nfe, "seconds": secs}
        res.update(metrics(x, mixture, floor, jax.random.fold_in(key, 2)))
        results.append(res)
        print(f"  {row:22s} NFE {got_nfe:5d}  {res}", flush=True)
    return floor, results


def table(results, name, nfes, field, fmt):
    rows = [r for r in results if r["data"] == name]
    head = f"| {field} | " + " | ".join(str(n) for n in nfes) + " |"
    lines = [head, "|---" * (len(nfes) + 1) + "|"]
    for row in ROWS:
        cells = []
        for nfe in nfes:
            match = [r for r in rows if r["row"] == row and abs(r["nfe"] - nfe) <= 1]
            cells.append(fmt(match[0][field]) if match else "")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    for row in ADAPTIVE:
        r = [r for r in rows if r["row"] == row][0]
        lines.append(f"| {row}, NFE {r['nfe']} | {fmt(r[field])} |" + " |" * (len(nfes) - 1))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="NFE {20, 50, 100, 200}, half the samples")
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    nfes = QUICK_NFES if args.quick else NFES
    key = jax.random.key(args.seed)
    sets = {
        "25gaussians": (mixture_25gaussians(), 1000 if args.quick else 2000),
        "mixture64": (random_mixture(jax.random.key(7), 64, 16), 500 if args.quick else 1000),
    }
    all_results, floors = [], {}
    t_start = time.time()
    for name, (mixture, n) in sets.items():
        print(f"{name}: n = {n}", flush=True)
        floors[name], res = benchmark(name, mixture, n, nfes, key)
        all_results += res
    print(f"\ntotal {time.time() - t_start:.0f} s\n")
    for name, (_, n) in sets.items():
        print(f"### {name} (n = {n}, SW floor {floors[name]:.4f})\n")
        print(table(all_results, name, nfes, "sw_ratio", lambda v: f"{v:.2f}"), "\n")
        print(table(all_results, name, nfes, "hq", lambda v: f"{v:.3f}"), "\n")
        print(table(all_results, name, nfes, "modes", str), "\n")
        print(table(all_results, name, nfes, "mode_kl", lambda v: f"{v:.4f}"), "\n")
        print(table(all_results, name, nfes, "seconds", lambda v: f"{v:.2f}"), "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"floors": floors, "results": all_results}, f, indent=1)


if __name__ == "__main__":
    main()
