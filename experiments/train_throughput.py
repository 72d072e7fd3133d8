"""Training throughput: the trainer's step against the bare jitted step and the networks alone.

Paper configs (CIFAR-10 networks at full size, random images, one process), in one run, rows
printed as they are measured:

* ``fwd+bwd``: the networks' forward and backward pass alone (the score network; DDGAN's G into
  D; LSGM: the method's gradients of NVAE + latent prior, its whole loss);
* ``bare``: ``jax.jit(optimizer_step)`` on one batch (loss, gradients, optimiser, EMA), no
  donation, no shardings;
* ``trainer n=K``: ``jaxdiff.train.loop.make_train_fn`` (what ``jaxdiff train`` runs: sharded
  over the 'data' mesh, state donated, key ``fold_in(key, step)``) with K steps per call, per
  step, with the way it ran the K steps (``StepSettings.steps_loop``: dispatch / unroll / scan).

Seconds per step are medians over ``--reps`` calls after the first two; compile time is the first
call's excess (the bare step: lowering + compilation). TFLOP/step is XLA's count of the lowered
bare step (lowered for the CPU where the accelerator reports none); with ``--peak-tflops`` (the
chip's peak at the measured precision) the MFU of each row is ``flops / (seconds * peak)``.

``--trace DIR``: two calls of the first ``--jitted`` trainer row of each config traced with
``jax.profiler`` into ``DIR/CONFIG-bBATCH-nK`` (``experiments/trace_summary.py`` reads them).

``--host-malloc default`` leaves glibc's malloc settings alone; by default the freed host heap is
kept between steps as the command line keeps it (``jaxdiff/hostmem.py``: XLA's CPU temporaries are
otherwise faulted in afresh every step).

``--toy``: the older table instead, the toy VP config's steps/s on 1 and 8 forced CPU devices at
n_jitted_steps 1 and 10 (each device count in its own process).

DDGAN runs with R1 on every step (``lazy_reg`` off, as the official comparison in
``experiments/official_speed.py``): with the config's ``lazy_reg`` 15 the step's time would
depend on the step number (``lax.cond``).

    python experiments/train_throughput.py [--configs ddpmpp cld ddgan lsgm] [--batch 8]
        [--reps 2] [--jitted 1 5] [--precision float32] [--loop auto] [--peak-tflops T]
        [--no-fwd-bwd] [--json rows.json] [--trace DIR] [--host-malloc keep|default]
    python experiments/train_throughput.py --toy [--steps 400]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CONFIGS = {
    "ddpmpp": "configs.vp.cifar10_ddpmpp",
    "cld": "configs.cld.cifar10",
    "ddgan": "configs.ddgan.cifar10",
    "lsgm": "configs.lsgm.cifar10",
}


def _timed(fn, reps: int) -> tuple[float, float]:
    """(first call, median of ``reps`` calls after one more untimed call) in seconds. The extra
    call lets the host heap settle: kept (``jaxdiff/hostmem.py``), it grows in the first two calls
    of a large program and is reused from the third."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    jax.block_until_ready(fn())
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def _fwd_bwd(method, state, x):
    """(jitted gradient function, its arguments): the networks' forward + backward alone."""
    import jax
    import jax.numpy as jnp

    b = x.shape[0]
    if "score" in state.params:
        t = jnp.linspace(0.1, 0.9, b)
        cin, _ = method.objective.net_channels(x.shape[-1])
        xin = jnp.concatenate([x] * (cin // x.shape[-1]), -1)
        return jax.jit(jax.grad(lambda p: jnp.sum(method.net.apply(p, xin, t)))), (
            state.params["score"],
        )
    if "G" in state.params:
        labels = jnp.zeros((b,), jnp.int32)
        z = jnp.zeros((b, method.nz))

        def loss(g, d):
            return jnp.sum(method.D.apply(d, method.G.apply(g, x, labels, z), x, labels))

        return jax.jit(jax.grad(loss, argnums=(0, 1))), (state.params["G"], state.params["D"])
    keys = jax.random.split(jax.random.key(4), b)  # LSGM: its loss over all phases

    def grads(state):
        return [method.grads(p, state, {"x": x}, keys).grads for p in range(len(method.phases))]

    return jax.jit(grads), (state,)


def _flops(stage) -> float:
    cost = stage.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float((cost or {}).get("flops", 0.0))


def _step_flops(jitted, *args) -> float:
    """XLA's FLOP count of the lowered step (a multiply-add counts 2). Accelerators report none
    for the lowered stage and 0 for cuDNN convolutions once compiled, so there the same program
    is lowered for the CPU (the count is the program's, not the backend's)."""
    flops = _flops(jitted.lower(*args))
    if not flops:
        flops = _flops(jitted.trace(*args).lower(lowering_platforms=("cpu",)))
    return flops


def _setup(name: str, args):
    """(method, one batch ``x``, initial state) of a paper config at ``args.batch``."""
    import jax

    from jaxdiff.build import build_method

    config = importlib.import_module(CONFIGS[name]).get_config()
    config.training.precision = args.precision
    config.training.batch_size = args.batch
    if name == "ddgan":
        config.ddgan.lazy_reg = 0  # R1 on every step (the official comparison's D step)
    method = build_method(config, data_shape=(32, 32, 3))
    x = jax.random.uniform(jax.random.key(0), (args.batch, 32, 32, 3), minval=-1, maxval=1)
    return method, x, method.init(jax.random.key(1), {"x": x})


def _bare_call(method, state, x, count_flops: bool = True):
    """(call, compile seconds, FLOP count or 0): one bare step per call, state carried."""
    import jax

    from jaxdiff.train.step import StepSettings, optimizer_step

    step = jax.jit(functools.partial(optimizer_step, method, settings=StepSettings()))
    flops = _step_flops(step, state, {"x": x}, jax.random.key(2)) if count_flops else 0.0
    t0 = time.perf_counter()
    compiled = step.lower(state, {"x": x}, jax.random.key(2)).compile()
    compile_s = time.perf_counter() - t0
    holder = {"s": state}

    def call():
        holder["s"], m = compiled(holder["s"], {"x": x}, jax.random.key(2))
        return m["loss"]

    return call, compile_s, flops


def _trainer_call(method, host_state, x, n: int, loop_mode: str):
    """(call, train fn): ``make_train_fn`` with ``n`` steps per call, state carried; the fn's
    ``steps_loop`` (how it ran the steps) is set by its first call."""
    import jax
    import numpy as np

    from jaxdiff.train import loop, parallel
    from jaxdiff.train.step import StepSettings

    mesh = parallel.make_mesh()
    sharding = parallel.batch_sharding(mesh)
    fn = loop.make_train_fn(method, mesh, n, StepSettings(loop=loop_mode))
    holder = {"s": parallel.replicate(host_state, mesh)}
    batches = tuple(parallel.global_batch({"x": np.asarray(x)}, sharding) for _ in range(n))

    def call():
        holder["s"], m = fn(holder["s"], batches, jax.random.key(3))
        return m["loss"]

    return call, fn


def _trace(call, trace_dir: str, calls: int = 2) -> None:
    """``calls`` calls of ``call`` under ``jax.profiler.trace`` (Perfetto JSON in ``trace_dir``;
    ``experiments/trace_summary.py`` sums its device kernels)."""
    import jax

    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(calls):
            jax.block_until_ready(call())


def run(name: str, args):
    """Yields one row (a dict) per measurement, as soon as it is measured."""
    import jax

    from jaxdiff import hostmem

    method, x, state = _setup(name, args)
    host_state = jax.device_get(state)
    row = dict(config=name)

    if args.fwd_bwd:
        grad_fn, grad_args = _fwd_bwd(method, state, x)
        first, med = _timed(lambda: grad_fn(*grad_args), args.reps)
        yield dict(row, what="fwd+bwd", s=med, compile_s=first - med)
        del grad_fn, grad_args
        hostmem.release()

    bare, compile_s, flops = _bare_call(method, state, x)
    first, bare_s = _timed(bare, args.reps)
    del bare, state  # the trainer rows start from host_state: one device copy fewer (CLD: 1.6 GB)
    hostmem.release()  # the next program's temporaries must not stack on these (hostmem.py)
    yield dict(row, what="bare step", s=bare_s, compile_s=compile_s + first - bare_s, flops=flops)

    for n in args.jitted:
        trainer, fn = _trainer_call(method, host_state, x, n, args.loop)
        first, med = _timed(trainer, args.reps)
        how = fn.steps_loop
        if args.trace and n == args.jitted[0]:
            _trace(trainer, os.path.join(args.trace, f"{name}-b{args.batch}-n{n}"))
        del trainer, fn
        hostmem.release()
        yield dict(
            row, what=f"trainer n={n} {how}", s=med / n, compile_s=first - med,
            ratio=med / n / bare_s, flops=flops,
        )  # fmt: skip


def serve(name: str, what: str, args) -> None:
    """Lock-step server for ``official_speed.py --lockstep``: build ``what`` (``bare`` or
    ``trainerN``), call it twice, print one JSON line; then per stdin line ``run``, time one
    call and print its seconds per step; exit at end of input."""
    import jax

    method, x, state = _setup(name, args)
    t0 = time.perf_counter()
    if what == "bare":
        call, fn, n = _bare_call(method, state, x, count_flops=False)[0], None, 1
    else:
        n = int(what.removeprefix("trainer"))
        call, fn = _trainer_call(method, jax.device_get(state), x, n, args.loop)
    del state
    for _ in range(2):  # the compile, then the kept heap's growth (see _timed)
        jax.block_until_ready(call())
    how = "bare step" if fn is None else f"trainer n={n} {fn.steps_loop}"  # set by the 1st call
    print(json.dumps(dict(what=how, warm_s=time.perf_counter() - t0)), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        print(json.dumps(dict(s=(time.perf_counter() - t0) / n)), flush=True)


# ----------------------------------------------------------------------------------------------
# The toy table: 1 vs 8 forced CPU devices


def toy_worker(n_jitted: int, steps: int) -> dict:
    import jax

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

    def steps_from(state, start, n_calls):
        for c in range(n_calls):
            s0 = start + c * n_jitted
            batches = tuple(
                parallel.global_batch(loop.local_batch(data, s0 + i, bs), sharding)
                for i in range(n_jitted)
            )
            state, metrics = fn(state, batches, key)
        jax.block_until_ready(metrics)
        return state

    state = steps_from(state, 0, 1)  # compile
    calls = max(steps // n_jitted, 1)
    t0 = time.perf_counter()
    steps_from(state, n_jitted, calls)
    secs = time.perf_counter() - t0
    return {
        "devices": jax.device_count(),
        "n_jitted": n_jitted,
        "steps_per_s": calls * n_jitted / secs,
    }


def toy_table(steps: int) -> None:
    rows = []
    for devices in (1, 8):
        for n_jitted in (1, 10):
            env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
            out = subprocess.run(
                [sys.executable, __file__, "--toy-worker", str(n_jitted), "--steps", str(steps)],
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--jitted", type=int, nargs="*", default=[1, 5])
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--loop", default="auto", choices=["auto", "dispatch", "unroll", "scan"])
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="peak TFLOP/s for the MFU")
    ap.add_argument("--no-fwd-bwd", dest="fwd_bwd", action="store_false", help="skip fwd+bwd")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    ap.add_argument("--trace", default="", help="trace 2 trainer calls of the first --jitted here")
    ap.add_argument(
        "--host-malloc",
        default="keep",
        choices=["keep", "default"],
        help="JAXDIFF_HOST_MALLOC (jaxdiff/hostmem.py): keep the freed heap or not",
    )
    ap.add_argument("--toy", action="store_true", help="the toy 1 vs 8 device table instead")
    ap.add_argument("--steps", type=int, default=400, help="--toy: steps timed")
    ap.add_argument("--toy-worker", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--serve", nargs=2, metavar=("CONFIG", "WHAT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.toy_worker:
        print(json.dumps(toy_worker(args.toy_worker, args.steps)))
        return
    if args.toy:
        toy_table(args.steps)
        return
    os.environ["JAXDIFF_HOST_MALLOC"] = args.host_malloc
    from jaxdiff import hostmem

    kept = hostmem.keep_host_memory()  # as `jaxdiff train` does, before JAX starts
    if args.serve:
        serve(*args.serve, args)
        return
    import jax

    print(f"# backend {jax.default_backend()}, {jax.device_count()} device(s), "
          f"batch {args.batch}, {args.precision}, loop {args.loop}, "
          f"host heap {'kept' if kept else 'glibc default'}")  # fmt: skip
    print("| config | what | s/step | img/s | compile s | / bare | TFLOP/step | MFU |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.configs:
        for r in run(name, args):
            rows.append(r)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
            ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
            tf = f"{r['flops'] / 1e12:.3f}" if r.get("flops") else ""
            mfu = ""
            if args.peak_tflops and r.get("flops"):
                mfu = f"{100 * r['flops'] / (r['s'] * args.peak_tflops * 1e12):.1f}%"
            print(f"| {r['config']} | {r['what']} | {r['s']:.3f} | {args.batch / r['s']:.1f} | "
                  f"{r['compile_s']:.1f} | {ratio} | {tf} | {mfu} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
