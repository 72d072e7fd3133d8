"""Where a traced step's device time goes: the kernels of a ``jax.profiler`` trace, summed.

    python experiments/trace_summary.py TRACE_DIR_OR_FILE [--calls 2] [--top 25]

Reads the Perfetto JSON (``*.trace.json.gz``) that ``train_throughput.py --trace`` writes and
prints, per traced call (``--calls``: how many calls the trace holds):

* the trace's processes and device lines (only the streams' kernels are summed, not derived
  lines such as "XLA Ops" that repeat them; a trace without device lines says so);
* the device's busy time (the union of its kernels' intervals) against the traced span, whose
  difference is time the device waited on the host (launches, Python, transfers);
* kernel time by kind (convolutions and matmuls, XLA fusions, reductions, copies and transposes,
  memsets, other), read from the kernel's name and its HLO op where the trace gives one;
* the ``--top`` kernels by summed time, with their counts.

On a CPU trace (no device lines) the XLA ops of the host threads are summed instead.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re

from profile_step import RUNTIME  # the CPU runtime's own frames, not XLA ops

KINDS = (
    ("conv/matmul", r"xmma|gemm|cutlass|cudnn|conv|wgmma|sm90|sm80|dgrad|wgrad|fprop|cublas|dot"),
    ("reduction", r"reduce|reduction"),
    ("copy/transpose", r"copy|transpose|memcpy|concatenate|slice|pad"),
    ("memset", r"memset"),
    ("fusion", r"fusion|loop_|input_|triton|fused"),
)


def kind(name: str) -> str:
    low = name.lower()
    for k, pattern in KINDS:
        if re.search(pattern, low):
            return k
    return "other"


def load(path: str) -> list[dict]:
    if os.path.isdir(path):
        found = glob.glob(os.path.join(path, "**", "*.trace.json.gz"), recursive=True)
        if not found:
            raise SystemExit(f"no *.trace.json.gz under {path}")
        path = sorted(found)[-1]
    with gzip.open(path) as f:
        return json.load(f)["traceEvents"]


def busy(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def summarise(events: list[dict], calls: int, top: int) -> None:
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}  # fmt: skip
    print("processes:", "; ".join(f"{p}: {n}" for p, n in sorted(names.items())))
    device = {p for p, n in names.items() if re.search(r"gpu|tpu|device", n.lower())}
    device -= {p for p, n in names.items() if "host" in n.lower()}
    ops = [e for e in events if e.get("ph") == "X" and "dur" in e]
    if device:
        ops = [e for e in ops if e["pid"] in device]
        threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
                   if e.get("ph") == "M" and e.get("name") == "thread_name"}  # fmt: skip
        print("device lines:", "; ".join(sorted({threads.get((e["pid"], e["tid"]), "?")
                                                 for e in ops})))  # fmt: skip
        streams = {k for k, n in threads.items() if "stream" in n.lower() and k[0] in device}
        if streams:  # kernels only: not the derived "XLA Ops" / "XLA Modules" lines
            ops = [e for e in ops if (e["pid"], e["tid"]) in streams]
    else:
        print("no device process: summing the host's XLA ops")
        ops = [e for e in ops if not e["name"].startswith(RUNTIME)]
    if not ops:
        raise SystemExit("no op events in the trace")
    span = (max(e["ts"] + e["dur"] for e in ops) - min(e["ts"] for e in ops)) / 1e3
    on = busy([(e["ts"], e["ts"] + e["dur"]) for e in ops]) / 1e3
    total = sum(e["dur"] for e in ops) / 1e3
    print(f"per call: {len(ops) / calls:.0f} kernels, {total / calls:.2f} ms kernel time, "
          f"device busy {on / calls:.2f} ms of a {span / calls:.2f} ms span "
          f"({100 * on / span:.1f}% busy)")  # fmt: skip

    by_kind = collections.defaultdict(lambda: [0, 0.0])
    by_name = collections.defaultdict(lambda: [0, 0.0, ""])
    for e in ops:
        args = e.get("args") or {}
        hlo = str(args.get("hlo_op", "") or args.get("long_name", ""))
        k = kind(e["name"] + " " + hlo)
        by_kind[k][0] += 1
        by_kind[k][1] += e["dur"] / 1e3
        row = by_name[e["name"]]
        row[0] += 1
        row[1] += e["dur"] / 1e3
        row[2] = row[2] or hlo
    print("\n| kind | kernels per call | ms per call | share |")
    print("|---|---|---|---|")
    for k, (n, ms) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"| {k} | {n / calls:.0f} | {ms / calls:.2f} | {100 * ms / total:.1f}% |")
    print("\n| top kernels | count per call | ms per call | share | HLO op |")
    print("|---|---|---|---|---|")
    for name, (n, ms, hlo) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"| {name[:90]} | {n / calls:.0f} | {ms / calls:.3f} | {100 * ms / total:.1f}% | "
              f"{hlo[:40]} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", help="a trace directory or a *.trace.json.gz file")
    ap.add_argument("--calls", type=int, default=2, help="calls the trace holds")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    summarise(load(args.path), args.calls, args.top)


if __name__ == "__main__":
    main()
