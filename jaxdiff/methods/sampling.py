"""What a score-based method samples with: a sampler object plus its time grid, as data.

The sampler (``jaxdiff.solvers``) owns its own options (tolerances, corrector steps, ...); the
grid options below are shared by every sampler over a continuous-time process. ``build.py``
fills both from ``config.sampling`` and the command line; the defaults live there and in the
sampler classes, nowhere else.
"""

from __future__ import annotations

import dataclasses

import jax

from jaxdiff.processes.base import Process
from jaxdiff.solvers.base import SampleOutput, Sampler
from jaxdiff.solvers.reverse import ScoreFn
from jaxdiff.solvers.samplers import sample


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """A sampler and its grid: ``steps`` intervals of kind ``grid`` from T down to ``t_min``,
    then ``denoise`` (one Tweedie / noise-free step, one more score evaluation) or not.

    ``grid`` is a name (``uniform``, ``quadratic``, ``logsnr``, ``karras``;
    ``jaxdiff.solvers.grids``) or the times themselves (``steps + 1`` of them, decreasing from T).
    """

    sampler: Sampler
    steps: int = 1000
    grid: str | tuple[float, ...] = "uniform"
    t_min: float = 1e-3
    denoise: bool = True

    def run(
        self, process: Process, score_fn: ScoreFn, key: jax.Array, shape: tuple[int, ...]
    ) -> SampleOutput:
        return sample(
            process,
            score_fn,
            key,
            shape,
            self.sampler,
            steps=self.steps,
            grid=self.grid,
            t_min=self.t_min,
            denoise=self.denoise,
        )
