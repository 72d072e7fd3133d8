"""Training throughput of the toy VP config: 1 vs 8 (forced) CPU devices, n_jitted_steps 1 vs 10.

Each device count runs in its own process (XLA fixes the device count at start-up). The step is
the trainer's own (``jaxdiff.train.loop.make_train_fn``: jit over a 'data' mesh, batch sharded,
state replicated), fed by the trainer's data path; times exclude compilation.

    python experiments/train_throughput.py [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(n_jitted: int, steps: int) -> dict:
    import jax

    sys.path.insert(0, ROOT)
    from configs.toy.vp import get_config
    from jaxdiff.build import build_data, build_method, build_train_settings
    from jaxdiff.train import loop, parallel

    config = get_config()
    config.training.n_jitted_steps = n_jitted
    method, data = build_method(config), build_data(config)
    mesh = parallel.make_mesh()
    bs = config.training.batch_size
    first = loop.local_batch(data, 0, bs)
    state = parallel.replicate(jax.device_get(method.init(jax.random.key(0), first)), mesh)
    fn = loop.make_train_fn(method, mesh, n_jitted, build_train_settings(config).step)
    sharding = parallel.batch_sharding(mesh)
    key = jax.random.key(1)

    def run(state, start, n_calls):
        for c in range(n_calls):
            s0 = start + c * n_jitted
            batches = tuple(
                parallel.global_batch(loop.local_batch(data, s0 + i, bs), sharding)
                for i in range(n_jitted)
            )
            state, metrics = fn(state, batches, key)
        jax.block_until_ready(metrics)
        return state

    state = run(state, 0, 1)  # compile
    calls = max(steps // n_jitted, 1)
    t0 = time.perf_counter()
    run(state, n_jitted, calls)
    secs = time.perf_counter() - t0
    return {
        "devices": jax.device_count(),
        "n_jitted": n_jitted,
        "steps_per_s": calls * n_jitted / secs,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return
    rows = []
    for devices in (1, 8):
        for n_jitted in (1, 10):
            env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
            out = subprocess.run(
                [sys.executable, __file__, "--worker", str(n_jitted), "--steps", str(args.steps)],
                env=env, capture_output=True, text=True, check=True, cwd=ROOT,
            )  # fmt: skip
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["steps_per_s"]
    print(f"# toy VP config (batch 256, MLP 128x3), {os.cpu_count()} CPU cores")
    print("| devices | n_jitted_steps | steps/s | vs 1 device, 1 step/call |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['devices']} | {r['n_jitted']} | {r['steps_per_s']:.1f} | "
              f"{r['steps_per_s'] / base:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
