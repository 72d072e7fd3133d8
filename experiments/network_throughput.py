"""Throughput of the paper networks: forward and forward+backward time per image, compile time,
memory, float32 vs bfloat16, and XLA's FLOP count.

    python experiments/network_throughput.py --batch 2 --configs ddgan_cifar10_generator

Parameters are initialised inside one jitted function (fast) and the networks are called through
the pure ``apply(params, ...)`` boundary, as the library does. Memory is XLA's own account of the
compiled program (arguments + outputs + temporaries - aliased), reported the same way on every
backend (the allocator's high-water mark would mix configs run in one process). On a GPU, pass a
larger ``--batch`` and ``--peak-tflops`` (bf16 dense peak of the chip) for images/s and the
fraction of peak.

Two-phase use on a many-core GPU host (``experiments/device_throughput.sh``): ``--compile-only``
in several processes at once fills JAX's persistent compilation cache and writes the compile times
to ``--json``; a single timing process then loads every program from the cache
(``--compile-times`` reads the first phase's figures into its table).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdiff.nets import zoo
from jaxdiff.nets.functional import PureNet, init_params


def _inputs(name: str, cfg, b: int, key: jax.Array):
    """Example inputs (batch b) for each kind of network."""
    k0, k1, k2 = jax.random.split(key, 3)
    if cfg.name == "ncsnpp":
        x = jax.random.normal(k0, (b, cfg.image_size, cfg.image_size, cfg.in_ch))
        if cfg.get("nz", 0):
            return (x, jnp.zeros((b,), jnp.int32), jax.random.normal(k1, (b, cfg.nz))), {}
        return (x, jax.random.uniform(k1, (b,), minval=0.01)), {"key": k2}
    if cfg.name == "ddgan_discriminator":
        s = 256 if len(cfg.widths) == 6 else 32
        x = jax.random.normal(k0, (b, s, s, cfg.channels))
        return (x, x, jnp.zeros((b,), jnp.int32)), {}
    if cfg.name in ("nvae", "conv_vae"):
        x = jax.random.normal(k0, (b, cfg.image_size, cfg.image_size, cfg.in_ch))
        return (x, k1), {}
    raise ValueError(name)


def _scalar(out) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(out) if jnp.issubdtype(x.dtype, jnp.floating)]
    return sum(jnp.mean(jnp.square(x.astype(jnp.float32))) for x in leaves)


def _timeit(f, *args, reps: int) -> float:
    """Median wall time of ``reps`` synchronised calls, after one warm-up call."""
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _flops(stage) -> float:
    cost = stage.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def _program_mib(compiled) -> float:
    """XLA's memory account of one compiled program: arguments + outputs + temporaries - aliased."""
    m = compiled.memory_analysis()
    if m is None:
        return float("nan")
    total = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )
    return total / 2**20


def _programs(name: str, dtype: str, batch: int, abstract: bool = False):
    """(params, args, {label: jitted function}) for one config; ``abstract``: shapes only."""
    cfg = zoo.PAPER_CONFIGS[name]()
    graphdef, shapes = nnx.split(zoo.build_net_abstract(cfg, dtype=dtype))
    if abstract:
        params = nnx.to_pure_dict(shapes)
    else:
        make = lambda rngs: zoo.build_net(cfg, dtype=dtype, seed=rngs.params())  # noqa: E731
        params = init_params(make, jax.random.key(0))
    pure = PureNet(graphdef)
    args, kw = _inputs(name, cfg, batch, jax.random.key(0))
    fwd = jax.jit(lambda p, *a: pure.apply(p, *a, **kw))
    loss = lambda p, *a: _scalar(pure.apply(p, *a, **kw))  # noqa: E731
    bwd = jax.jit(jax.value_and_grad(loss))
    return params, args, {"fwd": fwd, "fwd+bwd": bwd}


def flops(name: str, dtype: str, batch: int) -> dict:
    """XLA's FLOP count per image of the lowered (unoptimised) programs, nothing compiled or run.
    This is how the GPU rows get their FLOPs: a GPU's compiled module counts cuDNN convolutions as
    0 FLOPs, and its lowered stage reports none."""
    params, args, fns = _programs(name, dtype, batch, abstract=True)
    row = {"net": name, "dtype": dtype, "batch": batch}
    for label, f in fns.items():
        row[f"{label} GFLOP/img"] = _flops(f.lower(params, *args)) / batch / 1e9
    return row


