"""Where a run's wall time went, over all its attempts (restarts): ``workdir/goodput.json``.

Categories follow the badput classes of ml-goodput-measurement: ``startup`` (building, placing
the initial state), ``compile`` (the first step group, which includes tracing and compilation),
``data`` (making and placing batches), ``steps`` (training steps after the first group),
``checkpoint_save``, ``checkpoint_restore``, ``eval`` (the loop's hooks: snapshots, evaluation),
``lost_to_interruptions`` (data and step time of steps computed after the last checkpoint of an
attempt that was killed, which the next attempt recomputes) and ``between_attempts`` (from the
last record of one attempt to the start of the next: the unrecorded end of a killed attempt,
process start-up and imports, scheduler delay). ``goodput`` is the share of ``steps`` (with the
step time of the first group counted in ``compile``) in the wall time, lost steps excluded.

Each attempt's record is rewritten (atomically, at most once a second, and at every checkpoint
and at the end) by process 0, so a SIGKILL loses at most about a second of accounting.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

CATEGORIES = (
    "startup",
    "compile",
    "data",
    "steps",
    "checkpoint_save",
    "checkpoint_restore",
    "eval",
    "lost_to_interruptions",
    "between_attempts",
)
FILENAME = "goodput.json"


class Goodput:
    """Times the categories of one attempt and keeps the records of the earlier ones."""

    def __init__(self, workdir: str, enabled: bool = True, min_interval_s: float = 1.0):
        self.path = os.path.join(workdir, FILENAME)
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.attempts: list[dict[str, Any]] = load(workdir)["attempts"] if enabled else []
        self.start = time.time()
        self.current: dict[str, Any] = {
            "start": self.start,
            "last": self.start,
            "seconds": dict.fromkeys(CATEGORIES, 0.0),
            "first_step": None,
            "last_step": None,
            "checkpoint_step": None,
            "uncommitted": {},
            "end": None,
        }
        self._written = 0.0

    @contextlib.contextmanager
    def time(self, category: str, uncommitted: bool = False) -> Iterator[None]:
        """Adds the time of the block to ``category`` (and to the work a kill would lose)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.current["seconds"][category] += dt
            if uncommitted:
                u = self.current["uncommitted"]
                u[category] = u.get(category, 0.0) + dt

    def resumed(self, step: int | None) -> None:
        """Called once the start step is known (None: a fresh run): moves the previous
        attempt's work past its last checkpoint to ``lost_to_interruptions`` (when it was
        computed beyond the restored step) and charges the gap since its last record."""
        self.current["first_step"] = self.current["last_step"] = step or 0
        if not self.attempts:
            return
        prev = self.attempts[-1]
        if (prev.get("last_step") or 0) > (step or 0):
            for category, dt in prev.get("uncommitted", {}).items():
                prev["seconds"][category] -= dt
                prev["seconds"]["lost_to_interruptions"] += dt
            prev["uncommitted"] = {}
        self.current["seconds"]["between_attempts"] += max(0.0, self.start - prev["last"])

    def stepped(self, step: int) -> None:
        self.current["last_step"] = step
        self.write()

    def checkpointed(self, step: int) -> None:
        self.current["checkpoint_step"] = step
        self.current["uncommitted"] = {}
        self.write(force=True)

    def finish(self, end: str) -> dict[str, Any]:
        """Closes the attempt (``end``: 'finished', 'sliced', 'SIGTERM', ...); returns the
        summary over all attempts."""
        self.current["end"] = end
        self.write(force=True)
        return summary(self.attempts + [self.current])

    def write(self, force: bool = False) -> None:
        now = time.time()
        self.current["last"] = now
        if not self.enabled or (not force and now - self._written < self.min_interval_s):
            return
        self._written = now
        record = {"attempts": self.attempts + [self.current]}
        record["summary"] = summary(record["attempts"])
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, self.path)


def load(workdir: str) -> dict[str, Any]:
    """The stored record (``{"attempts": [...], "summary": {...}}``; empty if none)."""
    path = os.path.join(workdir, FILENAME)
    try:
        with open(path) as f:
            record = json.load(f)
        if isinstance(record.get("attempts"), list):
            return record
    except (OSError, ValueError):  # none yet, or cut short: accounting restarts, training not
        pass
    return {"attempts": [], "summary": summary([])}


def summary(attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds per category summed over ``attempts``, the total wall time and the goodput."""
    seconds = dict.fromkeys(CATEGORIES, 0.0)
    for a in attempts:
        for k, v in a["seconds"].items():
            seconds[k] = seconds.get(k, 0.0) + v
    total = sum(seconds.values())
    return {
        "seconds": seconds,
        "total_s": total,
        "attempts": len(attempts),
        "goodput": seconds["steps"] / total if total > 0 else 0.0,
    }


def format_summary(s: dict[str, Any]) -> str:
    """A small table: category, seconds, share of the wall time."""
    total = s["total_s"] or 1.0
    lines = [f"goodput {100 * s['goodput']:.1f}% of {s['total_s']:.1f} s over "
             f"{s['attempts']} attempt(s):"]  # fmt: skip
    for k, v in s["seconds"].items():
        lines.append(f"  {k:<22} {v:9.2f} s {100 * v / total:6.1f}%")
    return "\n".join(lines)
