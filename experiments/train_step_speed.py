"""Training-step speed of the paper configs: the trainer's step against the bare jitted step.

For each config (CIFAR-10 networks at full size, float32, random images, one process), in one run:

* ``fwd+bwd``: the network's forward and backward pass alone (score network; DDGAN's G and D);
* ``bare``: ``jax.jit(optimizer_step)`` on one batch (loss, gradients, optimiser, EMA);
* ``trainer n=K``: ``jaxdiff.train.loop.make_train_fn`` (what ``jaxdiff train`` runs) with K
  steps per call, per step; with ``--scan`` also the same forced to ``lax.scan``.

Seconds per step are medians over ``--reps`` calls after a warm-up call; compile times are the
first call's. Issue #13: on the CPU a conv step inside an XLA loop ran ~20x slower, so the
trainer unrolls short loops there (``jaxdiff.train.step``); the ratio column shows what is left.

    python experiments/train_step_speed.py [--configs ddpmpp cld ddgan] [--batch 8] [--reps 3]
        [--jitted 1 5] [--scan]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxdiff.build import build_method  # noqa: E402
from jaxdiff.train import loop, parallel  # noqa: E402
from jaxdiff.train.step import StepSettings, optimizer_step  # noqa: E402

CONFIGS = {
    "ddpmpp": "configs.vp.cifar10_ddpmpp",
    "cld": "configs.cld.cifar10",
    "ddgan": "configs.ddgan.cifar10",
}


def _timed(fn, reps: int) -> tuple[float, float]:
    """(first call incl. compile, median of ``reps`` later calls) in seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def _fwd_bwd(method, state, x):
    """Forward + backward of the networks alone, summed output as the loss."""
    b = x.shape[0]
    t = jnp.linspace(0.1, 0.9, b)
    if "score" in state.params:
        cin, _ = method.objective.net_channels(x.shape[-1])
        xin = jnp.concatenate([x] * (cin // x.shape[-1]), -1)

        def loss(p):
            return jnp.sum(method.net.apply(p, xin, t))

        return jax.jit(jax.grad(loss)), (state.params["score"],)
    labels = jnp.zeros((b,), jnp.int32)
    z = jnp.zeros((b, method.nz))

    def loss(g, d):
        x0 = method.G.apply(g, x, labels, z)
        return jnp.sum(method.D.apply(d, x0, x, labels))

    return jax.jit(jax.grad(loss, argnums=(0, 1))), (state.params["G"], state.params["D"])


def run(name: str, batch: int, reps: int, jitted: list[int], scan: bool):
    """Yields one table row (a dict) per measurement, as soon as it is measured."""
    import importlib

    config = importlib.import_module(CONFIGS[name]).get_config()
    config.training.precision = "float32"
    config.training.batch_size = batch
    method = build_method(config, data_shape=(32, 32, 3))
    x = jax.random.uniform(jax.random.key(0), (batch, 32, 32, 3), minval=-1, maxval=1)
    state = method.init(jax.random.key(1), {"x": x})
    grad_fn, args = _fwd_bwd(method, state, x)
    first, med = _timed(lambda: grad_fn(*args), reps)
    yield dict(config=name, what="fwd+bwd", s_per_step=med, compile_s=first - med)

    step = jax.jit(functools.partial(optimizer_step, method, settings=StepSettings()))
    holder = {"s": state}

    def bare():
        holder["s"], m = step(holder["s"], {"x": x}, jax.random.key(2))
        return m["loss"]

    first, bare_s = _timed(bare, reps)
    yield dict(config=name, what="bare step", s_per_step=bare_s, compile_s=first - bare_s)

    mesh = parallel.make_mesh()
    sharding = parallel.batch_sharding(mesh)
    variants = [(n, "auto") for n in jitted] + (
        [(n, "scan") for n in jitted if n > 1] if scan else []
    )
    for n, mode in variants:
        fn = loop.make_train_fn(method, mesh, n, StepSettings(loop=mode))
        st = {"s": parallel.replicate(jax.device_get(state), mesh)}
        batches = tuple(parallel.global_batch({"x": np.asarray(x)}, sharding) for _ in range(n))

        def trainer(fn=fn, st=st, batches=batches):
            st["s"], m = fn(st["s"], batches, jax.random.key(3))
            return m["loss"]

        first, med = _timed(trainer, reps)
        label = f"trainer n={n}" + (" scan" if mode == "scan" else "")
        yield dict(
            config=name, what=label, s_per_step=med / n, compile_s=first - med,
            ratio_to_bare=med / n / bare_s,
        )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jitted", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--scan", action="store_true", help="also force lax.scan for n > 1")
    args = ap.parse_args()
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), batch {args.batch}")
    print(
        f"{'config':8s} {'what':20s} {'s/step':>8s} {'img/s':>8s} {'compile s':>10s} {'/bare':>6s}"
    )
    for name in args.configs:
        for r in run(name, args.batch, args.reps, args.jitted, args.scan):
            ratio = f"{r['ratio_to_bare']:.2f}" if "ratio_to_bare" in r else ""
            print(
                f"{r['config']:8s} {r['what']:20s} {r['s_per_step']:8.2f} "
                f"{args.batch / r['s_per_step']:8.2f} {r['compile_s']:10.1f} {ratio:>6s}",
                flush=True,
            )


if __name__ == "__main__":
    main()
