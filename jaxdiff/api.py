"""The composition root: config -> objects (``jaxdiff.build``) -> trainer, sampler, evaluation.

The CLI is a thin shell over these functions, and they are the Python API::

    from jaxdiff import api
    api.train(config, "runs/vp")                     # trains or resumes; writes the workdir
    run = api.restore("runs/vp")                     # (config, method, state, data)
    samples, info = api.sample(run, solver="ode_tsit5", num=1000)

A workdir holds ``config.json`` (the resolved config), ``checkpoints/``, ``metrics.jsonl``,
TensorBoard events, ``samples/`` and ``eval.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np

from jaxdiff import build
from jaxdiff.train import loop
from jaxdiff.train.protocol import Method
from jaxdiff.train.sampling import draw
from jaxdiff.train.state import TrainState


class WorkdirError(ValueError):
    """A workdir that cannot be used with the requested config."""


class Restored(NamedTuple):
    config: ml_collections.ConfigDict
    method: Method
    state: TrainState
    data: Any


def config_path(workdir: str) -> str:
    return os.path.join(workdir, "config.json")


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a run stored in its workdir."""
    path = config_path(workdir)
    if not os.path.exists(path):
        raise WorkdirError(
            f"{workdir!r} holds no jaxdiff run (no config.json): train there first with "
            "`jaxdiff train --config CONFIG --workdir DIR`"
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def _as_plain(x: Any) -> Any:
    return json.loads(json.dumps(x.to_dict() if hasattr(x, "to_dict") else x, default=list))


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises if ``workdir`` holds a run whose model differs from ``config``'s."""
    if not os.path.exists(config_path(workdir)):
        return
    old = load_config(workdir)
    diffs = [
        s for s in build.IDENTITY_SECTIONS if _as_plain(old.get(s)) != _as_plain(config.get(s))
    ]
    if diffs:
        raise WorkdirError(
            f"{workdir!r} holds a different run (method {old.get('method')!r}); config sections "
            f"that differ: {diffs}. Nothing was changed: use a new --workdir, or the stored "
            "config to resume."
        )


def store_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        path = config_path(workdir)
        with open(path + ".tmp", "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        os.replace(path + ".tmp", path)


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Builds everything from ``config`` (all errors before anything is written), then trains
    or resumes the run in ``workdir``. At the last step: writes samples and ``eval.json``."""
    check_workdir(config, workdir)
    run = build.build_run(config)
    store_config(config, workdir)
    bs = getattr(run.method, "sample_batch", None)

    def snapshot(state, step):
        tag = f"step_{step:08d}"
        loop.write_samples(run.method, state, workdir, run.num_samples, tag=tag, batch_size=bs)

    hooks = [loop.Hook(run.train.snapshot_every, snapshot)]
    state, summary = loop.train(
        run.method, run.data, run.train, workdir, progress=progress, stop_after=stop_after,
        hooks=hooks,
    )  # fmt: skip
    if summary["step"] >= run.train.num_steps:
        summary["samples"] = loop.write_samples(
            run.method, state, workdir, run.num_samples, batch_size=bs
        )
        if run.eval_at_end:
            summary["eval"] = evaluate(Restored(config, run.method, state, run.data), workdir)
    return state, summary


def restore(workdir: str, step: int | None = None, **sampling: Any) -> Restored:
    """(config, method, state, data) of the run in ``workdir`` at checkpoint ``step`` (latest);
    ``sampling`` overrides the stored sampling options (``sampler``, ``steps``, ...)."""
    if not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir!r} does not exist")
    config = load_config(workdir)
    data = build.build_data(config)
    method = build.build_method(config, tuple(data.shape), **sampling)
    state = loop.restore_state(method, data, config.training.batch_size, workdir, step)
    return Restored(config, method, state, data)


def sample(
    run: Restored, num: int | None = None, seed: int = 0, batch_size: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """``num`` samples (default ``config.sampling.num``) with the run's EMA parameters."""
    num = num or run.config.sampling.num
    bs = batch_size or getattr(run.method, "sample_batch", None)
    params = run.method.sampling_params(run.state)
    return draw(run.method.sample_fn, params, jax.random.key(seed), num, bs)


def evaluate(run: Restored, workdir: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The method's metrics as a JSON-ready dict (also written to ``workdir/eval.json``)."""
    res = run.method.evaluate(run.state, jax.random.key(seed), run.data)
    res = {k: (float(v) if np.ndim(v) == 0 else np.asarray(v).tolist()) for k, v in res.items()}
    if workdir is not None and jax.process_index() == 0:
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            f.write(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return res


# ----------------------------------------------------------------------------------------------
# Sample quality (FID, KID, IS, precision / recall) of image models


def _check_images(data) -> None:
    if len(getattr(data, "shape", ())) != 3 or not hasattr(data, "images"):
        raise ValueError("FID and its relatives need an image data set (data.kind = 'image')")


def fid_stats(
    config: ml_collections.ConfigDict,
    out: str,
    num: int | None = None,
    batch: int = 100,
    weights: str | None = None,
) -> dict[str, Any]:
    """Inception statistics of the first ``num`` (default: all) examples of the config's data
    set, unflipped, written to ``out`` (``mu``, ``sigma``, the features up to 50k, a record)."""
    from jaxdiff.eval import inception, quality

    data = build.build_data(config)
    _check_images(data)
    num = min(num or data.num_examples, data.num_examples)
    model = inception.load_inception(weights)
    batches = (data.images(i, min(batch, num - i)) for i in range(0, num, batch))
    feats = quality.features(model, batches, limit=num)["pool3"]
    record = {
        "data": config.data.to_dict(),
        "num": int(num),
        "weights": model.source,
        "weights_sha256": model.sha256,
    }
    quality.save_stats(out, feats, record)
    return record


def sample_quality(
    run: Restored,
    num: int,
    stats: str,
    seed: int = 0,
    batch_size: int | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """FID (and KID, precision / recall, density / coverage, IS where available) of ``num``
    samples of the run against the statistics file ``stats``, with the protocol record."""
    from jaxdiff.eval import inception, quality

    _check_images(run.data)
    ref = quality.load_stats(stats)
    samples, info = sample(run, num=num, seed=seed, batch_size=batch_size)
    model = inception.load_inception(weights)
    fake = quality.features(model, quality.batched(samples, 100))
    spec = getattr(run.method, "sampling", None)  # DDGAN samples along its own chain
    sampler = "the method's own chain" if spec is None else {
        "name": repr(spec.sampler), "steps": spec.steps, "grid": spec.grid, "t_min": spec.t_min,
    }  # fmt: skip
    res: dict[str, Any] = quality.quality_metrics(fake, ref)
    res["protocol"] = {
        "num_samples": int(num),
        "seed": seed,
        "nfe": info["nfe"],
        "sampling_seconds": info["seconds"],
        "sampler": sampler,
        "weights_sha256": model.sha256,
        "reference": ref["record"] or stats,
    }
    return res
