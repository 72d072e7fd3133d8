"""Train state, optimisers and EMA shared by every method.

A ``TrainState`` holds named parameter *groups* (``{'score': ...}`` for score models,
``{'G': ..., 'D': ...}`` for DDGAN, ``{'vae': ..., 'prior': ...}`` for LSGM), each with its own
optax state and, optionally, an EMA copy. Methods update one group at a time with
``apply_gradients``; the trainer never looks inside the groups.
"""

from __future__ import annotations

from typing import Any

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


def apply_gradients(
    state: TrainState,
    group: str,
    grads: Any,
    tx: optax.GradientTransformation,
    ema_decay: float | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser update of ``group`` (and its EMA); returns the new state and grad norm.

    Does not advance ``state.step``: a method that updates several groups in one step (DDGAN's
    D then G) calls this once per group and then ``next_step``.
    """
    params = state.params[group]
    updates, opt = tx.update(grads, state.opt_state[group], params)
    new = optax.apply_updates(params, updates)
    ema = state.ema
    if ema_decay is not None and group in ema:
        ema = {**ema, group: ema_update(ema[group], new, ema_decay)}
    state = state.replace(
        params={**state.params, group: new}, opt_state={**state.opt_state, group: opt}, ema=ema
    )
    return state, {f"grad_norm_{group}": optax.tree.norm(grads)}


def next_step(state: TrainState) -> TrainState:
    return state.replace(step=state.step + 1)


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
    accumulate: int = 1,
) -> optax.GradientTransformation:
    """Adam(W) with warm-up, a decay schedule and global-norm clipping, as the papers train.

    ``accumulate > 1`` averages gradients over that many consecutive calls before updating
    (``optax.MultiSteps``): gradient accumulation over micro-batches.
    """
    sched = learning_rate_schedule(lr, warmup, schedule, total_steps, min_lr)
    parts = []
    if grad_clip:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if weight_decay:
        parts.append(optax.adamw(sched, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    else:
        parts.append(optax.adam(sched, b1=b1, b2=b2, eps=eps))
    tx = optax.chain(*parts)
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate)
    return tx


def optimizer_from_config(cfg: Any, total_steps: int, accumulate: int = 1):
    """``make_optimizer`` from an ``optim`` config section (lr, b1, b2, eps, warmup, ...)."""
    return make_optimizer(
        cfg.lr,
        b1=cfg.get("b1", 0.9),
        b2=cfg.get("b2", 0.999),
        eps=cfg.get("eps", 1e-8),
        weight_decay=cfg.get("weight_decay", 0.0),
        grad_clip=cfg.get("grad_clip", 1.0),
        warmup=cfg.get("warmup", 0),
        schedule=cfg.get("schedule", "constant"),
        total_steps=total_steps,
        min_lr=cfg.get("min_lr", 0.0),
        accumulate=accumulate,
    )
