"""The optimiser step the trainer owns: phases, gradient accumulation, updates, EMA.

``optimizer_step(method, state, batch, key, settings)`` is one optimisation step of any method on
one global batch. For every phase of the method it averages the method's gradients over
``settings.grad_accum`` equal micro-batches, applies each group's optimiser once and updates
each group's EMA once (with the optional warm-up ``min(decay, (1 + n) / (10 + n))`` of
score_sde and CLD-SGM, n the optimiser steps taken). Each example draws its randomness from its
own key (``jax.random.split(key, B)``), so accumulating K micro-batches equals one step on their
union up to the summation order of floats (``tests/test_grad_accum.py``).

Loops: on the CPU XLA runs convolutions inside a loop body (scan / fori / while) many times
slower than the same ops outside one (issue #13: 23x for DDPM++ at batch 8), so short loops
(micro-batches, the ``n_jitted_steps`` steps of one call) are unrolled in Python there; long ones
(the toy configs' 50 MLP steps per call, where scan costs 1.2x and unrolling multiplies the
compile time by 50) and every loop on accelerators run as ``lax.scan``. The steps of one call of
a convolutional step on the CPU are not fused at all: the compiled one-step program is dispatched
``n_jitted_steps`` times (an unrolled 5-step DDPM++ program did not finish compiling in 31 min;
a dispatch costs a Python call, small next to a conv step of seconds). ``settings.loop`` =
'unroll' | 'scan' | 'dispatch' | 'auto' (:meth:`StepSettings.steps_loop`, ``.unrolled``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxdiff import rng
from jaxdiff.train.protocol import Method, PhaseGrads
from jaxdiff.train.state import TrainState, ema_update

UNROLL_MAX = 8  # longer loops compile too slowly unrolled (50 toy steps: minutes)
LOOPS = ("auto", "unroll", "scan", "dispatch")


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """How the trainer runs a method's steps (from ``config.training``).

    grad_accum: micro-batches per optimiser step (the global batch must split evenly).
    ema_warmup: EMA decay ``min(decay, (1 + n) / (10 + n))`` (score_sde / CLD-SGM) if True.
    loop: 'unroll', 'scan', 'dispatch' or 'auto' for the steps of one jitted call
      (:meth:`steps_loop`) and the micro-batches (:meth:`unrolled`; 'dispatch' counts as 'auto'
      there).
    """

    grad_accum: int = 1
    ema_warmup: bool = False
    loop: str = "auto"

    def __post_init__(self):
        if self.grad_accum < 1:
            raise ValueError(f"training.grad_accum must be >= 1, got {self.grad_accum}")
        if self.loop not in LOOPS:
            raise ValueError(f"training.loop must be one of {', '.join(LOOPS)}, got {self.loop!r}")

    def unrolled(self, length: int) -> bool:
        """Whether a loop of ``length`` micro-batches is unrolled (else scanned)."""
        if self.loop in ("auto", "dispatch"):
            return jax.default_backend() == "cpu" and length <= UNROLL_MAX
        return self.loop == "unroll"

    def steps_loop(self, length: int, convolutional: bool) -> str:
        """How the ``length`` steps of one jitted call run: 'unroll', 'scan' or 'dispatch'.

        'auto': one step is its own program ('dispatch'); on the CPU a step with convolutions
        is dispatched ``length`` times (fused, it ran ~20x slower scanned and compiled for tens
        of minutes unrolled: issue #13), other steps are unrolled up to ``UNROLL_MAX`` and
        scanned beyond; on accelerators the steps are scanned.
        """
        if self.loop != "auto":
            return self.loop
        if length == 1:
            return "dispatch"
        if jax.default_backend() == "cpu":
            if convolutional:
                return "dispatch"
            return "unroll" if length <= UNROLL_MAX else "scan"
        return "scan"


def _mean_tree(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: sum(xs[1:], xs[0]) / len(xs), *trees)


def _accumulate(
    method: Method,
    phase: int,
    state: TrainState,
    batch: dict[str, Any],
    keys: jax.Array,
    settings: StepSettings,
) -> PhaseGrads:
    """The method's gradients of ``phase`` averaged over ``grad_accum`` micro-batches."""
    k = settings.grad_accum
    if k == 1:
        return method.grads(phase, state, batch, keys)
    b = keys.shape[0]
    if b % k:
        raise ValueError(f"training.batch_size={b} is not divisible by training.grad_accum={k}")
    m = b // k

    def micro(i):
        # micro-batch i: examples i, i + k, i + 2k, ... (every device holds a part of each)
        sl = lambda a: jnp.asarray(a).reshape(m, k, *a.shape[1:])[:, i]  # noqa: E731
        return method.grads(phase, state, jax.tree.map(sl, batch), sl(keys))

    if settings.unrolled(k):
        outs = [micro(i) for i in range(k)]
        aux = outs[-1].aux
        return PhaseGrads(
            _mean_tree([o.grads for o in outs]),
            _mean_tree([o.metrics for o in outs]),
            outs[0].active,
            aux,
        )
    first = jax.eval_shape(micro, 0)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (first.grads, first.metrics))

    def body(carry, i):
        out = micro(i)
        carry = jax.tree.map(jnp.add, carry, (out.grads, out.metrics))
        return carry, (out.active, out.aux)

    (g, mets), (active, aux) = jax.lax.scan(body, zeros, jnp.arange(k))
    last = lambda t: jax.tree.map(lambda a: a[-1], t)  # noqa: E731
    g, mets = jax.tree.map(lambda a: a / k, (g, mets))
    return PhaseGrads(g, mets, last(active), last(aux))


