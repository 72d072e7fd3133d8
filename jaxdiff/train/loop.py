"""The one training loop: data, the sharded step, logging, checkpoints, snapshots.

Methods plug in through their hooks (``jaxdiff.train.protocol.Method``); nothing here depends on
which method runs, and nothing here reads a config (``jaxdiff.build`` makes ``TrainSettings``).
The RNG of step s is ``fold_in(key(seed), s)`` and the batch of step s is a pure function of
(seed, step), so a run restored from step k continues exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxdiff import hostmem
from jaxdiff.train import parallel, preemption
from jaxdiff.train.checkpoint import Checkpointer, CheckpointError
from jaxdiff.train.goodput import Goodput
from jaxdiff.train.logging import EventLog, MetricsLogger, Progress
from jaxdiff.train.preemption import LostPeerError, PeerWatchdog, StopSignals
from jaxdiff.train.protocol import Method
from jaxdiff.train.sampling import draw
from jaxdiff.train.state import TrainState
from jaxdiff.train.step import StepSettings, optimizer_step


class NaNLossError(FloatingPointError):
    """The loss became NaN or infinite."""


class Hook(NamedTuple):
    """``fn(state, step) -> metrics or None``, run every ``every`` steps (0: never)."""

    every: int
    fn: Callable[[TrainState, int], dict[str, float] | None]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The loop's settings (``config.training`` and ``config.seed``, read by ``jaxdiff.build``).

    batch_size: global batch over all devices and processes. num_steps: optimiser steps in all.
    n_jitted_steps: steps per jitted call. log_every, ckpt_every, snapshot_every: cadences in
    steps (0: never; multiples of n_jitted_steps). keep, keep_every: checkpoints kept (the
    last ``keep`` plus every ``keep_every``-th step). seed: the run's seed (RNG and data).
    step: the optimiser step's settings (accumulation, EMA warm-up, loops).
    """

    batch_size: int = 128
    num_steps: int = 1000
    n_jitted_steps: int = 1
    log_every: int = 100
    ckpt_every: int = 1000
    keep: int = 2
    keep_every: int = 0
    snapshot_every: int = 0
    seed: int = 0
    step: StepSettings = StepSettings()

    def __post_init__(self):
        n = self.n_jitted_steps
        for name in ("batch_size", "n_jitted_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name} must be positive, got {getattr(self, name)}")
        for name in ("num_steps", "log_every", "ckpt_every", "keep_every", "snapshot_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"training.{name} must be >= 0, got {getattr(self, name)}")
        if self.keep < 1:
            raise ValueError(f"training.keep must be positive, got {self.keep}")
        for name in ("log_every", "ckpt_every", "snapshot_every", "num_steps"):
            v = getattr(self, name)
            if v and v % n:
                raise ValueError(
                    f"training.{name}={v} must be a multiple of training.n_jitted_steps={n} "
                    "(steps run in jitted groups of that size)"
                )


# ----------------------------------------------------------------------------------------------
# The jitted, sharded step


def make_train_fn(method: Method, mesh, n_steps: int, settings: StepSettings = StepSettings()):
    """``fn(state, batches, base_key) -> (state, metrics)`` running ``n_steps`` steps per call.

    ``batches`` is a tuple of ``n_steps`` global batches, each sharded over 'data' (separate
    arrays: slicing one stacked array inside the program costs a copy per step); state and key
    are replicated, the state is donated. The per-step key is ``fold_in(base_key, state.step)``.
    How the steps run is ``settings.steps_loop`` (under 'auto' on the CPU decided at the first
    call from the lowered one-step program: does it convolve?): 'dispatch' calls the compiled
    one-step program ``n_steps`` times from Python (asynchronously, no host sync in between),
    'unroll' and 'scan' compile one program of ``n_steps`` steps. Metrics come back stacked
    along a leading axis of length ``n_steps``.
    """
    return TrainFn(method, mesh, n_steps, settings)


class TrainFn:
    """The trainer's step function (:func:`make_train_fn`); ``steps_loop`` is its choice."""

    def __init__(self, method: Method, mesh, n_steps: int, settings: StepSettings):
        if n_steps < 1:
            raise ValueError(f"n_steps must be positive, got {n_steps}")
        self.method, self.n_steps, self.settings = method, n_steps, settings
        self.steps_loop: str | None = None if settings.loop == "auto" else settings.loop
        repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        shardings = dict(out_shardings=(repl, repl), donate_argnums=(0,))
        self._one = jax.jit(self._step, in_shardings=(repl, data, repl), **shardings)
        steps_in = (repl, (data,) * n_steps, repl)
        self._fused = jax.jit(self._steps, in_shardings=steps_in, **shardings)
        self._stack = jax.jit(_stack, out_shardings=repl)

    def _step(self, state, batch, base_key):
        key = jax.random.fold_in(base_key, state.step)
        return optimizer_step(self.method, state, batch, key, self.settings)

    def _steps(self, state, batches, base_key):
        if self.steps_loop == "unroll":
            ms = []
            for batch in batches:
                state, m = self._step(state, batch, base_key)
                ms.append(m)
            return state, _stack(ms)
        stacked = _stack(list(batches))
        return jax.lax.scan(lambda s, b: self._step(s, b, base_key), state, stacked)

    def choose(self, state, batch, base_key) -> str:
        """Fixes and returns ``steps_loop`` (under 'auto': lowers, does not compile, one step)."""
        if self.steps_loop is None:
            convolutional = False
            if self.n_steps > 1 and jax.default_backend() == "cpu":
                # a convolution op, or one computed by Winograd matmuls (layers.winograd_conv,
                # found by its name in the ops' locations)
                text = self._one.lower(state, batch, base_key).as_text(debug_info=True)
                convolutional = "stablehlo.convolution" in text or "winograd_conv" in text
            self.steps_loop = self.settings.steps_loop(self.n_steps, convolutional)
        return self.steps_loop

    def __call__(self, state, batches, base_key):
        if len(batches) != self.n_steps:
            raise ValueError(f"expected {self.n_steps} batches per call, got {len(batches)}")
        if self.choose(state, batches[0], base_key) != "dispatch" and self.n_steps > 1:
            return self._fused(state, batches, base_key)
        ms = []
        for batch in batches:
            state, m = self._one(state, batch, base_key)
            ms.append(m)
        return state, self._stack(ms)


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *trees)


