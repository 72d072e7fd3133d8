"""The hooks a method gives the trainer (google-research/vdm's ``Experiment``, as functions).

The trainer owns data, sharding, the loop, the optimiser step (gradient accumulation, optimiser
updates, EMA), checkpoints and logging; a method owns its maths. Methods import this module; the
trainer never imports a method.

A training step is a sequence of *phases*, each updating some parameter groups: score models and
LSGM have one phase, DDGAN two (D, then G against the updated D). For each phase the trainer asks
the method for gradients on each micro-batch (``training.grad_accum`` of them), averages them,
applies the groups' optimisers once and updates their EMA once. The method hooks:

* ``init(key, batch) -> TrainState``: parameter groups, optimiser states, EMA;
* ``optimizers``: ``{group: optax transformation}``; ``ema_decay``: ``{group: decay}``;
* ``phases``: tuple of tuples of group names, in update order;
* ``prepare(state) -> state``: once per step before the phases (LSGM's stage-3 reset);
* ``grads(phase, state, batch, keys) -> PhaseGrads``: gradients of the phase's groups on one
  (micro-)batch, pure and written for a single device. ``keys`` holds one PRNG key per example
  (``jaxdiff.rng``), so a micro-batch draws the same numbers as inside the full batch;
* ``sampling_params(state)`` and ``sample_fn(params, key, num) -> (samples, nfe)``: pure sampling
  with the EMA parameters (``jaxdiff.train.sampling.draw`` jits, batches and shards it);
* ``evaluate(state, key, data) -> dict``: the method's metrics (toy metrics, likelihood).

A batch is a dict with ``'x'``: float32 ``(b, d)`` points or ``(b, h, w, c)`` images in [-1, 1].
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import jax
import optax

from jaxdiff.train.state import TrainState


class PhaseGrads(NamedTuple):
    """What a method returns for one phase on one (micro-)batch.

    grads: ``{group: gradient pytree}`` for the phase's groups (of the *mean* loss over the
      micro-batch; the trainer averages micro-batches with equal weights).
    metrics: scalars to log (averaged over micro-batches; ``loss`` entries of phases are summed).
    active: ``{group: bool scalar}``: groups whose update is skipped this step when False (LSGM's
      stages); missing groups are active.
    aux: ``{opt_state key: value}``: non-gradient state the step replaces (LSGM's spectral
      power-iteration vectors); the last micro-batch's value is kept.
    """

    grads: dict[str, Any]
    metrics: dict[str, jax.Array]
    active: dict[str, jax.Array] | None = None
    aux: dict[str, Any] | None = None


class Method(abc.ABC):
    """Base class of the trainer hooks; see the module docstring."""

    #: parameter groups written to checkpoints, e.g. ('score',) or ('G', 'D')
    groups: tuple[str, ...] = ()
    #: optimiser of each group
    optimizers: dict[str, optax.GradientTransformation]
    #: EMA decay of each group that keeps an EMA
    ema_decay: dict[str, float]

    @property
    def phases(self) -> tuple[tuple[str, ...], ...]:
        return (self.groups,)

    @abc.abstractmethod
    def init(self, key: jax.Array, batch: dict[str, Any]) -> TrainState: ...

    def prepare(self, state: TrainState) -> TrainState:
        """Called once per step before the phases (default: nothing)."""
        return state

    @abc.abstractmethod
    def grads(
        self, phase: int, state: TrainState, batch: dict[str, Any], keys: jax.Array
    ) -> PhaseGrads: ...

    @abc.abstractmethod
    def sampling_params(self, state: TrainState) -> Any:
        """The parameters ``sample_fn`` uses (the EMA where the method keeps one)."""

    @abc.abstractmethod
    def sample_fn(self, params: Any, key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
        """``num`` samples (batch first) and the network evaluations per sample; pure."""

    def evaluate(self, state: TrainState, key: jax.Array, data: Any) -> dict[str, float]:
        """Metrics of the method on ``data`` (default: none)."""
        return {}