def _select(pred: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def apply_group(
    method: Method,
    state: TrainState,
    group: str,
    grads: Any,
    active: jax.Array | None,
    settings: StepSettings,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser update of ``group`` and of its EMA (skipped where ``active`` is False)."""
    tx = method.optimizers[group]
    params, opt = state.params[group], state.opt_state[group]
    updates, new_opt = tx.update(grads, opt, params)
    new = optax.apply_updates(params, updates)
    ema = dict(state.ema)
    if group in state.ema and group in method.ema_decay:
        decay = jnp.asarray(method.ema_decay[group], jnp.float32)
        if settings.ema_warmup:
            n = state.step.astype(jnp.float32)
            decay = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
        ema[group] = ema_update(state.ema[group], new, decay)
    if active is not None:
        new, new_opt = _select(active, new, params), _select(active, new_opt, opt)
        if group in ema:
            ema[group] = _select(active, ema[group], state.ema[group])
    state = state.replace(
        params={**state.params, group: new},
        opt_state={**state.opt_state, group: new_opt},
        ema=ema,
    )
    return state, {f"grad_norm_{group}": optax.tree.norm(grads)}


def optimizer_step(
    method: Method,
    state: TrainState,
    batch: dict[str, Any],
    key: jax.Array,
    settings: StepSettings,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimisation step of ``method`` on the global ``batch``; see the module docstring."""
    b = jax.tree.leaves(batch)[0].shape[0]
    keys = jax.random.split(key, b)
    state = method.prepare(state)
    metrics: dict[str, jax.Array] = {}
    loss = jnp.zeros((), jnp.float32)
    for phase, groups in enumerate(method.phases):
        phase_keys = keys if phase == 0 else rng.fold_in(keys, phase)
        out = _accumulate(method, phase, state, batch, phase_keys, settings)
        for group in groups:
            active = (out.active or {}).get(group)
            state, m = apply_group(method, state, group, out.grads[group], active, settings)
            metrics.update(m)
        if out.aux:
            state = state.replace(opt_state={**state.opt_state, **out.aux})
        loss = loss + out.metrics.get("loss", 0.0)
        metrics.update({k: v for k, v in out.metrics.items() if k != "loss"})
    metrics["loss"] = loss
    return state.replace(step=state.step + 1), metrics