def local_batch(data, step: int, global_bs: int) -> dict[str, np.ndarray]:
    pi, pc = jax.process_index(), jax.process_count()
    b = data.batch(step, global_bs, process_index=pi, process_count=pc)
    return {"x": np.asarray(b["x"])}


def abstract_state(method: Method, data, batch_size: int, mesh) -> Any:
    """Shapes, dtypes and (replicated) shardings of the method's state, without computing it."""
    first = local_batch(data, 0, batch_size)
    shapes = jax.eval_shape(method.init, jax.random.key(0), first)
    repl = parallel.replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def checkpointer(workdir: str, keep: int = 2, keep_every: int = 0) -> Checkpointer:
    return Checkpointer(os.path.join(workdir, "checkpoints"), keep, keep_every)


def restore_state(
    method: Method, data, batch_size: int, workdir: str, step: int | None = None
) -> TrainState:
    """The state of the checkpoint ``step`` (default: the newest readable one) in ``workdir``."""
    mesh = parallel.make_mesh()
    ckpt = checkpointer(workdir)
    try:
        state, _ = ckpt.restore(abstract_state(method, data, batch_size, mesh), step)
    finally:
        ckpt.close()
    return state


def check_restore_step(workdir: str, step: int) -> None:
    """Raises ``CheckpointError`` unless ``workdir`` has a checkpoint of ``step`` (before a
    run writes anything)."""
    directory = os.path.join(workdir, "checkpoints")
    steps = sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(
        directory
    ) else []  # fmt: skip
    if step not in steps:
        raise CheckpointError(f"--restore_step {step}: no such checkpoint in {directory} "
                              f"(steps: {steps})")  # fmt: skip


