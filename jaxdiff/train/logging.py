"""Run feedback: a progress bar, metrics as JSON lines, TensorBoard event files, and the run's
event log (``events.jsonl``: restore fall-backs, checkpoints set aside, stops by a signal)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np


class MetricsLogger:
    """Writes ``metrics.jsonl`` and TensorBoard events under ``workdir`` (process 0 only)."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled and jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "time": time.time()}
        for k, v in metrics.items():
            v = float(np.asarray(v))
            row[k] = v
            self._tb.add_scalar(k, v, int(step))
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class Progress:
    """A tqdm bar showing step, loss, steps/s and ETA (process 0 only)."""

    def __init__(self, start: int, total: int, enabled: bool = True):
        self.bar = None
        if enabled and jax.process_index() == 0:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=start, unit="step", dynamic_ncols=True, mininterval=1.0
            )

    def update(self, n: int, metrics: dict[str, float] | None = None) -> None:
        if self.bar is None:
            return
        self.bar.update(n)
        if metrics:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EventLog:
    """Warnings about the run: one line on stderr (every process) and a JSON line in
    ``workdir/events.jsonl`` (process 0), e.g. a checkpoint skipped because it is corrupt."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "events.jsonl")
        self.enabled = jax.process_index() == 0

    def warn(
        self, message: str, step: int | None = None, event: str = "warning", echo=True, **extra
    ) -> None:
        if echo:
            print(f"jaxdiff: warning: {message}", file=sys.stderr, flush=True)
        if not self.enabled:
            return
        row = {"time": time.time(), "event": event, "step": step, "message": message, **extra}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
