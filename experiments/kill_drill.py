"""Kill drill: a toy run killed again and again, restarted by the same command each time.

Issue 18's acceptance. One toy VP run (``configs/toy/vp.py``, a small MLP) is trained once
without interruption and once under a scheduler's abuse: SIGKILL at random moments (some
aimed at a checkpoint write: sent as soon as orbax's temporary directory appears) and SIGTERM
at random moments, the attempts restarted with the same command until the run completes. The
final parameters, EMA and optimiser state of both must be bit-identical (XLA on the CPU is
deterministic for a fixed device count). Prints one row per interruption (the moment after
training got under way, signal, exit status, whether a checkpoint write was in flight, the
last logged step, the step the next attempt resumed from, steps lost) and the goodput split of
the drilled run (``workdir/goodput.json``).

    python experiments/kill_drill.py                      # 10 SIGKILLs + 5 SIGTERMs
    python experiments/kill_drill.py --kills 2 --terms 1 --steps 6000   # the CI size
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def command(workdir: str, steps: int, ckpt_every: int) -> list[str]:
    """The one command line of the run (used for every attempt)."""
    return [sys.executable, "-m", "jaxdiff", "train", "--config", "configs/toy/vp.py",
            "--workdir", workdir, "--noprogress", "--config.model.hidden=32",
            "--config.model.depth=1", "--config.training.batch_size=64",
            "--config.training.n_jitted_steps=10", "--config.training.log_every=50",
            f"--config.training.ckpt_every={ckpt_every}", f"--config.training.num_steps={steps}",
            "--config.training.eval_at_end=False", "--config.sampling.num=16",
            "--config.sampling.steps=5"]  # fmt: skip


def _env() -> dict[str, str]:
    return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")


def _last_logged(workdir: str, offset: int = 0) -> int:
    """The last step in ``metrics.jsonl`` past byte ``offset`` (this attempt's rows), or -1."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
            f.seek(offset)
            lines = f.read().decode().splitlines()
    except OSError:
        return -1
    steps = [-1]
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):  # a line being written
            pass
    return max(steps)


def _log_size(workdir: str) -> int:
    try:
        return os.path.getsize(os.path.join(workdir, "metrics.jsonl"))
    except OSError:
        return 0


def _writing(workdir: str) -> bool:
    try:
        return any("tmp" in d for d in os.listdir(os.path.join(workdir, "checkpoints")))
    except OSError:
        return False


def _attempts(workdir: str) -> list[dict]:
    try:
        with open(os.path.join(workdir, "goodput.json")) as f:
            return json.load(f)["attempts"]
    except (OSError, ValueError):
        return []


