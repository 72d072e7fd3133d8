"""CLD vs VP trained on the same toy data, network and budget: sample quality against NFE.

Issue 5's second benchmark. Both score models are trained on the 2-D 25-Gaussians mixture by the
library's trainer (``jaxdiff.train.loop.train`` on ``jaxdiff.build.build_run``) from
``configs/toy/vp.py`` and ``configs/toy/cld.py``, with the network (``model``) and the budget
(steps, batch, learning-rate schedule, EMA, clipping) overridden to the same values (``SHARED``
below; printed with the results). Only the process and its objective differ: VP with DSM (eps,
sigma^2 weighting), CLD with HSM (mixed score, reweightedv2). CLD's network reads (x, v), so its
input layer is twice as wide; its output has the data's size, as VP's does.

Each trained model is then sampled by every sampler that applies to it, on fixed grids at
NFE in {20, 50, 100, 200, 500} (EM / SSCS: NFE - 1 steps; Heun: (NFE - 1) / 2 steps; the final
denoising step is one NFE) and with the adaptive probability-flow ODE (Tsit5) at two
tolerances, whose NFE is measured. Each cell: modes covered (of 25) / high-quality fraction
(within 3 std of a centre) / SW_2 over its noise floor (1 is perfect; +-0.2 between seeds at
2000 samples). Sampling times exclude compilation.

    python experiments/cld_toy.py                   # the configs' step count (6000) for both
    python experiments/cld_toy.py --steps 3000      # a shorter common budget
    python experiments/cld_toy.py --quick           # 500 steps, NFE {20, 100}, 500 samples
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from configs.toy import cld as cld_config  # noqa: E402
from configs.toy import vp as vp_config  # noqa: E402
from jaxdiff import api  # noqa: E402
from jaxdiff.build import build_run, build_sampling  # noqa: E402
from jaxdiff.eval.metrics import toy_metrics  # noqa: E402
from jaxdiff.train import loop  # noqa: E402

DATA = "25gaussians"
NFES = (20, 50, 100, 200, 500)
QUICK_NFES = (20, 100)
TOLS = (1e-3, 1e-5)

# The common network and budget. Network: the wider of the two configs' MLPs (CLD's 256) with
# VP's Fourier input features (without them a 128-wide MLP reached 18% high-quality VP samples
# against 92% with them, configs/toy/vp.py). Budget: CLD's batch; both configs' lr schedule.
SHARED = {
    "model.name": "mlp_score",
    "model.hidden": 256,
    "model.depth": 3,
    "model.embedding": "fourier",
    "model.embed_dim": 64,
    "model.input_frequencies": 6,
    "model.input_scale": 4.0,
    "training.batch_size": 512,
    "optim.lr": 2e-3,
    "optim.warmup": 200,
    "optim.schedule": "cosine",
    "optim.min_lr": 1e-4,
    "optim.grad_clip": 1.0,
    "training.ema_decay": 0.999,
}

# (process, sampler name, grid, score evaluations per step) for the fixed-grid rows
FIXED_ROWS = (
    ("VP", "em", "quadratic", 1),
    ("VP", "ode_heun", "quadratic", 2),
    ("CLD", "em", "quadratic", 1),
    ("CLD", "sscs", "uniform", 1),
    ("CLD", "sscs", "quadratic", 1),
    ("CLD", "ode_heun", "quadratic", 2),
)


def make_config(module, steps: int | None):
    """The toy config with the shared network and budget; ``steps`` None keeps the larger of the
    two configs' step counts."""
    c = module.get_config()
    for dotted, value in SHARED.items():
        section, key = dotted.split(".")
        c[section][key] = value
    own = max(vp_config.get_config().training.num_steps, cld_config.get_config().training.num_steps)
    c.training.num_steps = steps or own
    c.training.ckpt_every = c.training.num_steps
    c.training.log_every = max(c.training.num_steps // 4, c.training.n_jitted_steps)
    c.training.n_jitted_steps = min(c.training.n_jitted_steps, c.training.num_steps)
    c.training.eval_at_end = False
    # one scanned step body, as these runs always had: the CPU default 'auto' unrolls the 50
    # steps of a call (issue #13, for convolutions), which only multiplies an MLP's compile time
    c.training.loop = "scan"
    return c


def train_one(name, config, workdir):
    """Trains (or resumes) in ``workdir/name``; returns (method, state, wall seconds).

    The trainer itself (``loop.train``), not ``api.train``: that one also draws and writes
    end-of-run samples, which would count in the training time. The workdir is still a jaxdiff
    run (``config.json`` + checkpoints): ``api.restore`` and ``jaxdiff sample`` read it, and a
    different run found there is an error rather than reused."""
    path = os.path.join(workdir, name.lower())
    t0 = time.time()
    api.check_workdir(config, path)
    run = build_run(config)
    api.store_config(config, path)
    state, _ = loop.train(run.method, run.data, run.train, path, progress=False)
    return run.method, state, time.time() - t0


def timed_sample(method, config, state, key, num, sampler, **opts):
    """Samples with ``sampler`` and grid / solver options ``opts`` over ``config.sampling``
    (``jaxdiff.build.build_sampling``), compiled ahead of time; (x, nfe, seconds)."""
    spec = build_sampling(config.sampling, method.process, sampler=sampler, **opts)
    m = method.with_sampling(spec)
    params = m.sampling_params(state)
    fn = jax.jit(m.sample_fn, static_argnums=2).lower(params, key, num).compile()
    t0 = time.perf_counter()
    x, nfe = jax.block_until_ready(fn(params, key))
    return x, int(nfe), time.perf_counter() - t0


def evaluate(proc, method, config, state, num, nfes, key):
    """Rows of results for one trained model (``proc`` names it in ``FIXED_ROWS``): every
    fixed-grid sampler of that process and the adaptive ODE."""
    k_sample, k_metric = jax.random.split(key)
    rows = []

    def record(sampler, label, target, **opts):
        x, nfe, secs = timed_sample(method, config, state, k_sample, num, sampler, **opts)
        m = toy_metrics(k_metric, x, DATA)
        r = {"process": proc, "sampler": sampler, "grid": label, "target": target, "nfe": nfe}
        r.update(seconds=secs, **{k: float(m[k]) for k in ("sw_ratio", "high_quality_frac")})
        r.update(modes=int(m["modes_covered"]), mode_kl=float(m["mode_kl"]))
        rows.append(r)
        print(
            f"  {proc} {sampler:9s} {label:9s} NFE {nfe:4d}: modes {r['modes']:2d}  "
            f"hq {r['high_quality_frac']:.3f}  SW/floor {r['sw_ratio']:.2f}  "
            f"mode KL {r['mode_kl']:.4f}  {secs:.2f} s",
            flush=True,
        )

    for p, sampler, grid, per_step in FIXED_ROWS:
        if p != proc:
            continue
        for nfe in nfes:
            record(sampler, grid, nfe, steps=max((nfe - 1) // per_step, 1), grid=grid)
    for tol in TOLS:
        record("ode_tsit5", f"tol {tol:g}", None, steps=1, rtol=tol, atol=tol)
    return rows


def cell(r):
    return f"{r['modes']} / {r['high_quality_frac']:.2f} / {r['sw_ratio']:.2f}"


def tables(rows, nfes):
    """Markdown: quality per (process, sampler, grid) x NFE, the adaptive rows, and the times."""
    head = "| process, sampler, grid | " + " | ".join(f"NFE {n}" for n in nfes) + " |"
    sep = "|---" * (len(nfes) + 1) + "|"
    fixed = [k[:3] for k in FIXED_ROWS]
    quality = [head, sep]
    times = ["| sampling seconds | " + " | ".join(f"NFE {n}" for n in nfes) + " |", sep]
    for proc, sampler, grid in fixed:
        mine = {
            r["target"]: r
            for r in rows
            if (r["process"], r["sampler"], r["grid"]) == (proc, sampler, grid)
        }
        if not mine:
            continue
        label = f"{proc}, {sampler}, {grid}"
        quality.append(f"| {label} | " + " | ".join(cell(mine[n]) for n in nfes) + " |")
        times.append(f"| {label} | " + " | ".join(f"{mine[n]['seconds']:.2f}" for n in nfes) + " |")
    adaptive = [
        "| process, sampler, tolerance | NFE | modes / HQ / SW/floor | seconds |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r["target"] is None:
            adaptive.append(
                f"| {r['process']}, ode_tsit5, {r['grid']} | {r['nfe']} | {cell(r)} | "
                f"{r['seconds']:.2f} |"
            )
    return "\n".join(quality), "\n".join(adaptive), "\n".join(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps for both (default: the configs' own, the larger: 6000)",
    )
    ap.add_argument("--num", type=int, default=2000, help="samples per cell")
    ap.add_argument("--quick", action="store_true", help="500 steps, NFE {20, 100}, 500 samples")
    ap.add_argument(
        "--workdir", default=None, help="run folders (vp/, cld/); a finished run there is reused"
    )
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.num = args.steps or 500, min(args.num, 500)
    nfes = QUICK_NFES if args.quick else NFES
    workdir = args.workdir or tempfile.mkdtemp(prefix="cld_toy_")
    configs = {"VP": make_config(vp_config, args.steps), "CLD": make_config(cld_config, args.steps)}

    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"os.cpu_count() = {os.cpu_count()}, jax {jax.__version__} on {jax.devices()[0]}"
    )
    steps = configs["VP"].training.num_steps
    print(f"shared: steps {steps}, " + ", ".join(f"{k} {v}" for k, v in SHARED.items()))
    for name, c in configs.items():
        print(
            f"{name}: process {c.process.name}, objective {c.objective.name} "
            f"({c.objective.weighting}), sampling t_min {c.sampling.t_min}"
        )
    print(f"workdir {workdir}; {args.num} samples per cell\n", flush=True)

    t_start, rows, train_secs, params = time.time(), [], {}, {}
    for name, c in configs.items():
        print(f"training {name} ...", flush=True)
        method, state, train_secs[name] = train_one(name, c, workdir)
        params[name] = sum(p.size for p in jax.tree.leaves(state.params))
        print(f"  {train_secs[name]:.0f} s, {params[name]} parameters", flush=True)
        rows += evaluate(name, method, c, state, args.num, nfes, jax.random.key(args.seed))

    quality, adaptive, times = tables(rows, nfes)
    print(f"\ntotal {time.time() - t_start:.0f} s; {datetime.date.today()}\n")
    print(
        f"Machine: `{platform.platform()}`, `os.cpu_count()` = {os.cpu_count()}. Training "
        f"({steps} steps each): VP {train_secs['VP']:.0f} s ({params['VP']} parameters), "
        f"CLD {train_secs['CLD']:.0f} s ({params['CLD']} parameters).\n"
    )
    print("Cells: modes covered (of 25) / high-quality fraction / SW_2 over its noise floor.\n")
    print(quality, "\n")
    print(adaptive, "\n")
    print(times)


if __name__ == "__main__":
    main()
