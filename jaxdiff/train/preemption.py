"""What a scheduler does to a job: stop signals, the agreed stop step, and lost peer processes.

* ``StopSignals``: SIGTERM (the usual preemption notice) and SIGINT only set a flag; the loop
  finishes the step group it is in, writes a checkpoint and returns, and the CLI exits with
  ``EXIT_SIGTERM`` / ``EXIT_SIGINT`` (128 + the signal, what a shell reports for a job killed by
  it; here the checkpoint is written first). A second SIGINT interrupts at once.
* ``agree_stop``: in a multi-process run every process asks, at the same point of every step
  group, whether any process was signalled (one all-gather of a flag), so all of them save the
  same step, the role of orbax's preemption sync point.
* ``PeerWatchdog``: every process bumps a counter in the coordination service's key-value store
  every few seconds; a peer whose counter stands still for ``timeout`` seconds, or a coordinator
  that stops answering, is reported by name and the process exits with ``EXIT_LOST_PEER``
  instead of hanging in a collective. JAX's own heartbeat (``heartbeat_timeout_seconds``, set
  above ours by ``parallel.maybe_initialize_distributed``) is the backstop.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import jax
import numpy as np

# Exit statuses of `jaxdiff` (docs/reliability.md).
EXIT_OK = 0
EXIT_ERROR = 2  # bad input or environment, named on one stderr line
EXIT_LOST_PEER = 3  # another process of a multi-process run died or stopped answering
EXIT_SIGINT = 128 + signal.SIGINT  # 130: stopped by SIGINT after writing a checkpoint
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143: stopped by SIGTERM after writing a checkpoint

DEFAULT_PEER_TIMEOUT_S = 60.0


class LostPeerError(RuntimeError):
    """A process of a multi-process run died or stopped answering."""


class StopSignals:
    """Context manager: SIGTERM / SIGINT set ``signum`` instead of killing the process.

    Handlers are installed only in the main thread and restored on exit. A second SIGINT raises
    ``KeyboardInterrupt`` (the user insists); further SIGTERMs are ignored (the step in flight
    and the checkpoint still finish; a scheduler that cannot wait sends SIGKILL).
    """

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            name = signal.Signals(signum).name
            print(
                f"jaxdiff: {name} received: finishing the current step, then saving a checkpoint",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


def agree_stop(local_signum: int | None) -> int | None:
    """The signal that stops the run at this point, agreed by all processes (None: go on).

    Every process must call this at the same point of the same step group: it is a collective
    in a multi-process run (an all-gather of one int per process); free for a single process.
    """
    if jax.process_count() == 1:
        return local_signum
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.array([local_signum or 0], np.int32))
    flags = np.asarray(flags).reshape(-1)
    return int(flags.max()) or None


def exit_code(signum: int | None) -> int:
    """The exit status after a run stopped by ``signum`` wrote its checkpoint."""
    return EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM


def _client():
    from jax._src import distributed

    return distributed.global_state.client


class PeerWatchdog:
    """Heartbeats through the coordination service; exits naming a peer that went silent.

    Args:
      timeout: seconds a peer's heartbeat may stand still before it counts as lost.
      on_lost: called with the message instead of printing it and ``os._exit(EXIT_LOST_PEER)``
        (tests).
    """

    def __init__(self, timeout: float, on_lost: Callable[[str], None] | None = None):
        self.timeout = float(timeout)
        self.interval = max(0.2, min(5.0, self.timeout / 10))
        self.pid, self.count = jax.process_index(), jax.process_count()
        self.on_lost = on_lost
        self.verdict: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _key(self, pid: int) -> str:
        return f"jaxdiff/heartbeat/{pid}"

    def start(self) -> PeerWatchdog:
        if self.count > 1 and _client() is not None:
            self._thread = threading.Thread(target=self._run, name="jaxdiff-peers", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        client = _client()
        seen: dict[int, tuple[str, float]] = {}
        beat, unreachable_since = 0, None
        while not self._stop.wait(self.interval if beat else 0):
            beat += 1
            now = time.monotonic()
            try:
                client.key_value_set(self._key(self.pid), str(beat), allow_overwrite=True)
                values = {p: self._get(client, p) for p in self._peers()}
                unreachable_since = None
            except Exception as e:  # the coordination service (process 0) does not answer
                unreachable_since = unreachable_since or now
                if now - unreachable_since > self.timeout / 2:
                    return self._lost(
                        f"the coordinator (process 0 of {self.count}) stopped answering for "
                        f"{now - unreachable_since:.0f} s ({type(e).__name__})"
                    )
                continue
            for p, v in values.items():
                if v == "done":
                    seen[p] = (v, float("inf"))
                elif p not in seen or (v is not None and seen[p][0] != v):
                    seen[p] = (v, now)
                if now - seen[p][1] > self.timeout:
                    return self._lost(
                        f"process {p} of {self.count} sent no heartbeat for "
                        f"{now - seen[p][1]:.0f} s (peer timeout {self.timeout:g} s)"
                    )

    def _get(self, client, pid: int) -> str | None:
        try:
            return client.key_value_try_get(self._key(pid))
        except Exception as e:
            if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
                return None  # no heartbeat from this peer yet
            raise

    def _peers(self) -> list[int]:
        return [p for p in range(self.count) if p != self.pid]

    def _lost(self, what: str) -> None:
        self.verdict = (
            f"jaxdiff: error: LostPeerError: {what}; process {self.pid} exits instead of waiting "
            "in a collective. Restart the whole job with the same command: it resumes from the "
            "last checkpoint all processes wrote."
        )
        if self.on_lost is not None:
            self.on_lost(self.verdict)
            return
        print(self.verdict, file=sys.stderr, flush=True)
        os._exit(EXIT_LOST_PEER)

    def wait_for_verdict(self) -> str | None:
        """After a failed collective: waits (at most the timeout and two beats) for the thread
        to name a lost peer; returns its message, or None if every peer still answers."""
        if self._thread is None:
            return None
        self._thread.join(self.timeout + 2 * self.interval)
        return self.verdict

    def stop(self, finished: bool = True) -> None:
        """Stops the heartbeat; ``finished`` tells the peers that this process left on purpose."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join()
        if finished and self.verdict is None:
            try:
                _client().key_value_set(self._key(self.pid), "done", allow_overwrite=True)
            except Exception:  # the service is already gone: nobody is left to wait for us
                pass