def _resume(method, data, t: TrainSettings, ckpt: Checkpointer, mesh, step, events: EventLog):
    """(state, step) of the checkpoint to continue from, or (None, None) for a fresh run.

    Unreadable newer checkpoints (skipped with a warning) and, with an explicit ``step``, the
    newer readable ones are moved aside, never deleted, so the run can write those steps again.
    """
    if not ckpt.all_steps():
        if step is not None:
            raise CheckpointError(f"--restore_step {step}: no checkpoint in {ckpt.directory}")
        return None, None
    state, meta = ckpt.restore(abstract_state(method, data, t.batch_size, mesh), step, events.warn)
    restored = ckpt.restored_step
    bad = [s for s, _ in ckpt.skipped]
    if bad:
        where = ckpt.set_aside(bad, "unreadable")
        events.warn(f"resumed from step {restored}; unreadable checkpoints {bad} moved to {where}",
                    step=restored, event="restore_fallback", skipped=ckpt.skipped)  # fmt: skip
    newer = [s for s in ckpt.all_steps() if s > restored]
    if newer:
        where = ckpt.set_aside(newer, "superseded")
        events.warn(f"--restore_step {restored}: newer checkpoints {newer} moved to {where}",
                    step=restored, event="restore_step")  # fmt: skip
    return state, int(meta["step"])


# ----------------------------------------------------------------------------------------------
# Train


