"""Drawing many samples: jit once, split into batches, spread each batch over all devices.

Every method exposes a pure ``sample_fn(params, key, num) -> (samples, nfe)``; ``draw`` is the one
place that turns it into samples on the host, for the CLI, evaluation and the experiments alike.
Batch ``i`` uses ``fold_in(key, i)``; its samples are sharded along the mesh's 'data' axis (the
batch is padded up to a multiple of the device count and cut back), so N devices draw N times
as many samples per call. With several processes every process receives all samples.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from jaxdiff.train import parallel

SampleFn = Callable[[Any, jax.Array, int], tuple[jax.Array, jax.Array]]


@functools.lru_cache(maxsize=64)
def _compiled(sample_fn: SampleFn, mesh: Mesh, n: int):
    out = parallel.batch_sharding(mesh)
    return jax.jit(sample_fn, static_argnums=(2,), out_shardings=(out, None))


def batches(
    sample_fn: SampleFn,
    params: Any,
    key: jax.Array,
    num: int,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    *,
    local: bool = False,
    info: dict[str, Any] | None = None,
) -> Iterator[np.ndarray]:
    """Yields the ``num`` samples batch by batch as host arrays: nothing but the current batch is
    held, so 50,000 images can go straight to features.

    Args:
      sample_fn, params, key, num, batch_size, mesh: as for :func:`draw`.
      local: with several processes, yield only this process's share of each batch (its
        devices' rows, padding dropped at the end of the global batch) instead of all of it.
      info: a dict updated with ``nfe`` (max over batches), ``seconds`` and ``batches``.
    """
    if num <= 0:
        raise ValueError(f"the number of samples must be positive, got {num}")
    mesh = mesh or parallel.make_mesh()
    n_dev = mesh.devices.size
    bs = min(int(batch_size or num), num)
    info = {} if info is None else info
    info.update(nfe=0, batches=0)
    t0 = time.time()
    for i, start in enumerate(range(0, num, bs)):
        n = min(bs, num - start)
        padded = -(-n // n_dev) * n_dev
        x, used = _compiled(sample_fn, mesh, padded)(params, jax.random.fold_in(key, i), padded)
        if jax.process_count() > 1 and local:
            chunk = _local_rows(x, n)
        else:
            if jax.process_count() > 1:
                x = multihost_utils.process_allgather(x, tiled=True)
            chunk = np.asarray(jax.device_get(x))[:n]
        info.update(nfe=max(info["nfe"], int(used)), batches=i + 1, seconds=time.time() - t0)
        yield chunk


def _local_rows(x: jax.Array, n: int) -> np.ndarray:
    """This process's rows of a batch sharded along axis 0, rows ``>= n`` (padding) dropped."""
    rows = []
    for shard in sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0):
        lo = shard.index[0].start or 0
        data = np.asarray(shard.data)
        rows.append(data[: max(0, min(len(data), n - lo))])
    return np.concatenate(rows)


def draw(
    sample_fn: SampleFn,
    params: Any,
    key: jax.Array,
    num: int,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``num`` samples as a host array, and ``{'nfe', 'seconds'}`` (compile time included).

    Args:
      sample_fn: a method's ``sample_fn`` (pure; jitted here once per batch size).
      params: its parameters (``method.sampling_params(state)``).
      key: PRNG key; batch ``i`` uses ``fold_in(key, i)``.
      num: number of samples.
      batch_size: samples per jitted call (default: all at once).
      mesh: device mesh (default: all devices on a 'data' axis).
    """
    info: dict[str, Any] = {}
    chunks = list(batches(sample_fn, params, key, num, batch_size, mesh, info=info))
    samples = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return samples, {"nfe": info["nfe"], "seconds": info["seconds"]}
