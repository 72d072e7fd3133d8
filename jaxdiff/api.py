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
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import build
from jaxdiff.train import loop, parallel
from jaxdiff.train.checkpoint import Checkpointer
from jaxdiff.train.protocol import Method
from jaxdiff.train.sampling import batches as sampling_batches
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


def _differing_keys(old: Any, new: Any, prefix: str, defaults: dict[str, Any]) -> list[str]:
    """Dotted paths whose values differ between two plain (JSON) config sections. A key that
    only ``new`` has is listed as ``+path``, unless it holds ``defaults[path]``."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix]
    out = []
    for k in sorted(set(old) | set(new)):
        path = f"{prefix}.{k}"
        if k not in old:
            if path not in defaults or _as_plain(defaults[path]) != new[k]:
                out.append("+" + path)
        elif k not in new:
            out.append(path)
        else:
            out += _differing_keys(old[k], new[k], path, defaults)
    return out


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises if ``workdir`` holds a run whose model differs from ``config``'s.

    A key that the stored run lacks (added to jaxdiff after it was trained) does not count when
    ``config`` holds it at the value the code uses for an absent key
    (``build.absent_key_defaults()``): the stored run was trained with exactly that value."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir!r} is a file, not a directory")
    if not os.path.exists(config_path(workdir)):
        return
    old = load_config(workdir)
    defaults = build.absent_key_defaults()
    diffs = [
        path
        for s in build.IDENTITY_SECTIONS
        for path in _differing_keys(_as_plain(old.get(s)), _as_plain(config.get(s)), s, defaults)
    ]
    if diffs:
        raise WorkdirError(
            f"{workdir!r} holds a different run (method {old.get('method')!r}); config keys "
            f"that differ: {diffs} ('+': new since that run). Nothing was changed: use a new "
            "--workdir, or the stored config to resume."
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
    restore_step: int | None = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Builds everything from ``config`` (all errors before anything is written), then trains
    or resumes the run in ``workdir`` (from checkpoint ``restore_step``, default the newest
    readable one). At the last step: writes samples and ``eval.json``."""
    check_workdir(config, workdir)
    if restore_step is not None:
        loop.check_restore_step(workdir, restore_step)
    run = build.build_run(config)
    store_config(config, workdir)
    bs = getattr(run.method, "sample_batch", None)

    def snapshot(state, step):
        tag = f"step_{step:08d}"
        loop.write_samples(run.method, state, workdir, run.num_samples, tag=tag, batch_size=bs)

    hooks = [loop.Hook(run.train.snapshot_every, snapshot)]
    if run.evaluation.every:
        hooks.append(_evaluation_hook(config, run, workdir))
    state, summary = loop.train(
        run.method, run.data, run.train, workdir, progress=progress, stop_after=stop_after,
        hooks=hooks, restore_step=restore_step,
    )  # fmt: skip
    if summary["step"] >= run.train.num_steps:
        summary["samples"] = loop.write_samples(
            run.method, state, workdir, run.num_samples, batch_size=bs
        )
        if run.eval_at_end:
            summary["eval"] = evaluate(Restored(config, run.method, state, run.data), workdir)
    return state, summary


def _evaluation_hook(config, run: build.Run, workdir: str) -> loop.Hook:
    """``training.eval_every``: the FID of ``eval.fid_num`` samples (images) or the toy metrics,
    logged under ``eval/``; the best state so far is kept in ``workdir/best`` (one checkpoint,
    apart from the last ones, with ``best.json``)."""
    ev = run.evaluation
    images = len(run.data.shape) == 3
    if images and not ev.fid_num:
        raise build.ConfigError("training.eval_every on images needs eval.fid_num > 0 (the FID)")
    best = BestCheckpoint(workdir, "fid" if images else "sw_ratio")

    def fn(state: TrainState, step: int) -> dict[str, float]:
        if images:
            stats = reference_stats(config, workdir)
            res = _quality(run.method, state, run.data, ev.fid_num, stats)
            res = {k: v for k, v in res.items() if k != "protocol"} | {
                "nfe": res["protocol"]["nfe"]
            }
        else:
            res = run.method.evaluate(state, jax.random.key(0), run.data)
        res = {k: float(v) for k, v in res.items() if np.ndim(v) == 0}
        best.offer(step, res[best.metric], state)
        return {f"eval/{k}": v for k, v in res.items()}

    return loop.Hook(ev.every, fn)