def train(
    method: Method,
    data,
    settings: TrainSettings,
    workdir: str,
    *,
    progress: bool = True,
    stop_after: int | None = None,
    hooks: Sequence[Hook] = (),
    restore_step: int | None = None,
    peer_timeout: float | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Trains (or resumes) the run in ``workdir``; returns the final state and a summary.

    Resumes from the newest readable checkpoint (``restore_step``: that one). ``stop_after``
    ends the call after that many further steps (checkpointing there): for tests and schedulers
    that work in slices. Each hook's ``fn(state, step)`` runs every ``hook.every`` steps after
    the checkpoint of that step (not at the last step, which the caller handles); the metrics
    it returns are logged at that step. SIGTERM / SIGINT end the call after the step group in
    flight, with a checkpoint of it (all processes agree on the step): ``summary['signal']``
    names it. ``summary['goodput']`` splits the wall time of all attempts (``goodput.py``).
    In a multi-process run a peer silent for ``peer_timeout`` seconds (default: the value given
    to ``parallel.maybe_initialize_distributed``) ends the process (``preemption.py``).
    """
    gp = Goodput(workdir, enabled=jax.process_index() == 0)
    watchdog = PeerWatchdog(peer_timeout or parallel.peer_timeout()).start()
    try:
        with StopSignals() as signals:
            return _train(method, data, settings, workdir, progress, stop_after, hooks,
                          restore_step, signals, gp)  # fmt: skip
    except Exception as e:
        if not _runtime_failure(e) or watchdog.wait_for_verdict() is None:
            raise
        raise LostPeerError(watchdog.verdict) from None  # a collective failed: a peer died
    finally:
        watchdog.stop()


def _train(method, data, t: TrainSettings, workdir, progress, stop_after, hooks, restore_step,
           signals: StopSignals, gp: Goodput):  # fmt: skip
    mesh = parallel.make_mesh()
    parallel.check_batch_size(t.batch_size)
    ckpt = checkpointer(workdir, t.keep, t.keep_every)
    base_key = jax.random.key(t.seed)
    events = EventLog(workdir)
    with gp.time("checkpoint_restore"):
        state, start = _resume(method, data, t, ckpt, mesh, restore_step, events)
    if state is None:
        with gp.time("startup"):
            first = local_batch(data, 0, t.batch_size)
            state = method.init(jax.random.fold_in(base_key, -1 & 0x7FFFFFFF), first)
            state = parallel.replicate(jax.device_get(state), mesh)
            start = 0
    gp.resumed(start)

    end = t.num_steps if stop_after is None else min(t.num_steps, start + stop_after)
    n = t.n_jitted_steps
    with gp.time("startup"):
        step_fn = make_train_fn(method, mesh, n, t.step)
        logger = MetricsLogger(workdir)
        bar = Progress(start, t.num_steps, enabled=progress)
        sharding = parallel.batch_sharding(mesh)
    acc: list[dict[str, np.ndarray]] = []
    step, t0, last_log, saved, stopped = start, time.time(), start, start, None
    ok = False
    try:
        while step < end:
            stopped = preemption.agree_stop(signals.signum)
            if stopped:
                break
            with gp.time("data", uncommitted=True):
                batches = tuple(
                    parallel.global_batch(local_batch(data, step + i, t.batch_size), sharding)
                    for i in range(n)
                )
            with gp.time("compile" if step == start else "steps", uncommitted=step != start):
                state, metrics = step_fn(state, batches, base_key)
                metrics = jax.device_get(metrics)
            _check_finite(metrics, step, ckpt)
            step += n
            acc.append(metrics)
            bar.update(n, {k: float(np.mean(v)) for k, v in metrics.items() if k == "loss"})
            if t.log_every and step % t.log_every == 0 or step == end:
                acc, t0, last_log = _log(logger, acc, step, last_log, t0)
            if t.ckpt_every and step % t.ckpt_every == 0 or step == end:
                with gp.time("checkpoint_save"):
                    ckpt.save(step, state, _run_position(t, step))
                saved = step
                gp.checkpointed(step)
            for hook in hooks:
                if hook.every and step % hook.every == 0 and step != end:
                    with gp.time("eval"):
                        extra = hook.fn(state, step)
                        hostmem.release()  # another program ran: see jaxdiff/hostmem.py
                    if extra:
                        logger.write(step, extra)
            gp.stepped(step)
        if stopped and saved != step:
            if acc:
                acc, t0, last_log = _log(logger, acc, step, last_log, t0)
            with gp.time("checkpoint_save"):
                ckpt.save(step, state, _run_position(t, step))
            gp.checkpointed(step)
        with gp.time("checkpoint_save"):
            ckpt.wait()
        hostmem.release()  # the training step's temporaries, before whatever runs next
        ok = True
    finally:
        bar.close()
        logger.close()
        try:
            ckpt.close()
        except CheckpointError:
            if ok:
                raise
    name = signal.Signals(stopped).name if stopped else None
    if name:
        events.warn(f"{name}: stopped at step {step} with a checkpoint; rerun the same command "
                    "to resume", step=step, event="stopped", signal=name, echo=False)  # fmt: skip
    end_kind = name or ("finished" if step >= t.num_steps else "sliced")
    summary = {"step": step, "workdir": workdir, "signal": name, "goodput": gp.finish(end_kind)}
    return state, summary


def _runtime_failure(e: BaseException) -> bool:
    """An error of the runtime (a collective, a transfer), not of the run's own checks."""
    words = ("UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED", "Gloo", "NCCL", "Connection")
    return isinstance(e, jax.errors.JaxRuntimeError) or any(w in str(e) for w in words)


def _log(logger: MetricsLogger, acc, step: int, last_log: int, t0: float):
    means = {k: float(np.mean(np.concatenate([a[k] for a in acc]))) for k in acc[0]}
    means["steps_per_s"] = (step - last_log) / max(time.time() - t0, 1e-9)
    logger.write(step, means)
    return [], time.time(), step


def _run_position(t: TrainSettings, step: int) -> dict[str, Any]:
    return {"step": step, "examples_seen": step * t.batch_size, "seed": t.seed}


def _check_finite(metrics: dict[str, np.ndarray], step: int, ckpt: Checkpointer) -> None:
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
                "training stopped and nothing was saved after it: "
                f"{where}. Lower the learning rate, enable gradient clipping, or check the data."
            )


# ----------------------------------------------------------------------------------------------
# Samples on disk


def write_samples(
    method: Method,
    state: TrainState,
    workdir: str,
    num: int,
    *,
    tag: str = "samples",
    seed: int = 0,
    out: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Samples, writes ``<out or workdir/samples/tag>.npz`` and a picture; returns the info."""
    from jaxdiff.eval.plots import save_image_grid, save_scatter

    params = method.sampling_params(state)
    samples, info = draw(method.sample_fn, params, jax.random.key(seed), num, batch_size)
    info = {**info, "num": num}
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
