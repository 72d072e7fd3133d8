"""The hooks a method gives the trainer (google-research/vdm's ``Experiment``, as functions).

The trainer owns data, sharding, the loop, checkpoints and logging; a method owns its maths:

* ``init(key, batch) -> TrainState``: parameter groups, optimiser states, EMA;
* ``train_step(state, batch, key) -> (state, metrics)``: one optimisation step on one (global)
  batch, pure and written for a single device; the trainer jits and shards it. DDGAN's
  alternating D/G updates and LSGM's two optimisers live here, not in the loop;
* ``sample(state, key, num, **opts) -> (samples, info)``: samples with the EMA parameters;
  ``info['nfe']`` is the exact number of network evaluations;
* ``evaluate(state, key, data) -> dict``: the method's metrics (toy metrics, likelihood).

A batch is a dict with ``'x'``: float32 ``(b, d)`` toy data or ``(b, h, w, c)`` images in [-1, 1].
"""

from __future__ import annotations

import abc
from typing import Any

import jax

from jaxdiff.train.state import TrainState


class Method(abc.ABC):
    """Base class of the trainer hooks; see the module docstring."""

    #: parameter groups written to checkpoints and logged; e.g. ('score',) or ('G', 'D')
    groups: tuple[str, ...] = ()

    @abc.abstractmethod
    def init(self, key: jax.Array, batch: dict[str, Any]) -> TrainState: ...

    @abc.abstractmethod
    def train_step(
        self, state: TrainState, batch: dict[str, Any], key: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]: ...

    @abc.abstractmethod
    def sample(
        self, state: TrainState, key: jax.Array, num: int, **options: Any
    ) -> tuple[jax.Array, dict[str, Any]]: ...

    def evaluate(self, state: TrainState, key: jax.Array, data: Any) -> dict[str, float]:
        """Metrics of the method on ``data`` (default: none)."""
        return {}
