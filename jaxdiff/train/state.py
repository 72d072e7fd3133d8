"""Train state, optimisers and EMA shared by every method.

A ``TrainState`` holds named parameter *groups* (``{'score': ...}`` for score models,
``{'G': ..., 'D': ...}`` for DDGAN, ``{'vae': ..., 'prior': ...}`` for LSGM), each with its own
optax state and, optionally, an EMA copy. The trainer applies optimisers and EMA
(``jaxdiff.train.step``); methods only compute gradients, and nothing here looks inside a group.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimisation steps taken
    params: dict[str, Any]
    opt_state: dict[str, Any]
    ema: dict[str, Any]


def create_state(
    params: dict[str, Any], optimizers: dict[str, optax.GradientTransformation], ema_groups=()
) -> TrainState:
    """A fresh state: optimiser states for every group with an optimiser, EMA = params."""
    opt_state = {k: optimizers[k].init(params[k]) for k in optimizers}
    ema = {k: jax.tree.map(jnp.copy, params[k]) for k in ema_groups}
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, ema)


def ema_update(ema: Any, params: Any, decay: float | jax.Array) -> Any:
    """``ema <- decay * ema + (1 - decay) * params`` (float32 throughout)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(e.dtype), ema, params)


def learning_rate_schedule(
    lr: float,
    warmup: int = 0,
    schedule: str = "constant",
    total_steps: int = 1,
    min_lr: float = 0.0,
) -> optax.Schedule:
    """Linear warm-up (score_sde, CLD) then ``constant`` or ``cosine`` decay (DDGAN, LSGM)."""
    if schedule == "constant":
        decay = optax.constant_schedule(lr)
    elif schedule == "cosine":
        decay = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=min_lr / lr)
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}; use 'constant' or 'cosine'")
    if warmup <= 0:
        return decay
    warm = optax.linear_schedule(lr / warmup, lr, warmup)
    return optax.join_schedules([warm, decay], [warmup])


def make_optimizer(
    lr: float,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    warmup: int = 0,
    schedule: str = "constant",
    total_steps: int = 1,
    min_lr: float = 0.0,
) -> optax.GradientTransformation:
    """Adam(W) with warm-up, a decay schedule and global-norm clipping, as the papers train.

    Gradient accumulation is the trainer's (``training.grad_accum``), not the optimiser's.
    """
    sched = learning_rate_schedule(lr, warmup, schedule, total_steps, min_lr)
    parts = []
    if grad_clip:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if weight_decay:
        parts.append(optax.adamw(sched, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    else:
        parts.append(optax.adam(sched, b1=b1, b2=b2, eps=eps))
    return optax.chain(*parts)


def cosine_schedule(lr: float, min_lr: float, steps: int, warmup: int = 0) -> optax.Schedule:
    """Linear warm-up over ``warmup`` steps, then a cosine decay lr -> min_lr (LSGM, per stage)."""
    decay = optax.cosine_decay_schedule(lr, max(steps - warmup, 1), alpha=min_lr / lr)
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(lr / warmup, lr, warmup), decay], [warmup])


def adam_l2(
    lr: optax.Schedule, eps: float, weight_decay: float = 0.0, clip: float = 0.0
) -> optax.GradientTransformation:
    """PyTorch-style Adam with L2 weight decay (LSGM's optimisers), optional norm clipping."""
    parts = [optax.clip_by_global_norm(clip)] if clip else []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts += [optax.scale_by_adam(eps=eps), optax.scale_by_learning_rate(lr)]
    return optax.chain(*parts)


def adamax_l2(
    lr: optax.Schedule, eps: float, weight_decay: float = 0.0, clip: float = 0.0
) -> optax.GradientTransformation:
    """PyTorch-style Adamax with L2 weight decay (NVAE's and LSGM's stage-1 optimiser,
    ``Adamax(lr, weight_decay, eps=1e-3)``): u = max(b2 u, |g| + eps), step lr m_hat / u."""
    parts = [optax.clip_by_global_norm(clip)] if clip else []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts += [optax.scale_by_adamax(eps=eps), optax.scale_by_learning_rate(lr)]
    return optax.chain(*parts)


class SwitchState(NamedTuple):
    count: jax.Array
    first: optax.OptState
    second: optax.OptState


def switch_at(
    boundary: int, first: optax.GradientTransformation, second: optax.GradientTransformation
) -> optax.GradientTransformation:
    """``first`` for the first ``boundary`` updates, then ``second`` from its own fresh state
    (LSGM: stage 1's Adamax, then stage 2's Adam, as two separate runs of the official code)."""

    def init(params):
        return SwitchState(jnp.zeros((), jnp.int32), first.init(params), second.init(params))

    def update(updates, state, params=None):
        def one(u):
            out, s1 = first.update(u, state.first, params)
            return out, s1, state.second

        def two(u):
            out, s2 = second.update(u, state.second, params)
            return out, state.first, s2

        out, s1, s2 = jax.lax.cond(state.count < boundary, one, two, updates)
        return out, SwitchState(state.count + 1, s1, s2)

    return optax.GradientTransformation(init, update)
