"""``jaxdiff report RUN_DIR...``: quality, diversity and speed of trained runs on one clock.

The generative trilemma (DDGAN's Fig. 1) for every run given, whatever its method and sampler:
quality (FID against reference statistics for images; the sliced Wasserstein distance over its
noise floor for toy data), diversity (recall for images; modes covered for mixtures), the number
of network evaluations per sample, and the wall time per 1,000 samples on this machine, measured
after compilation (one warm-up batch) with the run's own sampling batch size. One table and one
figure per data set, written as ``report.md``, ``report.json`` and ``report_<data>.png``; the
held-out bits/dim of a run's last ``jaxdiff eval`` (``eval.json``) is shown beside them.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np

from jaxdiff import api
from jaxdiff.train.sampling import batches


def measure(
    workdir: str, num: int = 1000, seed: int = 0, fid_stats: str | None = None
) -> dict[str, Any]:
    """One row of the report: the run in ``workdir`` with its stored sampler."""
    run = api.restore(workdir)
    config, method = run.config, run.method
    params = method.sampling_params(run.state)
    bs = min(getattr(method, "sample_batch", None) or num, num)
    key = jax.random.key(seed)
    for _ in batches(method.sample_fn, params, jax.random.fold_in(key, 1), bs, bs):
        pass  # compile (and warm up) at the batch size used below
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    samples = np.concatenate(list(batches(method.sample_fn, params, key, num, bs, info=info)))
    seconds = time.perf_counter() - t0
    spec = getattr(method, "sampling", None)
    row: dict[str, Any] = {
        "run": os.path.basename(os.path.normpath(workdir)),
        "workdir": workdir,
        "method": config.method,
        "process": config.get("process", {}).get("name", ""),
        "data": config.data.name,
        "sampler": "chain" if spec is None else _sampler_name(config, spec),
        "steps": None if spec is None else spec.steps,
        "nfe": int(info["nfe"]),
        "seconds_per_1000": seconds / num * 1000,
        "num_samples": num,
        "checkpoint_step": int(jax.device_get(run.state.step)),
        **_training_time(workdir),
        "test_bpd": _stored_eval(workdir).get("test_bpd"),
    }
    if samples.ndim == 4:
        stats = fid_stats or api.reference_stats(config, workdir)
        q = api.sample_quality(run, num, stats, seed)
        row.update(quality_name="FID", quality=q["fid"], diversity_name="recall")
        row["diversity"] = q.get("recall", float("nan"))
        row["precision"] = q.get("precision", float("nan"))
    else:
        source = getattr(run.data, "mixture", None) or getattr(run.data, "source", None)
        from jaxdiff.eval.metrics import toy_metrics

        m = toy_metrics(jax.random.fold_in(key, 2), samples, source)
        row.update(quality_name="SW/floor", quality=m["sw_ratio"])
        if "modes_covered" in m:
            row.update(diversity_name="modes", diversity=m["modes_covered"])
            row["num_modes"], row["high_quality"] = m["num_modes"], m["high_quality_frac"]
        else:
            row.update(diversity_name="MMD", diversity=m["mmd"])
    return row


def _sampler_name(config, spec) -> str:
    return str(config.sampling.get("sampler", type(spec.sampler).__name__))


def _stored_eval(workdir: str) -> dict[str, Any]:
    path = os.path.join(workdir, "eval.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _training_time(workdir: str) -> dict[str, Any]:
    """Training steps and their wall time, from the run's ``metrics.jsonl`` (steps / steps_per_s
    of each logged interval)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    last, seconds, step = 0, 0.0, 0
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "steps_per_s" in r and r["step"] > last:
                seconds += (r["step"] - last) / max(r["steps_per_s"], 1e-12)
                last = r["step"]
            step = max(step, int(r.get("step", 0)))
    return {"train_steps": step, "train_seconds": seconds}


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of report rows."""
    head = (
        "| run | method | sampler | NFE | s / 1000 samples | quality | diversity | test bits/dim "
        "| trained |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        trained = (
            f"{r['train_steps']} steps, {r['train_seconds']:.0f} s" if "train_steps" in r else "?"
        )
        div = f"{r['diversity_name']} {r['diversity']:.3g}"
        if "num_modes" in r:
            div = f"modes {r['diversity']:.0f}/{r['num_modes']:.0f}, HQ {r['high_quality']:.0%}"
        lines.append(
            f"| {r['run']} | {r['method']} {r['process']} | {r['sampler']} | {r['nfe']} | "
            f"{r['seconds_per_1000']:.3g} | {r['quality_name']} {r['quality']:.4g} | {div} | "
            f"{'-' if r.get('test_bpd') is None else format(r['test_bpd'], '.3f')} | {trained} |"
        )
    return "\n".join(lines)


def figure(path: str, rows: list[dict[str, Any]], title: str) -> None:
    """Quality against wall time per 1,000 samples (log scale), one labelled point per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in rows:
        ax.scatter(r["seconds_per_1000"], r["quality"], s=40)
        ax.annotate(
            f"{r['run']} ({r['nfe']} NFE)", (r["seconds_per_1000"], r["quality"]),
            textcoords="offset points", xytext=(5, 4), fontsize=8,
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("seconds per 1,000 samples (this machine, after compilation)")
    ax.set_ylabel(f"{rows[0]['quality_name']} (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(
    workdirs: list[str],
    out: str,
    num: int = 1000,
    seed: int = 0,
    fid_stats: str | None = None,
) -> list[dict[str, Any]]:
    """Measures every run, writes ``out/report.{md,json}`` and one figure per data set."""
    if not workdirs:
        raise ValueError("report needs at least one run directory")
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    for w in workdirs:
        api.load_config(w)  # every run is readable before anything is measured
    rows = [measure(w, num, seed, fid_stats) for w in workdirs]
    os.makedirs(out, exist_ok=True)
    text = []
    for data in sorted({r["data"] for r in rows}):
        group = [r for r in rows if r["data"] == data]
        png = os.path.join(out, f"report_{data}.png")
        figure(png, group, f"{data}: {num} samples per run")
        text.append(f"## {data}\n\n{table(group)}\n\n![{data}]({os.path.basename(png)})\n")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(text))
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(rows, f, indent=2, default=float)
    return rows