def drill(
    workdir: str,
    kills: int,
    terms: int,
    steps: int,
    ckpt_every: int = 500,
    in_write: int | None = None,
    max_delay: float = 1.5,
    seed: int = 0,
    log=print,
) -> list[dict]:
    """Interrupts the run in ``workdir`` ``kills`` times with SIGKILL (``in_write`` of them, by
    default a third, aimed at a checkpoint write) and ``terms`` times with SIGTERM, in a
    random order, each a random 0..``max_delay`` s after the attempt's training got going;
    then lets the last attempt finish. Returns one row per interruption."""
    rng = random.Random(seed)
    in_write = kills // 3 if in_write is None else in_write
    plan = ["KILL-write"] * in_write + ["KILL"] * (kills - in_write) + ["TERM"] * terms
    rng.shuffle(plan)
    cmd, rows = command(workdir, steps, ckpt_every), []
    for what in plan + [None]:
        t_start = time.time()
        before = _log_size(workdir)
        p = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
        if what is None:
            _, err = p.communicate(timeout=900)
            if p.returncode != 0:
                raise RuntimeError(f"the last attempt failed ({p.returncode}):\n{err[-2000:]}")
            break
        while p.poll() is None and _log_size(workdir) <= before:
            time.sleep(0.005)  # training under way in this attempt
        t_go = time.time()
        if what == "KILL-write":
            while p.poll() is None and not _writing(workdir) and time.time() - t_go < 30:
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(0, max_delay))
        if p.poll() is not None:
            raise RuntimeError(f"the run ended before its {what} (use more --steps)")
        writing = _writing(workdir)
        reached = _last_logged(workdir, before)
        t_kill = time.time()
        p.send_signal(signal.SIGTERM if what == "TERM" else signal.SIGKILL)
        _, err = p.communicate(timeout=600)
        rows.append({"signal": "SIGTERM" if what == "TERM" else "SIGKILL", "aimed": what,
                     "after_s": t_kill - t_go, "attempt_s": t_kill - t_start,
                     "rc": p.returncode, "in_write": writing, "reached": reached})  # fmt: skip
        if what == "TERM" and p.returncode != 143:
            raise RuntimeError(f"SIGTERM gave exit status {p.returncode}:\n{err[-2000:]}")
        log(f"  {len(rows):2d} {rows[-1]['signal']} after {rows[-1]['after_s']:.2f} s "
            f"(in write: {writing}) rc={p.returncode}")  # fmt: skip
    attempts = _attempts(workdir)
    for i, row in enumerate(rows):  # attempt i+1 resumed from its first_step
        nxt = attempts[i + 1] if i + 1 < len(attempts) else {}
        row["resumed"] = nxt.get("first_step")
        if row["resumed"] is not None:
            row["lost"] = max(0, row["reached"] - row["resumed"])
    return rows


def states_equal(a: str, b: str) -> list[str]:
    """Names of the state leaves (params, EMA, optimiser state, step) that differ."""
    import jax
    import numpy as np

    from jaxdiff.api import restore

    sa, sb = restore(a).state, restore(b).state
    la, _ = jax.tree_util.tree_flatten_with_path(sa)
    lb = jax.tree.leaves(sb)
    if len(la) != len(lb):
        return [f"{len(la)} vs {len(lb)} leaves"]
    return [jax.tree_util.keystr(path) for (path, x), y in zip(la, lb, strict=True)
            if not np.array_equal(np.asarray(x), np.asarray(y))]  # fmt: skip


def table(rows: list[dict]) -> str:
    head = f"{'#':>2} {'signal':<7} {'aimed at':<10} {'t (s)':>6} {'rc':>4} {'in write':>8} "
    head += f"{'logged':>7} {'resumed':>7} {'lost':>5}"
    lines = [head]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"{i:>2} {r['signal']:<7} {'write' if r['aimed'] == 'KILL-write' else 'random':<10} "
            f"{r['after_s']:>6.2f} {r['rc']:>4} {str(r['in_write']):>8} {r['reached']:>7} "
            f"{str(r.get('resumed')):>7} {str(r.get('lost', '?')):>5}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--terms", type=int, default=5)
    ap.add_argument("--in_write", type=int, default=None, help="SIGKILLs aimed at a write")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--ckpt_every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="default: a new temporary directory")
    args = ap.parse_args()
    from jaxdiff.train import goodput

    base = args.workdir or tempfile.mkdtemp(prefix="kill_drill_")
    ref, run = os.path.join(base, "uninterrupted"), os.path.join(base, "drilled")
    print(f"kill drill in {base}: {args.kills} SIGKILL + {args.terms} SIGTERM, "
          f"{args.steps} steps, checkpoint every {args.ckpt_every}")  # fmt: skip
    t0 = time.time()
    subprocess.run(command(ref, args.steps, args.ckpt_every), cwd=ROOT, env=_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    print(f"uninterrupted run: {time.time() - t0:.1f} s")
    rows = drill(run, args.kills, args.terms, args.steps, args.ckpt_every, args.in_write,
                 seed=args.seed)  # fmt: skip
    print(table(rows))
    print(goodput.format_summary(goodput.load(run)["summary"]))
    diff = states_equal(ref, run)
    print("final state bit-identical to the uninterrupted run:", not diff, *diff[:5])
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
