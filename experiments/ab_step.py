"""A/B variants of a paper config's bare training step, compiled in one process, alternated.

    python experiments/ab_step.py --config ddpmpp --rounds 8 \
        --variant taps JAXDIFF_WINOGRAD_GRAD=off --variant winograd JAXDIFF_WINOGRAD_GRAD=on
    python experiments/ab_step.py --config ddpmpp --variants-file my_variants.py

On a shared CPU whose speed drifts between runs, two steps are compared reliably only in one
process, one step of each in turn: this compiles ``optimizer_step`` (``train_throughput.py``'s
bare step, default ``StepSettings``) once per variant, then runs the variants one step each for
``--rounds`` rounds (after ``--warmup`` untimed rounds; the order reversed every other round)
and prints each variant's median step time and the median of the per-round speed ratios against
the first variant.

A variant is a name and environment settings read when the step is traced (``--variant NAME
VAR=VALUE ...``, e.g. ``JAXDIFF_WINOGRAD_GRAD``, ``JAXDIFF_CONV_GRAD``,
``JAXDIFF_FUSION_BARRIER``) or XLA compiler options for its compile alone (a setting whose name
starts with ``xla_``, e.g. ``xla_cpu_enable_fast_math=true``: what ``XLA_FLAGS`` would set for the
whole process), or an entry of ``VARIANTS = {name: patch}`` in ``--variants-file``,
where ``patch()`` changes what it likes (a module function, for an ablation: e.g. a tangent
replaced by zeros, to see what a computation costs inside the step; the profiler's per-op times
overstate ops that share the cores) and returns a function that undoes it.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
import types
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))


def _split_settings(settings: list[str]) -> tuple[list[tuple[str, str]], dict]:
    """``VAR=VALUE`` settings: (environment pairs, XLA compiler options named ``xla_...``)."""
    pairs, options = [], {}
    for s in settings:
        if "=" not in s:
            raise SystemExit(f"--variant settings are VAR=VALUE, not {s!r}")
        k, v = s.split("=", 1)
        if k.startswith("xla_"):  # typed as XLA's option parser wants them
            low = v.lower()
            options[k] = low == "true" if low in ("true", "false") else int(v) if v.isdigit() else v
        else:
            pairs.append((k, v))
    return pairs, options


def _env_patch(pairs: list[tuple[str, str]]) -> Callable[[], Callable[[], None]]:
    def patch():
        old = {k: os.environ.get(k) for k, _ in pairs}
        os.environ.update(dict(pairs))

        def undo():
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        return undo

    return patch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="ddpmpp", help="a train_throughput.py config")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME VAR=VALUE")
    ap.add_argument("--variants-file", help="a Python file defining VARIANTS = {name: patch}")
    a = ap.parse_args()

    variants: dict[str, Callable] = {}
    options: dict[str, dict] = {}
    for name, *settings in a.variant:
        pairs, options[name] = _split_settings(settings)
        variants[name] = _env_patch(pairs)
    if a.variants_file:
        ns: dict = {}
        with open(a.variants_file) as f:
            exec(compile(f.read(), a.variants_file, "exec"), ns)
        variants.update(ns["VARIANTS"])
    if len(variants) < 2:
        raise SystemExit("give at least two variants (--variant and / or --variants-file)")

    from jaxdiff import hostmem

    hostmem.keep_host_memory()  # as the command line keeps it
    import jax
    import train_throughput as tt

    from jaxdiff.train.step import StepSettings, optimizer_step

    args = types.SimpleNamespace(precision="float32", batch=a.batch)
    method, x, state = tt._setup(a.config, args)
    compiled = {}
    for name, patch in variants.items():
        undo = patch()
        try:
            step = jax.jit(functools.partial(optimizer_step, method, settings=StepSettings()))
            t = time.perf_counter()
            lowered = step.lower(state, {"x": x}, jax.random.key(2))
            compiled[name] = lowered.compile(compiler_options=options.get(name) or None)
            extra = f" with {options[name]}" if options.get(name) else ""
            print(f"# {name}: compiled in {time.perf_counter() - t:.1f} s{extra}", flush=True)
        finally:
            undo()

    names = list(compiled)
    states = dict.fromkeys(names, state)
    times: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, float] = {}
    for r in range(a.warmup + a.rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            states[n], metrics = compiled[n](states[n], {"x": x}, jax.random.key(2))
            losses[n] = float(jax.block_until_ready(metrics["loss"]))
            if r >= a.warmup:
                times[n].append(time.perf_counter() - t)

    print(f"| variant | median s/step | steps (s) | last loss | speed against {names[0]} |")
    print("|---|---|---|---|---|")
    for n in names:
        ratio = statistics.median(b / t for b, t in zip(times[names[0]], times[n], strict=True))
        steps = " ".join(f"{t:.2f}" for t in times[n])
        med = statistics.median(times[n])
        print(f"| {n} | {med:.3f} | {steps} | {losses[n]:.6f} | {ratio:.3f}x |")


if __name__ == "__main__":
    main()