class BestCheckpoint:
    """The state with the lowest ``metric`` seen so far, in ``workdir/best`` (kept apart from the
    rolling checkpoints); ``best.json`` says which step and value it is."""

    def __init__(self, workdir: str, metric: str):
        self.directory = os.path.join(workdir, "best")
        self.metric = metric
        self.record = best_record(workdir) or {}

    def offer(self, step: int, value: float, state: TrainState) -> bool:
        if not np.isfinite(value) or value >= self.record.get("value", np.inf):
            return False
        ckpt = Checkpointer(self.directory, keep=1, use_async=False)
        try:
            ckpt.save(step, state, {"step": step, "metric": self.metric, "value": value})
            ckpt.wait()
        finally:
            ckpt.close()
        self.record = {"step": step, "metric": self.metric, "value": float(value)}
        if jax.process_index() == 0:
            path = os.path.join(self.directory, "best.json")
            with open(path + ".tmp", "w") as f:
                json.dump(self.record, f)
            os.replace(path + ".tmp", path)
        return True


def best_record(workdir: str) -> dict[str, Any] | None:
    """``{'step', 'metric', 'value'}`` of the run's best checkpoint, or None."""
    path = os.path.join(workdir, "best", "best.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def import_checkpoint(config: ml_collections.ConfigDict, ckpt: str, workdir: str) -> dict[str, Any]:
    """Writes ``workdir`` from an official PyTorch checkpoint ``ckpt`` of the network that
    ``config`` describes, as if jaxdiff had trained it: the config, and one checkpoint (optimiser
    states fresh) that ``restore`` / ``sample`` / ``eval`` use. Score models: score_sde_pytorch's
    DDPM++ / NCSN++ or CLD-SGM's NCSN++ (``{'model', 'ema', 'step', 'optimizer'}``; params and
    EMA as stored, at the stored step). DDGAN: a ``netG_{epoch}.pth`` generator state dict (the
    EMA weights when trained with --use_ema) into G and its EMA; D is freshly initialised (the
    released files hold no discriminator), step 0. LSGM: ``train_vae.py`` / ``train_vada.py``
    checkpoints (``_import_lsgm_state``). Mismatches (shapes, tensors left over on either side,
    stored noise levels or arguments) raise before anything is written."""
    from flax import nnx

    from jaxdiff.io import importers
    from jaxdiff.nets.functional import ShapeOnlyRngs
    from jaxdiff.train.state import create_state

    check_workdir(config, workdir)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
        raise WorkdirError(f"{workdir!r} already holds checkpoints; import into a new --workdir")
    model, process = config.get("model", {}), config.get("process", {})
    if config.method == "lsgm":
        state, step = _import_lsgm_state(config, ckpt)
        return _write_import(config, ckpt, workdir, state, step)
    nets = {"score": ("ncsnpp", "ddpm"), "ddgan": ("ncsnpp",)}  # score_sde's DDPM is an NCSNpp
    if model.get("name") not in nets.get(config.method, ()):
        raise importers.CheckpointMismatch(
            "import reads score_sde_pytorch (NCSN++, DDPM++, DDPM) / CLD-SGM checkpoints into "
            "score models and DDGAN generators; the config has method "
            f"{config.method!r} with network "
            f"{model.get('name')!r}"
        )
    if model.get("ve_sigma_max", 0.0) and process.get("name") == "ve":
        pairs = [("sigma_min", "ve_sigma_min"), ("sigma_max", "ve_sigma_max")]
        diffs = [f"process.{p} {process.get(p)} != model.{m} {model.get(m)}"
                 for p, m in pairs if process.get(p) != model.get(m)]  # fmt: skip
        if diffs:
            raise importers.CheckpointMismatch(
                "the config's VE noise levels differ: " + "; ".join(diffs)
            )
    vp_beta = tuple(model.get("vp_beta", ()) or ()) if model.get("num_scales", 0) else ()
    if vp_beta and vp_beta != (process.get("beta_min"), process.get("beta_max")):
        raise importers.CheckpointMismatch(
            f"the config's VP betas differ: model.vp_beta {vp_beta} != process (beta_min, "
            f"beta_max) {(process.get('beta_min'), process.get('beta_max'))}"
        )
    method = build.build_method(config)
    as_jax = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
    if config.method == "ddgan":
        net = nnx.eval_shape(lambda: method.make_g(rngs=ShapeOnlyRngs()))
        content = importers.read_ddgan_content(ckpt)
        if content is not None:
            params, ema, step = _ddgan_content(config, method, net, content)
        else:
            g = importers.import_state_dict(ckpt, importers.ncsnpp_map(net), net)
            params, ema, step = {"G": as_jax(g)}, {"G": as_jax(g)}, 0
        batch = {"x": np.zeros((1, *method.data_shape), np.float32)}
        state = method.init(jax.random.key(config.seed), batch)
        params = {**state.params, **params}
        opt = {**state.opt_state, **{g: method.optimizers[g].init(params[g]) for g in params}}
        state = state.replace(step=jnp.asarray(step, jnp.int32), params=params, ema=ema,
                              opt_state=opt)  # fmt: skip
    else:
        net = nnx.eval_shape(lambda: method._make(rngs=ShapeOnlyRngs()))
        imported = importers.import_score_sde(ckpt, net)
        state = create_state({"score": as_jax(imported.params)}, method.optimizers, ("score",))
        step = imported.step
        state = state.replace(
            step=jnp.asarray(step, jnp.int32), ema={"score": as_jax(imported.ema)}
        )
    return _write_import(config, ckpt, workdir, state, step)


def _ddgan_content(config, method, net, content) -> tuple[dict, dict, int]:
    """DDGAN's ``content.pth``: G (trained), its EMA (the trained weights without --use_ema), D,
    at the stored ``global_step``; the stored diffusion arguments must match the config."""
    from flax import nnx

    from jaxdiff.io import importers
    from jaxdiff.nets.functional import ShapeOnlyRngs

    dd, a = config.ddgan, content.args
    want = {"num_timesteps": dd.num_timesteps, "nz": dd.nz, "beta_min": dd.get("beta_min", 0.1),
            "beta_max": dd.get("beta_max", 20.0), "use_geometric": False}  # fmt: skip
    diffs = [f"{k}: checkpoint {a[k]!r}, config {v!r}" for k, v in want.items()
             if k in a and a[k] != v]  # fmt: skip
    if diffs:
        raise importers.CheckpointMismatch("content.pth and the config differ: " + "; ".join(diffs))
    as_jax = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
    entries = importers.ncsnpp_map(net)
    abstract = nnx.to_pure_dict(nnx.state(net))
    g = as_jax(importers.apply_map(entries, content.netG, abstract))
    g_ema = g
    if content.netG_ema is not None:
        g_ema = as_jax(importers.apply_map(entries, content.netG_ema, abstract))
    d_net = nnx.eval_shape(lambda: method.make_d(rngs=ShapeOnlyRngs()))
    d_abs = nnx.to_pure_dict(nnx.state(d_net))
    d = as_jax(importers.apply_map(importers.ddgan_discriminator_map(d_net), content.netD, d_abs))
    return {"G": g, "D": d}, {"G": g_ema}, content.step


def _write_import(config, ckpt: str, workdir: str, state: TrainState, step: int) -> dict:
    """Stores the config and ``state`` as the workdir's one checkpoint at ``step``."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    store_config(config, workdir)
    meta = {
        "step": step,
        "examples_seen": step * config.training.batch_size,
        "seed": config.seed,
        "imported_from": os.path.abspath(ckpt),
    }
    writer = Checkpointer(ckpt_dir, use_async=False)
    try:
        writer.save(step, state, meta)
    finally:
        writer.close()
    return meta


def _import_lsgm_state(config: ml_collections.ConfigDict, ckpt: str) -> tuple[TrainState, int]:
    """LSGM: the VAE (parameters, BN running averages) and, from a ``train_vada.py`` file, the
    prior and its EMA; optimiser states fresh. The stored ``args`` must match the config. Steps:
    a VAE checkpoint's ``global_step`` is a stage-1 step; a VAE + score model one counts stage 2
    only, so jaxdiff's step is ``stage1_steps`` + it."""
    from flax import nnx

    from jaxdiff.io import import_lsgm
    from jaxdiff.nets.functional import ShapeOnlyRngs
    from jaxdiff.nets.nvae_cells import split_batch_stats

    method = build.build_method(config)
    vae = nnx.eval_shape(lambda: method._make_vae(ShapeOnlyRngs()))
    has_score = "dae_state_dict" in import_lsgm.read_lsgm(ckpt)
    score = nnx.eval_shape(lambda: method._make_net(ShapeOnlyRngs())) if has_score else None
    plain = lambda c: c.to_dict() if hasattr(c, "to_dict") else dict(c)  # noqa: E731
    lsgm = config.lsgm
    expected = import_lsgm.expected_args(
        plain(lsgm.vae), plain(lsgm.score) if has_score else {}, plain(config.process), plain(lsgm)
    )
    imp = import_lsgm.import_lsgm(ckpt, vae, score, expected)
    as_jax = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
    init = lambda: method.init(jax.random.key(config.seed), {})  # noqa: E731
    state = jax.eval_shape(init)  # the structure; computed only for other optimiser state
    if set(state.opt_state) - {*method.groups, "batch_stats"}:  # e.g. spectral-norm vectors
        state = init()
    vae_params, stats = split_batch_stats(imp.vae)
    params = {**state.params, "vae": as_jax(vae_params)}
    ema = dict(state.ema)
    if imp.prior is not None:
        params["prior"], ema["prior"] = as_jax(imp.prior), as_jax(imp.prior_ema)
    elif isinstance(jax.tree.leaves(state.params["prior"])[0], jax.ShapeDtypeStruct):
        fresh = method.init_prior(jax.random.key(config.seed))  # a VAE-only checkpoint
        params["prior"], ema["prior"] = fresh, jax.tree.map(jnp.copy, fresh)
    opt = dict(state.opt_state)
    opt.update({g: method.optimizers[g].init(params[g]) for g in method.groups})
    if "batch_stats" in opt:
        opt["batch_stats"] = {"vae": as_jax(stats)}
    if has_score and lsgm.get("drop_inactive_var", False):  # not in the file: from the data
        logit = imp.prior["mixing_logit"]
        opt["is_active"] = _lsgm_active_from_data(
            config, method, vae_params, stats if method.bn_stats else None, logit
        )
    step = imp.step + (int(lsgm.stage1_steps) if has_score else 0)
    state = state.replace(step=jnp.asarray(step, jnp.int32), params=params, ema=ema,
                          opt_state=opt)  # fmt: skip
    return state, step


def _lsgm_active_from_data(
    config: ml_collections.ConfigDict, method, vae_params: dict, stats: dict | None,
    mixing_logit: np.ndarray | None = None,
) -> jax.Array:  # fmt: skip
    """The active-channel mask [c] of an imported stage-2 LSGM model with
    ``drop_inactive_var``, measured as LSGM does on the config's training data
    (``import_lsgm.infer_active_variables``): ``min(1001, one epoch)`` batches of the stage-2
    batch size (``lsgm.batch_size_stage2``, else ``training.batch_size``: the official batch per
    GPU times the GPUs), preprocessed as for training, the key ``config.seed``. When the stored
    ``mixing_logit`` marks channels (-15) that the data does not, or the reverse (e.g. a VAE
    trained on in stage 2), that is said on stderr; the data's mask is kept."""
    from jaxdiff.io import import_lsgm
    from jaxdiff.methods.lsgm_vae_io import channel_kl

    data = build.build_data(config)
    bs = int(config.lsgm.get("batch_size_stage2", 0) or config.training.batch_size)
    n = min(import_lsgm.MAX_ACTIVE_BATCHES, max(1, getattr(data, "num_examples", bs) // bs))

    @jax.jit
    def kl_of(vp, st, x, key):
        enc = method.vae(vp, st, train=False).encode(x, key)
        return channel_kl(enc, method.n_top, method.num_nf)

    vp = jax.tree.map(jnp.asarray, vae_params)
    st = None if stats is None else jax.tree.map(jnp.asarray, stats)
    batches = (method.preprocess(jnp.asarray(data.batch(i, bs)["x"])) for i in range(n))
    mask, _ = import_lsgm.infer_active_variables(
        lambda x, k: kl_of(vp, st, x, k), batches, jax.random.key(config.seed)
    )
    if mixing_logit is not None:
        marked = np.asarray(mixing_logit) <= import_lsgm.STORED_INACTIVE_LOGIT + 0.5
        inactive = np.asarray(mask) == 0
        if marked.any() and not np.array_equal(marked, inactive):
            print(
                f"drop_inactive_var: the data ({n} batches of {bs}) marks channels "
                f"{np.flatnonzero(inactive).tolist()} inactive, the checkpoint's mixing logits "
                f"(-15) {np.flatnonzero(marked).tolist()}; using the data's",
                file=sys.stderr,
            )
    return mask


def restore(
    workdir: str, step: int | None = None, *, best: bool = False, **sampling: Any
) -> Restored:
    """(config, method, state, data) of the run in ``workdir`` at checkpoint ``step`` (latest),
    or its best checkpoint (``best``: lowest in-training FID); ``sampling`` overrides the stored
    sampling options (``sampler``, ``steps``, ...)."""
    if not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir!r} does not exist")
    config = load_config(workdir)
    data = build.build_data(config)
    method = build.build_method(config, tuple(data.shape), **sampling)
    if best:
        record = best_record(workdir)
        if record is None:
            raise WorkdirError(f"{workdir!r} has no best checkpoint (set training.eval_every)")
        ckpt = Checkpointer(os.path.join(workdir, "best"), keep=1, use_async=False)
        try:
            target = loop.abstract_state(
                method, data, config.training.batch_size, parallel.make_mesh()
            )
            state, _ = ckpt.restore(target, record["step"])
        finally:
            ckpt.close()
    else:
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
    ev = build.build_eval_settings(run.config)
    if ev.split and ev.test_examples:
        res.update(heldout_likelihood(run, ev.test_examples, seed))
    if ev.fid_num and workdir is not None:
        res.update(sample_quality(run, ev.fid_num, reference_stats(run.config, workdir), seed))
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


def reference_stats(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The FID statistics file of the run: ``eval.fid_stats``, or ``workdir/fid_stats.npz``
    made once from the training data (all images, up to 50,000)."""
    given = str(config.get("eval", {}).get("fid_stats", ""))
    if given:
        if not os.path.exists(given):
            raise FileNotFoundError(f"eval.fid_stats={given!r} does not exist")
        return given
    path = os.path.join(workdir, "fid_stats.npz")
    if not os.path.exists(path):
        tmp = os.path.join(workdir, "fid_stats.tmp.npz")
        fid_stats(config, tmp, num=50_000)
        os.replace(tmp, path)
    return path


def sample_quality(
    run: Restored,
    num: int,
    stats: str,
    seed: int = 0,
    batch_size: int | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """FID (and KID, precision / recall, density / coverage, IS where available) of ``num``
    samples of the run against the statistics file ``stats``, with the protocol record.

    The samples go batch by batch to the Inception features (each process its own share), so
    only one batch of images is ever held."""
    return _quality(run.method, run.state, run.data, num, stats, seed, batch_size, weights)


def _quality(method, state, data, num, stats, seed=0, batch_size=None, weights=None):
    from jax.experimental import multihost_utils

    from jaxdiff.eval import inception, quality

    _check_images(data)
    ref = quality.load_stats(stats)
    model = inception.load_inception(weights)
    info: dict[str, Any] = {}
    bs = batch_size or getattr(method, "sample_batch", None) or min(num, 500)
    chunks = sampling_batches(
        method.sample_fn, method.sampling_params(state), jax.random.key(seed), num, bs,
        local=True, info=info,
    )  # fmt: skip
    fake = quality.features(model, (b for c in chunks for b in quality.batched(c, 100)))
    if jax.process_count() > 1:  # every process its share; the metrics see all of them
        fake = {k: np.asarray(multihost_utils.process_allgather(v)).reshape(-1, v.shape[-1])
                for k, v in fake.items()}  # fmt: skip
    spec = getattr(method, "sampling", None)  # DDGAN samples along its own chain
    sampler = "the method's own chain" if spec is None else {
        "name": repr(spec.sampler), "steps": spec.steps, "grid": spec.grid, "t_min": spec.t_min,
    }  # fmt: skip
    res: dict[str, Any] = quality.quality_metrics(fake, ref)
    res["protocol"] = {
        "num_samples": int(num),
        "seed": seed,
        "nfe": info["nfe"],
        "sampling_seconds": info["seconds"],
        "sample_batch": bs,
        "checkpoint_step": None if state is None else int(jax.device_get(state.step)),
        "ema": bool(getattr(state, "ema", None)),
        "sampler": sampler,
        "weights_sha256": model.sha256,
        "reference": ref["record"] or stats,
        "reference_sha256": _sha256(stats),
    }
    return res


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Bits/dim on the held-out split


def heldout_likelihood(
    run: Restored, num: int | None = None, seed: int = 0, batch_size: int = 64
) -> dict[str, Any]:
    """Negative log-likelihood of ``num`` held-out images (``eval.split``): ``test_bpd`` and
    ``test_nll`` (nats per image), averaged over the images.

    8-bit images are dequantised uniformly, ``x = 2 (k + u) / 256 - 1`` (score_sde's protocol,
    with its +7 bits/dim offset); models with a discrete decoder (``method.discrete_data``,
    LSGM) see the 8-bit values themselves, binarised data a fixed binarisation. Batch ``i``
    uses ``fold_in(key(seed), i)`` for its dequantisation noise and Hutchinson probes.
    """
    from jaxdiff.solvers.likelihood import dequantize

    held_out = build.build_eval_data(run.config)
    if held_out is None:
        raise build.ConfigError("heldout_likelihood needs eval.split (the held-out images)")
    if not hasattr(run.method, "nll"):
        return {}
    n = min(int(num or held_out.num_examples), held_out.num_examples)
    binarized = bool(run.config.data.get("binarize", False))
    discrete = binarized or bool(getattr(run.method, "discrete_data", False))
    key = jax.random.key(seed)
    sums: dict[str, float] = {}
    nfe = 0
    for i, start in enumerate(range(0, n, batch_size)):
        x = held_out.images(start, min(batch_size, n - start))
        k_deq, k_nll = jax.random.split(jax.random.fold_in(key, i))
        k = np.rint((x + 1) * 127.5)  # 8-bit values, as a PNG stores the (resized) images
        if binarized:  # a fixed binarisation of the grey levels
            u = np.random.default_rng([seed, i]).random(x.shape, dtype=np.float32)
            x = np.where(u < (x + 1) / 2, 1.0, -1.0).astype(np.float32)
        elif discrete:
            x = (k / 127.5 - 1).astype(np.float32)
        else:
            x = dequantize(k_deq, jnp.asarray(k, jnp.uint8))
        out = run.method.nll(run.state, k_nll, jnp.asarray(x))
        for k, v in out.items():
            if k == "nfe":
                nfe = max(nfe, int(v))
            else:
                sums[k] = sums.get(k, 0.0) + float(v) * len(x)
    res = {f"test_{k}": v / n for k, v in sums.items()}
    split = str(run.config.eval.split)
    return {**res, "test_nfe": nfe, "test_examples": n, "test_split": split}
