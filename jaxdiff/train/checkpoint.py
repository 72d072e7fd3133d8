"""Checkpoints with orbax's ``CheckpointManager``: async, keep the last N plus every K-th.

A checkpoint holds the whole ``TrainState`` (parameters, optimiser states, EMA, step) and a JSON
record of the run position (step, examples consumed, seed). The RNG and the data iterator are pure
functions of (seed, step) in jaxdiff, so restoring the step restores both exactly.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
process killed mid-write leaves the previous checkpoint as the latest one; the temporary
directory is ignored (and cleaned up by the next save). A step directory that is there but
cannot be read (a corrupt file, a partial copy) is skipped by ``restore`` with a warning, which
falls back to the newest readable step; nothing is deleted. A save that fails (a full disk, an
unwritable directory) raises ``CheckpointWriteError`` and leaves the earlier checkpoints as they
were.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint directory cannot be read."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint cannot be written (disk full, no permission, read-only file system)."""


def _state_bytes(state: Any) -> int:
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state)))


def _write_error(directory: str, step: int | None, e: BaseException) -> CheckpointWriteError:
    cause = e
    while not isinstance(cause, OSError) and (cause.__cause__ or cause.__context__):
        cause = cause.__cause__ or cause.__context__
    code = getattr(cause, "errno", None)
    what = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EROFS: "the file system is read-only",
    }.get(code, f"{type(e).__name__}: {str(e)[:200]}")
    return CheckpointWriteError(
        f"checkpoint step {step} could not be written to {directory}: {what}. Training stopped; "
        "the earlier checkpoints are intact and the unfinished one is not taken as the latest. "
        "Free space (or fix the permissions) and rerun the same command to resume."
    )


class Checkpointer:
    def __init__(self, directory: str, keep: int = 2, keep_every: int = 0, use_async: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            keep_period=keep_every or None,
            enable_async_checkpointing=use_async,
            create=True,
        )
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options)
        except OSError as e:
            raise _write_error(self.directory, 0, e) from e
        self.restored_step: int | None = None
        self.skipped: list[tuple[int, str]] = []  # (step, why) of unreadable newer checkpoints
        self._pending: int | None = None

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Starts writing ``step`` (async); raises ``CheckpointWriteError`` if it, or the
        previous async write, fails. Refuses before writing when the disk lacks the room."""
        need = _state_bytes(state)
        free = shutil.disk_usage(self.directory).free
        if free < need:
            raise _write_error(
                self.directory, step, OSError(errno.ENOSPC, f"{free} bytes free, {need} needed")
            )
        if self._pending is not None and not self.manager.is_saving_in_progress():
            try:  # the previous async write has ended: did it fail?
                self.manager.check_for_errors()
            except Exception as e:
                raise _write_error(self.directory, self._pending, e) from e
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
        except Exception as e:  # orbax wraps the OSError of a failed write
            raise _write_error(self.directory, step, e) from e
        self._pending = step

    def restore(
        self,
        abstract_state: Any,
        step: int | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Restores ``step`` onto the structure/shardings of the target.

        ``step`` None: the newest checkpoint that can be read; each newer one that cannot is
        reported through ``warn`` (default: a line on stderr) and recorded in ``skipped``.
        An explicit ``step`` that cannot be read raises ``CheckpointError``.
        """
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if step is not None and step not in steps:
            raise CheckpointError(f"no checkpoint of step {step} in {self.directory} ({steps})")
        warn = warn or (lambda msg: print(f"jaxdiff: warning: {msg}", file=sys.stderr, flush=True))
        self.skipped = []
        for s in [step] if step is not None else steps[::-1]:
            try:
                state, meta = self._restore(abstract_state, s)
            except Exception as e:  # orbax raises many types for unreadable or mismatched data
                why = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                if step is not None:
                    raise self._unreadable(s, why) from e
                self.skipped.append((s, why))
                warn(
                    f"checkpoint {os.path.join(self.directory, str(s))} cannot be restored "
                    f"({why[:200]}); falling back to an earlier one (nothing is deleted)"
                )
                continue
            self.restored_step = s
            return state, meta
        why = "; ".join(f"step {s}: {w[:120]}" for s, w in self.skipped)
        raise self._unreadable(steps[-1], why)

    def _restore(self, abstract_state: Any, step: int) -> tuple[Any, dict[str, Any]]:
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return out.state, dict(out.meta)

    def _unreadable(self, step: int, why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {os.path.join(self.directory, str(step))} cannot be restored ({why}). "
            f"It is corrupt or was written by a different model/config. Checkpoints present: "
            f"{self.all_steps()}, none readable. Nothing was changed; pick one with "
            "--restore_step, or use a new --workdir."
        )

    def set_aside(self, steps: list[int], reason: str) -> str | None:
        """Moves the step directories ``steps`` to ``<directory>.<reason>/`` (process 0), so
        training from an earlier step can write them again; returns where, or None."""
        if not steps:
            return None
        dest = f"{self.directory}.{reason}"
        if jax.process_index() == 0:
            os.makedirs(dest, exist_ok=True)
            for s in steps:
                target = os.path.join(dest, str(s))
                n = 1
                while os.path.exists(target):
                    target, n = os.path.join(dest, f"{s}.{n}"), n + 1
                os.replace(os.path.join(self.directory, str(s)), target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("jaxdiff_set_aside")
        self.manager.reload()
        return dest

    def wait(self) -> None:
        """Waits for the async write in flight; raises ``CheckpointWriteError`` if it failed."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise _write_error(self.directory, self._pending, e) from e
        self._pending = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()
