"""Throughput of the paper networks: forward and forward+backward time per image, compile time,
peak memory (where the backend reports it), float32 vs bfloat16, and XLA's FLOP count.

    python experiments/network_throughput.py --batch 2 --configs ddgan_cifar10_generator

Parameters are initialised inside one jitted function (fast) and the networks are called through
the pure ``apply(params, ...)`` boundary, as the library does. On a GPU, pass a larger ``--batch``
and ``--peak-tflops`` (bf16 dense peak of the chip) to print the fraction of peak reached.
"""

from __future__ import annotations

import argparse
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
    jax.block_until_ready(f(*args))
    t = time.perf_counter()
    for _ in range(reps):
        out = f(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / reps


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def _peak_bytes() -> float | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def bench(name: str, dtype: str, batch: int, reps: int) -> dict:
    cfg = zoo.PAPER_CONFIGS[name]()
    build = lambda: zoo.build_net(cfg, dtype=dtype)  # noqa: E731
    graphdef, _ = nnx.split(nnx.eval_shape(build))
    params = init_params(
        lambda rngs: zoo.build_net(cfg, dtype=dtype, seed=rngs.params()), jax.random.key(0)
    )
    pure = PureNet(graphdef)
    args, kw = _inputs(name, cfg, batch, jax.random.key(0))

    fwd = jax.jit(lambda p, *a: pure.apply(p, *a, **kw))
    loss = lambda p, *a: _scalar(pure.apply(p, *a, **kw))  # noqa: E731
    bwd = jax.jit(jax.value_and_grad(loss))
    row = {"net": name, "dtype": dtype, "batch": batch}
    for label, f in (("fwd", fwd), ("fwd+bwd", bwd)):
        t = time.perf_counter()
        compiled = f.lower(params, *args).compile()
        row[f"{label} compile s"] = time.perf_counter() - t
        row[f"{label} GFLOP/img"] = _flops(compiled) / batch / 1e9
        row[f"{label} ms/img"] = 1e3 * _timeit(compiled, params, *args, reps=reps) / batch
    peak = _peak_bytes()
    row["peak MiB"] = "n/a (CPU)" if peak is None else f"{peak / 2**20:.0f}"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="*", default=sorted(zoo.PAPER_CONFIGS))
    ap.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=None, help="chip bf16 peak, for MFU")
    args = ap.parse_args()
    print(f"# backend={jax.default_backend()} devices={jax.devices()}")
    cols = [
        "net",
        "dtype",
        "batch",
        "fwd compile s",
        "fwd ms/img",
        "fwd GFLOP/img",
        "fwd+bwd compile s",
        "fwd+bwd ms/img",
        "fwd+bwd GFLOP/img",
        "peak MiB",
    ]
    if args.peak_tflops:
        cols.append("fwd+bwd % peak")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for name in args.configs:
        for dtype in args.dtypes:
            row = bench(name, dtype, args.batch, args.reps)
            if args.peak_tflops:
                achieved = row["fwd+bwd GFLOP/img"] / (row["fwd+bwd ms/img"] / 1e3) / 1e3
                row["fwd+bwd % peak"] = 100 * achieved / args.peak_tflops
            cells = [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
