"""The one training loop: data, the sharded step, EMA, logging, checkpoints, snapshots.

Methods plug in through their hooks (``jaxdiff.methods.base.Method``); nothing here depends on
which method runs. The RNG of step s is ``fold_in(key(seed), s)`` and the batch of step s is a
pure function of (seed, step), so a run restored from step k continues exactly as if it had
never stopped.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxdiff.build import build_data, build_method
from jaxdiff.methods.base import Method
from jaxdiff.train import parallel
from jaxdiff.train.checkpoint import Checkpointer
from jaxdiff.train.logging import MetricsLogger, Progress
from jaxdiff.train.state import TrainState

# Sections whose change makes an existing workdir incompatible with a config.
_IDENTITY_SECTIONS = ("method", "process", "objective", "model", "data")


class NaNLossError(FloatingPointError):
    """The loss became NaN or infinite."""


class WorkdirError(ValueError):
    """A workdir that cannot be used with the requested config."""


# ----------------------------------------------------------------------------------------------
# Workdir and config


def config_path(workdir: str) -> str:
    return os.path.join(workdir, "config.json")


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a run stored in its workdir."""
    path = config_path(workdir)
    if not os.path.exists(path):
        raise WorkdirError(
            f"{workdir!r} holds no jaxdiff run (no config.json): train there first with "
            "`jaxdiff train --config CONFIG --workdir DIR`"
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def _as_plain(x: Any) -> Any:
    return json.loads(json.dumps(x.to_dict() if hasattr(x, "to_dict") else x, default=list))


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Creates ``workdir`` or checks that the run in it is compatible; stores config.json."""
    os.makedirs(workdir, exist_ok=True)
    path = config_path(workdir)
    if os.path.exists(path):
        old = load_config(workdir)
        diffs = [s for s in _IDENTITY_SECTIONS if _as_plain(old.get(s)) != _as_plain(config.get(s))]
        if diffs:
            raise WorkdirError(
                f"{workdir!r} holds a different run (method {old.get('method')!r}, process "
                f"{old.process.get('name')!r}); config sections that differ: {diffs}. "
                "Nothing was changed: use a new --workdir, or the stored config to resume."
            )
    if jax.process_index() == 0:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# The jitted, sharded step


def make_train_fn(method: Method, mesh, n_steps: int):
    """``fn(state, batches, base_key) -> (state, metrics)`` running ``n_steps`` steps per call.

    ``batches`` stacks n_steps global batches along a leading axis, each sharded over 'data';
    state and key are replicated. The per-step key is ``fold_in(base_key, state.step)``.
    """

    def multi_step(state, batches, base_key):
        def body(state, batch):
            key = jax.random.fold_in(base_key, state.step)
            return method.train_step(state, batch, key)

        return jax.lax.scan(body, state, batches)

    repl = parallel.replicated(mesh)
    return jax.jit(
        multi_step,
        in_shardings=(repl, parallel.stacked_batch_sharding(mesh), repl),
        out_shardings=(repl, repl),
        donate_argnums=(0,),
    )


def _local_batches(data, start: int, n: int, global_bs: int) -> dict[str, np.ndarray]:
    pi, pc = jax.process_index(), jax.process_count()
    items = [data.batch(start + i, global_bs, process_index=pi, process_count=pc) for i in range(n)]
    items = [{"x": b["x"] if "x" in b else b["image"]} for b in items]
    return {k: np.stack([np.asarray(b[k]) for b in items]) for k in items[0]}


def abstract_state(method: Method, data, config, mesh) -> Any:
    """Shapes, dtypes and (replicated) shardings of the method's state, without computing it."""
    first = {"x": _local_batches(data, 0, 1, config.training.batch_size)["x"][0]}
    shapes = jax.eval_shape(method.init, jax.random.key(0), first)
    repl = parallel.replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def _check_cadence(config) -> None:
    t = config.training
    n = t.n_jitted_steps
    for name in ("log_every", "ckpt_every", "snapshot_every", "num_steps"):
        v = t.get(name, 0)
        if v and v % n:
            raise ValueError(
                f"training.{name}={v} must be a multiple of training.n_jitted_steps={n} "
                "(steps run in jitted groups of that size)"
            )


# ----------------------------------------------------------------------------------------------
# Train


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Trains (or resumes) the run in ``workdir``; returns the final state and a summary.

    ``stop_after`` ends the call after that many further steps (checkpointing there): for tests
    and schedulers that work in slices.
    """
    _check_cadence(config)
    t = config.training
    prepare_workdir(config, workdir)
    method = build_method(config)
    data = build_data(config)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(t.batch_size)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), t.keep, t.keep_every)
    base_key = jax.random.key(config.seed)

    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(abstract_state(method, data, config, mesh))
        start = int(meta["step"])
    else:
        first = {"x": _local_batches(data, 0, 1, t.batch_size)["x"][0]}
        state = method.init(jax.random.fold_in(base_key, -1 & 0x7FFFFFFF), first)
        state = parallel.replicate(jax.device_get(state), mesh)
        start = 0

    end = t.num_steps if stop_after is None else min(t.num_steps, start + stop_after)
    n = t.n_jitted_steps
    step_fn = make_train_fn(method, mesh, n)
    logger = MetricsLogger(workdir)
    bar = Progress(start, t.num_steps, enabled=progress)
    sharding = parallel.stacked_batch_sharding(mesh)
    acc: list[dict[str, np.ndarray]] = []
    step, t0, last_log = start, time.time(), start
    try:
        while step < end:
            batches = parallel.global_batch(_local_batches(data, step, n, t.batch_size), sharding)
            state, metrics = step_fn(state, batches, base_key)
            metrics = jax.device_get(metrics)
            _check_finite(metrics, step, ckpt)
            step += n
            acc.append(metrics)
            bar.update(n, {k: float(np.mean(v)) for k, v in metrics.items() if k == "loss"})
            if t.log_every and step % t.log_every == 0 or step == end:
                means = {k: float(np.mean(np.concatenate([a[k] for a in acc]))) for k in acc[0]}
                means["steps_per_s"] = (step - last_log) / max(time.time() - t0, 1e-9)
                logger.write(step, means)
                acc, t0, last_log = [], time.time(), step
            if step % t.ckpt_every == 0 or step == end:
                ckpt.save(step, state, _run_position(config, step))
            if t.get("snapshot_every", 0) and step % t.snapshot_every == 0 and step != end:
                write_samples(method, state, config, workdir, tag=f"step_{step:08d}")
        ckpt.wait()
    finally:
        bar.close()
        logger.close()
        ckpt.close()
    return state, {"step": step, "workdir": workdir}


def _run_position(config, step: int) -> dict[str, Any]:
    return {
        "step": step,
        "examples_seen": step * config.training.batch_size,
        "seed": config.seed,
        "method": config.method,
    }


def _check_finite(metrics: dict[str, np.ndarray], step: int, ckpt: Checkpointer) -> None:
    loss = np.asarray(metrics.get("loss", 0.0))
    for name, value in metrics.items():
        if name.startswith("loss") and not np.all(np.isfinite(value)):
            bad = int(np.argmax(~np.isfinite(np.asarray(value).reshape(-1)))) + step + 1
            last = ckpt.latest_step()
            where = (
                f"the last good checkpoint is step {last} in {ckpt.directory}"
                if last is not None
                else "no checkpoint was written yet"
            )
            raise NaNLossError(
                f"{name} is {np.asarray(value).reshape(-1)[bad - step - 1]} at step {bad}; "
                f"training stopped and nothing was saved after it: {where}. Lower the learning "
                "rate, enable gradient clipping, or check the data."
            )
    del loss


# ----------------------------------------------------------------------------------------------
# Restore, sample, evaluate (used by the CLI after training)


def restore(workdir: str, step: int | None = None):
    """(config, method, state, data) of the run in ``workdir`` at its latest checkpoint."""
    config = load_config(workdir)
    method = build_method(config)
    data = build_data(config)
    mesh = parallel.make_mesh()
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), config.training.keep)
    try:
        state, _ = ckpt.restore(abstract_state(method, data, config, mesh), step)
    finally:
        ckpt.close()
    return config, method, state, data


def write_samples(
    method: Method,
    state: TrainState,
    config,
    workdir: str,
    *,
    tag: str = "samples",
    num: int | None = None,
    seed: int = 0,
    out: str | None = None,
    **sampling: Any,
) -> dict[str, Any]:
    """Samples, writes ``<out or workdir/samples/tag>.npz`` and a picture; returns the info."""
    from jaxdiff.eval.plots import save_image_grid, save_scatter

    num = num or config.sampling.num
    t0 = time.time()
    samples, info = method.sample(state, jax.random.key(seed), num, **sampling)
    samples = np.asarray(jax.device_get(samples))
    info = {**info, "seconds": time.time() - t0, "num": num}
    if jax.process_index() != 0:
        return info
    base = out[:-4] if out and out.endswith(".npz") else out
    base = base or os.path.join(workdir, "samples", tag)
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    np.savez(base + ".npz", samples=samples, **{k: np.asarray(v) for k, v in info.items()})
    if samples.ndim == 2 and samples.shape[1] == 2:
        save_scatter(base + ".png", samples, title=f"{tag}: NFE {info.get('nfe')}")
    elif samples.ndim == 4:
        save_image_grid(base + ".png", samples[:100])
    info.update(npz=base + ".npz", png=base + ".png")
    return info


def evaluate(method: Method, state: TrainState, config, data, seed: int = 0) -> dict[str, Any]:
    """The method's metrics as a JSON-ready dict."""
    res = method.evaluate(state, jax.random.key(seed), data)
    return {k: (float(v) if np.ndim(v) == 0 else np.asarray(v).tolist()) for k, v in res.items()}