def bench(name: str, dtype: str, batch: int, reps: int, time_it: bool = True) -> dict:
    params, args, fns = _programs(name, dtype, batch)
    row = {"net": name, "dtype": dtype, "batch": batch}
    for label, f in fns.items():
        t = time.perf_counter()
        lowered = f.lower(params, *args)
        compiled = lowered.compile()
        row[f"{label} compile s"] = time.perf_counter() - t
        # The lowered (unoptimised) HLO's count, as the CPU gives it. A GPU reports none for the
        # lowered stage and 0 for the cuDNN convolutions of the compiled one: use --flops-only.
        row[f"{label} GFLOP/img"] = _flops(lowered) / batch / 1e9
        row[f"{label} MiB"] = _program_mib(compiled)
        if time_it:
            row[f"{label} ms/img"] = 1e3 * _timeit(compiled, params, *args, reps=reps) / batch
    return row


def _batches(spec: list[str], default: int) -> dict[str, int]:
    out = {}
    for item in spec:
        name, _, b = item.partition("=")
        if name not in zoo.PAPER_CONFIGS or not b.isdigit():
            raise SystemExit(f"--batch-for expects NAME=INT with NAME a paper config, got {item!r}")
        out[name] = int(b)
    return {n: out.get(n, default) for n in zoo.PAPER_CONFIGS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="*", default=sorted(zoo.PAPER_CONFIGS))
    ap.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--batch-for", nargs="*", default=[], help="per-config batch: NAME=INT ...")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=None, help="chip bf16 peak, for MFU")
    ap.add_argument("--compile-only", action="store_true", help="compile, record, do not time")
    ap.add_argument("--flops-only", action="store_true", help="lower only: FLOPs per image")
    ap.add_argument("--json", default=None, help="append each row as a JSON line to this file")
    ap.add_argument("--compile-times", nargs="*", default=[], help="JSON-line files of phase 1")
    args = ap.parse_args()
    unknown = [c for c in args.configs if c not in zoo.PAPER_CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; known: {sorted(zoo.PAPER_CONFIGS)}")
    batches = _batches(args.batch_for, args.batch)
    earlier = {}
    for path in args.compile_times:
        with open(path) as fh:
            for line in fh:
                r = json.loads(line)
                earlier[(r["net"], r["dtype"], r["batch"])] = r
    print(f"# backend={jax.default_backend()} devices={jax.devices()} jax={jax.__version__}")
    cols = ["net", "dtype", "batch", "fwd compile s", "fwd ms/img", "fwd GFLOP/img", "fwd MiB"]
    cols += ["fwd+bwd compile s", "fwd+bwd ms/img", "fwd+bwd GFLOP/img", "fwd+bwd MiB"]
    if args.compile_only:
        cols = [c for c in cols if "ms/img" not in c]
    if args.flops_only:
        cols = [c for c in cols if "GFLOP" in c or c in ("net", "dtype", "batch")]
    if args.peak_tflops and not (args.compile_only or args.flops_only):
        cols += ["fwd+bwd img/s", "fwd % peak", "fwd+bwd % peak"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols), flush=True)
    for name in args.configs:
        for dtype in args.dtypes:
            batch = batches[name]
            try:
                if args.flops_only:
                    row = flops(name, dtype, batch)
                else:
                    row = bench(name, dtype, batch, args.reps, time_it=not args.compile_only)
            except Exception as e:  # one failing config must not lose the others' rows
                print(f"| {name} | {dtype} | {batch} | FAILED: {type(e).__name__}: {e} |")
                continue
            if (name, dtype, batch) in earlier:  # compile times of a cold cache (phase 1)
                for label in ("fwd", "fwd+bwd"):
                    row[f"{label} compile s"] = earlier[(name, dtype, batch)][f"{label} compile s"]
            if args.peak_tflops and not (args.compile_only or args.flops_only):
                row["fwd+bwd img/s"] = 1e3 / row["fwd+bwd ms/img"]
                for label in ("fwd", "fwd+bwd"):
                    tflops = row[f"{label} GFLOP/img"] / row[f"{label} ms/img"]  # GFLOP/ms
                    row[f"{label} % peak"] = 100 * tflops / args.peak_tflops
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            cells = [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
