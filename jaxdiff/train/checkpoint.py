"""Checkpoints with orbax's ``CheckpointManager``: async, keep the last N plus every K-th.

A checkpoint holds the whole ``TrainState`` (parameters, optimiser states, EMA, step) and a JSON
record of the run position (step, examples consumed, seed). The RNG and the data iterator are pure
functions of (seed, step) in jaxdiff, so restoring the step restores both exactly.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
process killed mid-write leaves the previous checkpoint as the latest one; the temporary
directory is ignored (and cleaned up by the next save).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint directory cannot be read."""


class Checkpointer:
    def __init__(self, directory: str, keep: int = 2, keep_every: int = 0, use_async: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            keep_period=keep_every or None,
            enable_async_checkpointing=use_async,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores ``step`` (default: the latest) onto the structure/shardings of the target."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:  # orbax raises many types for unreadable or mismatched data
            raise CheckpointError(
                f"checkpoint {os.path.join(self.directory, str(step))} cannot be restored "
                f"({type(e).__name__}: {str(e)[:300]}). It is corrupt or was written by a "
                f"different model/config. Checkpoints present: {self.all_steps()}. Nothing was "
                "changed; move the bad step directory away to resume from an earlier one, or use "
                "a new --workdir."
            ) from e
        return out.state, dict(out.meta)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
