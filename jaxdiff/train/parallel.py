"""Data parallelism over every device of every process: a 1-D mesh with a 'data' axis.

The batch is sharded along 'data', parameters and optimiser states are replicated; the method's
single-device ``train_step`` is jitted with these shardings and XLA inserts the gradient
all-reduce (the mean over a sharded batch). Multi-host: ``jax.distributed.initialize`` first,
then each process contributes its own slice of the global batch.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


_PEER_TIMEOUT_S: list[float] = []  # set by maybe_initialize_distributed


def peer_timeout() -> float:
    """Seconds a silent peer process is waited for (``--peer_timeout``; default 60)."""
    from jaxdiff.train.preemption import DEFAULT_PEER_TIMEOUT_S

    env = os.environ.get("JAXDIFF_PEER_TIMEOUT")
    return _PEER_TIMEOUT_S[-1] if _PEER_TIMEOUT_S else float(env or DEFAULT_PEER_TIMEOUT_S)


def maybe_initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    peer_timeout_s: float | None = None,
) -> None:
    """``jax.distributed.initialize`` from arguments or the JAXDIFF_* / JAX_* environment.

    Does nothing for a single process. Environment variables: ``JAXDIFF_COORDINATOR``
    (host:port), ``JAXDIFF_NUM_PROCESSES``, ``JAXDIFF_PROCESS_ID``, ``JAXDIFF_PEER_TIMEOUT``.
    ``peer_timeout_s``: how long the trainer's watchdog waits for a silent peer before exiting
    (``preemption.PeerWatchdog``); JAX's own heartbeat timeout is set above it, as a backstop.
    """
    if peer_timeout_s is not None:
        if peer_timeout_s <= 0:
            raise ValueError(f"--peer_timeout must be positive, got {peer_timeout_s}")
        _PEER_TIMEOUT_S.append(float(peer_timeout_s))
    coordinator = coordinator or os.environ.get("JAXDIFF_COORDINATOR")
    num = num_processes or int(os.environ.get("JAXDIFF_NUM_PROCESSES", "0") or 0)
    pid = process_id if process_id is not None else os.environ.get("JAXDIFF_PROCESS_ID")
    if not coordinator or num <= 1:
        return
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num,
        process_id=int(pid),
        heartbeat_timeout_seconds=int(2 * peer_timeout() + 10),
    )


def make_mesh() -> Mesh:
    """A mesh over all global devices with one axis, 'data'."""
    return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over 'data'."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """(steps, batch, ...) arrays: the batch axis split over 'data' (for n_jitted_steps)."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a host pytree on every device (identical on every process)."""
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(
            np.shape(x), sharding, lambda idx: np.asarray(x)[idx]
        ),
        tree,
    )


def global_batch(local: Any, sharding: NamedSharding) -> Any:
    """Assembles the global batch from this process's slice (``local``)."""
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local)


def check_batch_size(global_batch_size: int) -> int:
    """The per-process batch size; raises if the global batch does not split evenly."""
    n_dev, n_proc = jax.device_count(), jax.process_count()
    if global_batch_size % n_dev:
        raise ValueError(
            f"training.batch_size={global_batch_size} must be divisible by the number of "
            f"devices ({n_dev})"
        )
    return global_batch_size // n_proc
