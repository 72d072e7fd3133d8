"""Where a bare training step's time goes on the CPU: one traced step of a paper config, summed.

    python experiments/profile_step.py [--config ddpmpp|cld|ddgan|lsgm] [--batch 8]
        [--warmup 3] [--out /tmp/jaxdiff_profile] [--top 15] [--no-hlo]

The step is ``train_throughput.py``'s bare step (``optimizer_step`` jitted alone, the host heap
kept as the command line keeps it). After ``--warmup`` untimed steps it prints, per step, wall
time, user / system CPU seconds and minor page faults (``getrusage``), then traces one step
(``jax.profiler.trace``, Perfetto JSON) and prints from the trace:

* the op executions (XLA thunks, runtime frames left out) by kind: count and summed time;
* how many ops ran at once over the step (0 = no op running: runtime gaps), and the kinds of the
  ops that the gaps precede;
* the ``--top`` longest single ops;
* unless ``--no-hlo``: each YNNPACK fusion's convolution / dot FLOPs, read from the optimised HLO
  (dumped by ``--xla_dump_to``), as GFLOP/s of the "pure" fusions (one convolution or dot) and of
  those that also reduce, and the dots that XLA left to Eigen (not YNNPACK) with their shapes.

Op times are wall times on the thread that ran the op: an op that shares the two cores with
another reads slower than alone (docs/networks.md, session 13).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

RUNTIME = ("$", "ThunkExecutor", "Pjit", "Slinky", "Common", "end:", "Threadpool", "Wait for")
RUNTIME += ("PythonRefManager", "ParseArguments", "Handle inputs", "AllocateOutputBuffers")


def _kind(name: str) -> str:
    return re.sub(r"\.\d+$", "", name)


def _ops(trace_dir: str) -> list[dict]:
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    events = json.load(gzip.open(path))["traceEvents"]
    return [e for e in events if e.get("ph") == "X" and not e["name"].startswith(RUNTIME)]


def _concurrency(ops: list[dict]) -> tuple[dict, collections.Counter]:
    """(seconds with k ops running, for each k; gap seconds by the kind of the op that ends it)."""
    points = sorted(
        [(e["ts"], 1, e) for e in ops] + [(e["ts"] + e["dur"], -1, e) for e in ops],
        key=lambda p: (p[0], p[1]),
    )
    running, last, hist, gaps = 0, None, collections.Counter(), collections.Counter()
    for t, delta, e in points:
        if last is not None:
            hist[running] += (t - last) / 1e6
            if running == 0 and delta == 1:
                gaps[_kind(e["name"])] += (t - last) / 1e6
        running, last = running + delta, t
    return dict(sorted(hist.items())), gaps


def _hlo_fusions(dump_dir: str) -> tuple[dict, list[str]]:
    """({ynn fusion name: (FLOPs, other op kinds in it)}, the dots outside YNNPACK fusions)."""
    files = glob.glob(os.path.join(dump_dir, "*optimizer_step*cpu_after_optimizations.txt"))
    text = open(max(files, key=os.path.getsize)).read()
    bodies = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^(%[\w.]+) \(.*?\{\n(.*?)^\}", text, re.M | re.S)
    }
    calls = dict(re.findall(r"^\s*%(ynn_fusion[.\d]*) = .*?calls=(%[\w.]+)", text, re.M))

    def dims(s: str) -> list[int]:
        return [int(v) for v in s.split(",")] if s else []

    def flops(body: str) -> tuple[float, list[str]]:
        total, others = 0.0, []
        shapes = dict(re.findall(r"(%[\w.]+) = f32\[([\d,]*)\]", body))
        for line in body.splitlines():
            m = re.search(r"= f32\[([\d,]*)\]\S* (convolution|dot)\((%[\w.]+), (%[\w.]+)\)", line)
            if m:
                out, lhs, rhs = dims(m.group(1)), dims(shapes[m.group(3)]), dims(shapes[m.group(4)])
                if m.group(2) == "convolution":  # HWIO kernel: kh kw ci per output element
                    k = rhs[0] * rhs[1] * rhs[2]
                else:
                    cd = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line).group(1)
                    k = 1
                    for d in dims(cd):
                        k *= lhs[d]
                n = 1
                for v in out:
                    n *= v
                total += 2.0 * n * k
                continue
            op = re.search(r"= \S+ ([a-z][\w-]*)\(", line)
            if op and op.group(1) not in ("parameter", "bitcast", "constant"):
                others.append(op.group(1))
        return total, others

    ynn = {name: flops(bodies.get(comp, "")) for name, comp in calls.items()}
    eigen = [
        re.sub(r", metadata=.*", "", line.strip())
        for line in text.splitlines()
        if re.match(r"^\s+%dot[.\d]* = ", line)
    ]
    return ynn, eigen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="ddpmpp", choices=["ddpmpp", "cld", "ddgan", "lsgm"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps (the heap settles)")
    ap.add_argument("--steps", type=int, default=2, help="steps timed with getrusage")
    ap.add_argument("--out", default="/tmp/jaxdiff_profile", help="trace and HLO dump folder")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-hlo", dest="hlo", action="store_false", help="skip the HLO dump")
    args = ap.parse_args()

    dump = os.path.join(args.out, "hlo")
    if args.hlo:  # before JAX reads its flags
        flags = f"--xla_dump_to={dump} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*step.*"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    from jaxdiff import hostmem

    hostmem.keep_host_memory()
    import jax
    import train_throughput as tt

    method, x, state = tt._setup(args.config, args)
    call, compile_s, _ = tt._bare_call(method, state, x, count_flops=False)
    print(f"{args.config}, batch {args.batch}, {args.precision}: compile {compile_s:.1f} s")
    for _ in range(args.warmup):
        jax.block_until_ready(call())
    for _ in range(args.steps):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        jax.block_until_ready(call())
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        print(
            f"step {wall:.3f} s, user {r1.ru_utime - r0.ru_utime:.2f} s, "
            f"system {r1.ru_stime - r0.ru_stime:.2f} s, minor faults {r1.ru_minflt - r0.ru_minflt}"
        )
    trace_dir = os.path.join(args.out, "trace")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        wall = time.perf_counter() - t0
    ops = _ops(trace_dir)
    total = sum(e["dur"] for e in ops) / 1e6
    print(f"\ntraced step {wall:.3f} s: {len(ops)} op executions, {total:.3f} s of op time")

    by_kind = collections.defaultdict(lambda: [0, 0.0])
    for e in ops:
        by_kind[_kind(e["name"])][0] += 1
        by_kind[_kind(e["name"])][1] += e["dur"] / 1e6
    print("\n| op kind | executions | seconds | share of op time |\n|---|---|---|---|")
    for kind, (n, s) in sorted(by_kind.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"| {kind} | {n} | {s:.3f} | {s / total:.1%} |")

    hist, gaps = _concurrency(ops)
    print("\nops running at once: " + ", ".join(f"{k}: {s:.3f} s" for k, s in hist.items()))
    before = ", ".join(f"{k} {s:.3f} s" for k, s in gaps.most_common(5))
    print(f"gaps (no op running) before: {before}")

    print("\n| longest ops | ms |\n|---|---|")
    for e in sorted(ops, key=lambda e: -e["dur"])[: args.top]:
        print(f"| {e['name']} | {e['dur'] / 1e3:.1f} |")

    if args.hlo:
        ynn, eigen = _hlo_fusions(dump)
        seconds = collections.defaultdict(float)
        for e in ops:
            if e["name"] in ynn:
                seconds[e["name"]] += e["dur"] / 1e6
        print("\n| YNNPACK fusions | count | seconds | GFLOP | GFLOP/s |\n|---|---|---|---|---|")
        for label, keep in (("one convolution or dot", False), ("with reductions", True)):
            names = [n for n in seconds if bool(ynn[n][1]) == keep]
            s, f = sum(seconds[n] for n in names), sum(ynn[n][0] for n in names)
            rate = f / max(s, 1e-9) / 1e9
            print(f"| {label} | {len(names)} | {s:.3f} | {f / 1e9:.1f} | {rate:.0f} |")
        eigen_s = sum(e["dur"] for e in ops if _kind(e["name"]) == "dot") / 1e6
        print(f"\n{len(eigen)} dots left to Eigen ({eigen_s:.3f} s of traced op time), e.g.:")
        for line in eigen[:3]:
            print("  " + line[:160])


if __name__ == "__main__":
    main()
