"""DDGAN benchmarks on the CPU: T in {1, 2, 4, 8} on 25-Gaussians vs the 1000-step VP model,
CIFAR-10-sized sampling time, and a bounded digits run with its sample grid.

    python experiments/ddgan_toy.py toy     [--steps N]   # table of modes / HQ / SW / time
    python experiments/ddgan_toy.py cifar                 # T=4 batch-100 time vs 1000-step VP
    python experiments/ddgan_toy.py digits  [--minutes M] # docs/ddgan_digits.png

Every DDGAN run uses the same budget (steps, batch, networks: ``configs/toy/ddgan.py``), only T
changes; the VP score model is ``configs/toy/vp.py`` trained through ``jaxdiff.build``. Results
are printed as Markdown tables and appended as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jaxdiff.build import build_data, build_method, build_train_settings  # noqa: E402
from jaxdiff.eval.metrics import toy_metrics  # noqa: E402
from jaxdiff.train import loop, parallel  # noqa: E402
from jaxdiff.train.sampling import draw  # noqa: E402

# The toy runs' 50 steps per call as one scanned step body, as they always ran: the trainer's CPU
# default ('auto') unrolls them (issue #13: convolutions in loop bodies), which for these MLPs only
# multiplies the compile time (DDGAN: 9 s scanned, over 3 min unrolled). The digits run keeps its
# config's setting.
SCAN = "scan"


def train(method, data, config, seconds: float | None = None, log_every: int = 1000, callback=None):
    """Trains with the trainer's jitted step (``loop.make_train_fn``: ``n_jitted_steps``
    optimiser steps per call, EMA included), in-process: no workdir, checkpoints or logs.

    ``callback(state, step)`` runs every ``log_every`` steps (e.g. to write a progress grid)."""
    settings = build_train_settings(config)
    bs, k = settings.batch_size, settings.n_jitted_steps
    mesh = parallel.make_mesh()
    sharding = parallel.batch_sharding(mesh)
    state = method.init(jax.random.key(config.seed), loop.local_batch(data, 0, bs))
    state = parallel.replicate(jax.device_get(state), mesh)
    multi = loop.make_train_fn(method, mesh, k, settings.step)
    key = jax.random.key(config.seed + 1)  # step s uses fold_in(key, s)

    def batches(start):
        return tuple(
            parallel.global_batch(loop.local_batch(data, start + i, bs), sharding) for i in range(k)
        )

    t0, step = time.time(), 0
    while step < config.training.num_steps:
        state, metrics = multi(state, batches(step), key)
        step += k
        if step % log_every == 0:
            m = {k: round(float(v[-1]), 3) for k, v in metrics.items() if "loss" in k}
            print(f"  step {step} {time.time() - t0:.0f}s {m}", flush=True)
            if callback is not None:
                callback(state, step)
        if seconds is not None and time.time() - t0 > seconds:
            break
    jax.block_until_ready(state)
    return state, time.time() - t0, step


def samples(method, state, num: int, seed: int = 0):
    """``num`` samples with the sampling (EMA) parameters, and ``{'nfe', 'seconds'}``."""
    params = method.sampling_params(state)
    bs = getattr(method, "sample_batch", None)
    return draw(method.sample_fn, params, jax.random.key(seed), num, bs)


def timed_sample(method, state, num: int):
    """Samples twice (the first call compiles); returns (samples, info, seconds of the 2nd)."""
    samples(method, state, num, seed=0)
    x, info = samples(method, state, num, seed=1)
    return x, info, info["seconds"]


def toy(args):
    from configs.toy import ddgan as ddgan_cfg
    from configs.toy import vp as vp_cfg

    rows = []
    for T in args.T:
        c = ddgan_cfg.get_config()
        c.training.loop = SCAN
        c.ddgan.num_timesteps = T
        if args.steps:
            c.training.num_steps = args.steps
        method, data = build_method(c), build_data(c)
        print(f"DDGAN T={T}: {c.training.num_steps} steps, batch {c.training.batch_size}")
        state, secs, steps = train(method, data, c)
        x, info, st = timed_sample(method, state, args.num)
        m = toy_metrics(jax.random.key(7), x, "25gaussians")
        rows.append(
            dict(
                model=f"DDGAN T={T}",
                nfe=info["nfe"],
                train_steps=steps,
                train_s=secs,
                sample_s=st,
                **m,
            )
        )
        print(rows[-1], flush=True)
    if not args.no_vp:
        c = vp_cfg.get_config()
        c.training.loop = SCAN
        method, data = build_method(c, sampler="em", steps=1000), build_data(c)
        print(f"VP score model: {c.training.num_steps} steps, batch {c.training.batch_size}")
        state, secs, steps = train(method, data, c)
        x, info, st = timed_sample(method, state, args.num)
        m = toy_metrics(jax.random.key(7), x, "25gaussians")
        rows.append(
            dict(
                model="VP, EM 1000 steps",
                nfe=info["nfe"],
                train_steps=steps,
                train_s=secs,
                sample_s=st,
                **m,
            )
        )
        print(rows[-1], flush=True)
    print(f"\n25-Gaussians, {args.num} samples each\n")
    print(
        "| model | NFE | train steps | train s | modes | HQ frac | SW / floor | mode KL |"
        " sample s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['nfe']} | {r['train_steps']} | {r['train_s']:.0f} |"
            f" {r['modes_covered']:.0f}/25 | {r['high_quality_frac']:.3f} |"
            f" {r['sw_ratio']:.2f} | {r['mode_kl']:.3f} | {r['sample_s']:.3f} |"
        )
    return {"toy": rows}


def cifar(args):
    """Sampling time of the CIFAR-10 DDGAN generator (T=4, batch 100) vs the same network as a
    VP score model at 1000 EM steps (estimated from ``args.vp_steps`` timed steps)."""
    from flax import nnx

    from jaxdiff.methods.ddgan import ddgan_sample
    from jaxdiff.nets import zoo
    from jaxdiff.nets.functional import count_params, functional
    from jaxdiff.processes.discrete import DiscreteChain

    b, T = args.batch, 4
    g_cfg = zoo.ddgan_cifar10_generator()
    net, params = functional(zoo.build_net(g_cfg, seed=0))
    chain = DiscreteChain.vp(T)
    sample = jax.jit(
        lambda p, k: ddgan_sample(
            chain, lambda x, t, z: net.apply(p, x, t, z), k, (b, 32, 32, 3), g_cfg.nz
        )
    )
    t0 = time.time()
    jax.block_until_ready(sample(params, jax.random.key(0)))
    compile_s = time.time() - t0
    t0 = time.time()
    jax.block_until_ready(sample(params, jax.random.key(1)))
    ddgan_s = time.time() - t0

    # the same NCSN++ without z as a VP score network; one EM step = one network call
    s_cfg = zoo.with_overrides(g_cfg, nz=0, output_tanh=False)
    snet, sparams = functional(zoo.build_net(s_cfg, seed=0))

    @jax.jit
    def em_steps(p, x, key):
        def step(x, i):
            t = 1.0 - i / 1000.0
            beta = 0.1 + t * 19.9
            eps = snet.apply(p, x, jnp.full((b,), t * 999.0))
            std = jnp.sqrt(1 - jnp.exp(-0.5 * t**2 * 19.9 - t * 0.1))
            score = -eps / std
            noise = jax.random.normal(jax.random.fold_in(key, i), x.shape)
            x = x + (0.5 * beta * x + beta * score) / 1000.0 + jnp.sqrt(beta / 1000.0) * noise
            return x, None

        return jax.lax.scan(step, x, jnp.arange(args.vp_steps, dtype=jnp.float32))[0]

    x = jax.random.normal(jax.random.key(0), (b, 32, 32, 3))
    jax.block_until_ready(em_steps(sparams, x, jax.random.key(0)))
    t0 = time.time()
    jax.block_until_ready(em_steps(sparams, x, jax.random.key(1)))
    per_step = (time.time() - t0) / args.vp_steps
    res = dict(
        batch=b,
        g_params=count_params(params),
        score_params=count_params(sparams),
        ddgan_T4_s=ddgan_s,
        ddgan_compile_s=compile_s,
        vp_per_step_s=per_step,
        vp_1000_est_s=per_step * 1000,
        vp_timed_steps=args.vp_steps,
        speedup=per_step * 1000 / ddgan_s,
        device=str(jax.devices()[0]),
    )
    print(json.dumps(res, indent=1))
    del nnx
    return {"cifar": res}


def digits(args):
    import importlib

    from jaxdiff.eval.plots import save_image_grid

    c = importlib.import_module(f"configs.ddgan.{args.config}").get_config()
    method, data = build_method(c), build_data(c)
    print(
        f"digits: up to {c.training.num_steps} steps / {args.minutes} min, batch "
        f"{c.training.batch_size}"
    )

    def progress(state, step):  # the grid so far, so a long run can be watched and stopped
        x, _ = samples(method, state, 100)
        save_image_grid(args.png, x)
        print(f"  wrote {args.png} at step {step}", flush=True)

    state, secs, steps = train(
        method, data, c, seconds=60 * args.minutes, log_every=args.log_every, callback=progress
    )
    x, info, st = timed_sample(method, state, 100)
    save_image_grid(args.png, np.asarray(x))
    lerp = method.interpolate(state, jax.random.key(3), num_pairs=4, num_points=10)
    save_image_grid(
        args.png.replace(".png", "_interp.png"), np.asarray(lerp).reshape(-1, *lerp.shape[2:])
    )
    res = dict(steps=steps, train_s=secs, sample_100_s=st, nfe=info["nfe"], png=args.png)
    print(res)
    return {"digits": res}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["toy", "cifar", "digits"])
    p.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=0, help="override the toy config's steps")
    p.add_argument("--num", type=int, default=5000)
    p.add_argument("--no_vp", action="store_true")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--vp_steps", type=int, default=3)
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--log_every", type=int, default=200)
    p.add_argument("--config", default="digits16", help="configs/ddgan/<name>.py for digits")
    p.add_argument("--png", default="docs/ddgan_digits.png")
    p.add_argument("--out", default="/tmp/ddgan_bench.jsonl")
    args = p.parse_args()
    res = {"toy": toy, "cifar": cifar, "digits": digits}[args.what](args)
    with open(args.out, "a") as f:
        f.write(json.dumps(res, default=float) + "\n")


if __name__ == "__main__":
    main()
