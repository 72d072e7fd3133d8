"""Objects from configs: the one place where config names become Python objects.

Each ``build_*`` reads a config section (``ml_collections.ConfigDict``) and returns typed library
objects; nothing else in jaxdiff reads a ConfigDict. Names map to constructors through explicit
dicts here and in the module zoo (``jaxdiff.nets.zoo.CONSTRUCTORS``, the one network table), not
through registries filled by import side effects. ``build_run(config)`` is the whole path from a
config to what the trainer needs; ``tests/test_build.py`` checks on every file in ``configs/``
that each key of the config is read here.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdiff.methods.ddgan import DDGANMethod
from jaxdiff.methods.lsgm import LSGMMethod, LSGMSettings
from jaxdiff.methods.sampling import SamplingSpec
from jaxdiff.methods.score import ScoreMethod
from jaxdiff.nets import zoo
from jaxdiff.objectives import decoders
from jaxdiff.processes import VE, VP, CosineSchedule, GeometricSchedule, LinearSchedule, SubVP
from jaxdiff.processes.base import Process
from jaxdiff.processes.cld import CLD
from jaxdiff.processes.discrete import DiscreteChain
from jaxdiff.solvers.samplers import SAMPLERS, check_sampler, make_sampler, sampler_options
from jaxdiff.train.loop import TrainSettings
from jaxdiff.train.protocol import Method
from jaxdiff.train.state import (
    adam_l2,
    adamax_l2,
    cosine_schedule,
    make_optimizer,
    switch_at,
)
from jaxdiff.train.step import StepSettings

#: config sections that define the model: a workdir's run cannot continue under other values
IDENTITY_SECTIONS = ("method", "process", "objective", "model", "data", "ddgan", "lsgm")


def absent_key_defaults() -> dict[str, Any]:
    """``section.key -> value`` that the build uses when an identity section lacks the key (the
    settings dataclasses' defaults): a workdir stored before the key existed ran with it."""
    return {
        f"lsgm.{f.name}": f.default
        for f in dataclasses.fields(LSGMSettings)
        if f.default is not dataclasses.MISSING
    }


class ConfigError(ValueError):
    """A config (or command-line option) names something that does not exist or does not fit."""


def choose(kind: str, name: str, table: dict[str, Any]) -> Any:
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; known: {sorted(table)}")
    return table[name]


def _plain(v: Any) -> Any:
    """ConfigDict turns tuples into lists; constructors want tuples."""
    return tuple(v) if isinstance(v, list | tuple) else v


# ----------------------------------------------------------------------------------------------
# Processes and objectives


def build_schedule(cfg) -> Any:
    table = {
        "linear": lambda: LinearSchedule(cfg.beta_min, cfg.beta_max),
        "cosine": lambda: CosineSchedule(cfg.get("cosine_s", 0.008)),
        "geometric": lambda: GeometricSchedule(
            cfg.get("sigma2_min", 3e-5), cfg.get("sigma2_max", 0.999)
        ),
    }
    return choose("schedule", cfg.schedule, table)()


def build_process(cfg) -> Process:
    """A process from the ``process`` config section."""
    table = {
        "vp": lambda: VP(build_schedule(cfg), cfg.get("end_time", 1.0)),
        "subvp": lambda: SubVP(build_schedule(cfg), cfg.get("end_time", 1.0)),
        "ve": lambda: VE(cfg.get("sigma_min", 0.01), cfg.get("sigma_max", 50.0)),
        "cld": lambda: CLD(
            m_inv=float(cfg.get("m_inv", 4.0)),
            gamma=float(cfg.get("gamma", 0.04)),
            beta0=float(cfg.get("beta0", 4.0)),
            beta1=float(cfg.get("beta1", 0.0)),
            numerical_eps=float(cfg.get("numerical_eps", 0.0)),
        ),
    }
    return choose("process", cfg.name, table)()


def build_objective(cfg, process: Process) -> Any:
    """A score-model objective from the ``objective`` section, for ``process``."""
    from jaxdiff.objectives.cld import HybridScoreMatching
    from jaxdiff.objectives.dsm import DenoisingScoreMatching
    from jaxdiff.objectives.parameterisation import CLDMixed, make_parameterisation

    def dsm():
        kw = dict(
            data_mean=float(cfg.get("data_mean", 0.0)), data_var=float(cfg.get("data_var", 1.0))
        )
        if cfg.parameterisation != "eps_skip":
            if kw != {"data_mean": 0.0, "data_var": 1.0}:
                raise ConfigError(
                    "objective.data_mean / data_var apply to parameterisation 'eps_skip' only"
                )
            kw = {}
        param = make_parameterisation(cfg.parameterisation, **kw)
        return DenoisingScoreMatching(process, param, cfg.weighting, cfg.t_min, cfg.reduce)

    def hsm():
        return HybridScoreMatching(
            process,
            objective=cfg.cld_objective,
            weighting=cfg.weighting,
            parameterisation=CLDMixed(bool(cfg.mixed_score)),
            t_min=float(cfg.t_min),
            reduce=cfg.reduce,
        )

    return choose("objective", cfg.name, {"dsm": dsm, "hsm": hsm})()


# ----------------------------------------------------------------------------------------------
# Optimisers


def build_optimizer(cfg, total_steps: int, lr: float | None = None) -> optax.GradientTransformation:
    """Adam(W) from an ``optim`` section (lr, b1, b2, eps, weight_decay, grad_clip, warmup,
    schedule, min_lr); ``lr`` replaces ``cfg.lr`` (DDGAN's D)."""
    return make_optimizer(
        cfg.lr if lr is None else lr,
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip or None,
        warmup=cfg.warmup,
        schedule=cfg.schedule,
        total_steps=total_steps,
        min_lr=cfg.min_lr,
    )


# ----------------------------------------------------------------------------------------------
# Networks: one table (the zoo's), the data-given arguments added here


def compute_dtype(config) -> Any:
    table = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    return choose("training.precision", config.training.precision, table)


def net_factory(cfg, exclude: tuple[str, ...] = (), **given: Any) -> Callable[..., Any]:
    """``make(rngs) -> nnx.Module`` for the network named by ``cfg.name``.

    ``given`` holds the arguments fixed by the data and the method (shapes, channels, dtype,
    nz): those the constructor takes are passed, the rest dropped. Every other key of ``cfg``
    but ``exclude`` (read by the caller) must be one of the constructor's arguments.
    """
    ctor = choose("network", cfg.name, zoo.CONSTRUCTORS)
    accepted = set(inspect.signature(ctor.__init__).parameters) - {"self", "rngs"}
    keys = [k for k in cfg.keys() if k != "name" and k not in exclude]
    unknown = sorted(k for k in keys if k not in accepted)
    if unknown:
        raise ConfigError(
            f"network {cfg.name!r} has no option(s) {unknown}; its options: {sorted(accepted)}"
        )
    kwargs = {k: _plain(cfg[k]) for k in keys}
    if isinstance(kwargs.get("dtype"), str):
        kwargs["dtype"] = choose("dtype", kwargs["dtype"], zoo.DTYPES)
    kwargs.update({k: v for k, v in given.items() if k in accepted})

    def make(rngs):
        return ctor(**kwargs, rngs=rngs)

    return make


def _shape_args(shape: tuple[int, ...]) -> dict[str, Any]:
    """Arguments that networks of either family take from one example's shape."""
    out: dict[str, Any] = {"dim": int(math.prod(shape))}
    if len(shape) == 3:
        out.update(image_size=shape[0], in_ch=shape[-1], channels=shape[-1], image_shape=shape)
    elif len(shape) > 1:
        out["image_shape"] = shape
    return out


# ----------------------------------------------------------------------------------------------
# Sampling


def build_sampling(cfg, process: Process, **overrides: Any) -> SamplingSpec:
    """The sampler and grid from ``config.sampling`` and the command line's ``overrides``
    (``sampler``, ``steps``, ``grid``, ``t_min``, ``denoise`` and sampler options; None = unset).

    Sampler options in the config that belong to another sampler are defaults for when that one
    is chosen; a command-line option the chosen sampler does not have is an error.
    """
    over = {k: v for k, v in overrides.items() if v is not None}
    name = over.pop("sampler", None) or cfg.sampler
    if name not in SAMPLERS:
        raise ConfigError(f"unknown solver {name!r}; known: {sorted(SAMPLERS)}")
    grid = {k: over.pop(k, cfg[k]) for k in ("steps", "grid", "t_min", "denoise")}
    own = sampler_options(name)
    all_options = {k for n in SAMPLERS for k in sampler_options(n)}
    from_cfg = {}
    for k in cfg.keys():
        if k in ("sampler", "steps", "grid", "t_min", "denoise", "num", "batch_size", "temp"):
            continue
        if k not in all_options:
            raise ConfigError(
                f"sampling.{k} is not an option of any sampler; options: {sorted(all_options)}"
            )
        value = cfg[k]  # a default for whichever sampler has the option
        if k in own:
            from_cfg[k] = value
    bad = sorted(set(over) - set(own))
    if bad:
        raise ConfigError(f"solver {name!r} has no option(s) {bad}; its options: {sorted(own)}")
    sampler = make_sampler(name, **{**from_cfg, **over})
    check_sampler(sampler, process)
    # A grid is a name (uniform, quadratic, logsnr, karras) or a list of times (steps + 1).
    ts = grid["grid"] if isinstance(grid["grid"], str) else tuple(map(float, grid["grid"]))
    return SamplingSpec(
        sampler, int(grid["steps"]), ts, float(grid["t_min"]), bool(grid["denoise"])
    )


# ----------------------------------------------------------------------------------------------
# Methods


def _score(config, shape: tuple[int, ...], sampling: dict[str, Any]) -> ScoreMethod:
    process = build_process(config.process)
    objective = build_objective(config.objective, process)
    dtype = compute_dtype(config)
    model = config.model
    channels = shape[-1]

    def make_net(cin, cout, rngs):
        given = _shape_args(shape)
        given.update(in_ch=cin, out_ch=cout, dtype=dtype)
        given.update(in_dim=given["dim"] * cin // channels, out_dim=given["dim"] * cout // channels)
        return net_factory(model, **given)(rngs)

    net_factory(model)  # unknown names and options fail here, not at the first init
    return ScoreMethod(
        objective,
        make_net,
        build_optimizer(config.optim, config.training.num_steps),
        config.training.ema_decay,
        shape,
        build_sampling(config.sampling, process, **sampling),
        dropout=float(model.get("dropout", 0.0)) > 0,
        likelihood={"divergence": config.eval.divergence} if config.eval.likelihood else None,
        eval_samples=config.eval.num_samples,
        eval_examples=config.eval.likelihood_examples,
        sample_batch=config.sampling.get("batch_size", 0) or None,
    )


def _ddgan(config, shape: tuple[int, ...], sampling: dict[str, Any]) -> DDGANMethod:
    given = {k: v for k, v in sampling.items() if v is not None}
    if given:
        raise ConfigError(
            f"DDGAN samples with its own T-step chain (NFE = ddgan.num_timesteps); the "
            f"sampling option(s) {sorted(given)} do not apply"
        )
    dd, opt = config.ddgan, config.optim
    dtype = compute_dtype(config)
    chain = DiscreteChain.vp(
        dd.num_timesteps, dd.get("beta_min", 0.1), dd.get("beta_max", 20.0), dd.get("eps", 1e-3)
    )
    scale = float(dd.get("data_scale", 1.0))
    g_given = {**_shape_args(shape), "nz": dd.nz, "dtype": dtype}
    if config.model.get("skip_data_var", None):  # toy G's linear skip, in chain units
        var = config.model.skip_data_var * scale**2
        g_given["skip_coefs"] = tuple(float(c) for c in chain.linear_x0_coefs(var))
    steps = config.training.num_steps
    return DDGANMethod(
        chain,
        net_factory(config.model, exclude=("skip_data_var",), **g_given),
        net_factory(dd.disc, **_shape_args(shape), dtype=dtype),
        build_optimizer(opt, steps),
        build_optimizer(opt, steps, lr=opt.lr_d),
        config.training.ema_decay,
        shape,
        dd.nz,
        dd.r1_gamma,
        dd.get("lazy_reg", 0) or None,
        sample_batch=config.sampling.get("batch_size", 0) or None,
        eval_samples=config.eval.num_samples,
        data_scale=scale,
    )


def _lsgm_optimizers(config, s1: int, s2: int):
    """LSGM's two optimisers: the VAE's lr follows stage 1 then stage 2; the prior's starts at
    stage 2 with a linear warm-up."""
    v, p = config.optim.vae, config.optim.prior
    s2_len = max(s2 - s1, 1)
    vae_lr = optax.join_schedules(
        [
            cosine_schedule(v.lr_stage1, v.min_lr_stage1, max(s1, 1), v.warmup_stage1),
            cosine_schedule(v.lr, v.min_lr, s2_len, v.get("warmup", 0)),
        ],
        [s1],
    )
    prior_lr = optax.join_schedules(
        [
            optax.linear_schedule(p.lr / max(p.warmup, 1), p.lr, max(p.warmup, 1)),
            optax.constant_schedule(p.lr),
        ],
        [max(p.warmup, 1)],
    )
    tx_vae = adam_l2(vae_lr, v.eps, v.weight_decay, v.get("grad_clip", 0.0))
    stage1_opt = v.get("optimizer_stage1", "adam")  # LSGM's train_vae.py: adamax
    if stage1_opt not in ("adam", "adamax"):
        raise ValueError(f"optim.vae.optimizer_stage1 is 'adam' or 'adamax', got {stage1_opt!r}")
    if stage1_opt == "adamax" and s1 > 0:
        tx_vae = switch_at(s1, adamax_l2(vae_lr, v.eps, v.weight_decay, v.get("grad_clip", 0.0)),
                           tx_vae)  # fmt: skip
    return tx_vae, adam_l2(prior_lr, p.eps, p.weight_decay, p.get("grad_clip", 0.0))


def _lsgm(config, shape: tuple[int, ...], sampling: dict[str, Any]) -> LSGMMethod:
    from jaxdiff.objectives.lsgm import LSGMObjective

    c = config.lsgm
    fields = {f.name for f in dataclasses.fields(LSGMSettings)}
    settings = LSGMSettings(**{k: c[k] for k in fields if k in c})
    process = build_process(config.process)
    objective = LSGMObjective(process, c.q_sampling, c.p_weighting, c.p_sampling, float(c.t_min))
    dtype = compute_dtype(config)
    out_ch = decoders.out_channels(settings.likelihood, shape[-1], settings.num_mix)
    vae_given = {**_shape_args(shape), "shape": shape, "out_ch": out_ch, "dtype": dtype}
    vae_given["bn_stats"] = True  # NVAE: BN running averages, as LSGM's (methods/lsgm.py)
    make_vae = net_factory(c.vae, **vae_given)

    def make_score(top: tuple[int, ...]):  # the method passes the top latent's shape
        given = {**_shape_args(top), "out_ch": top[-1], "dtype": dtype}
        given.update(dim=top[-1], centered=True)
        return net_factory(c.score, **given)

    s1 = int(c.stage1_steps)
    tx_vae, tx_prior = _lsgm_optimizers(config, s1, s1 + int(c.stage2_steps))
    return LSGMMethod(
        settings,
        process,
        objective,
        make_vae,
        make_score,
        tx_vae,
        tx_prior,
        config.training.ema_decay,
        shape,
        build_sampling(config.sampling, process, **sampling),
        temp=float(config.sampling.get("temp", 1.0)),
        dropout=float(c.score.get("dropout", 0.0)) > 0,
        eval_samples=config.eval.num_samples,
        eval_examples=config.eval.likelihood_examples,
        sample_batch=config.sampling.get("batch_size", 0) or None,
        eval_likelihood=bool(config.eval.likelihood),
        divergence=None if config.eval.divergence == "auto" else config.eval.divergence,
    )


METHODS: dict[str, Callable[..., Method]] = {"score": _score, "ddgan": _ddgan, "lsgm": _lsgm}


def build_method(config, data_shape: tuple[int, ...] | None = None, **sampling: Any) -> Method:
    """The trainer hooks of ``config.method`` for data of one-example shape ``data_shape``
    (default: read from the configured data). ``sampling`` overrides ``config.sampling``
    (``sampler``, ``steps``, ``grid``, ``t_min``, ``denoise``, sampler options)."""
    build = choose("method", config.method, METHODS)
    shape = tuple(data_shape) if data_shape is not None else tuple(build_data(config).shape)
    return build(config, shape, sampling)


# ----------------------------------------------------------------------------------------------
# Data

_PATH_DATASETS = ("npz", "folder")
_TFDS_DATASETS = ("cifar10", "mnist", "celeba_hq_256", "lsun_church", "lsun_bedroom")


def build_data(config, seed: int | None = None):
    """The training data object (``batch(step, batch_size, process_index=, process_count=)``).

    ``data.kind``: ``toy`` (a built-in 2-D set or ``mixtureD``), ``points`` (the user's
    ``(N, d)`` float array in the ``.npz`` at ``data.data_dir``) or ``image``. Batches are pure
    functions of (seed, step), which is what makes resumption exact.
    """
    from jaxdiff.data.images import build_image_data
    from jaxdiff.data.toy import PointData, ToyData, random_mixture

    d = config.data
    seed = config.seed if seed is None else seed
    data_dir = d.get("data_dir", "")
    if data_dir and d.kind == "image" and d.name not in _PATH_DATASETS + _TFDS_DATASETS:
        raise ConfigError(f"data.data_dir is not read for the built-in data set {d.name!r}")
    if d.kind in ("toy", "points"):
        for key, default in (("image_size", 0), ("flip", False)):
            if d.get(key, default) != default:
                raise ConfigError(f"data.{key} applies to images, not data.kind={d.kind!r}")
    if d.kind == "toy":
        if d.get("data_dir", ""):
            raise ConfigError("data.data_dir is not read for toy data; use data.kind='points'")
        if d.name.startswith("mixture") and d.name[len("mixture") :].isdigit():
            dim = int(d.name[len("mixture") :])
            return ToyData(random_mixture(jax.random.key(d.get("mixture_seed", 0)), dim=dim), seed)
        return ToyData(d.name, seed)
    if d.kind == "points":
        if not d.data_dir:
            raise ConfigError("data.kind='points' needs data.data_dir (the .npz file's path)")
        return PointData(d.data_dir, seed)
    if d.kind != "image":
        raise ConfigError(f"unknown data.kind {d.kind!r}; use 'toy', 'points' or 'image'")
    kwargs: dict[str, Any] = {"seed": seed, "flip": d.flip}
    if d.image_size:
        kwargs["resolution"] = d.image_size
    if d.get("binarize", False):
        kwargs["binarize"] = True
    if d.get("pad", 0):
        kwargs["pad"] = d.pad
    if d.get("split", ""):
        if d.name in _PATH_DATASETS:
            raise ConfigError(f"data.split is not read for data.name={d.name!r} (a file or folder)")
        kwargs["split"] = d.split  # tfds split syntax ('train[:27000]'); offline: train | test
    if d.name in _PATH_DATASETS:
        if not d.data_dir:
            raise ConfigError(f"data.name={d.name!r} needs data.data_dir (the file or folder path)")
        kwargs["path"] = d.data_dir
    elif d.name in _TFDS_DATASETS and d.data_dir:
        kwargs["data_dir"] = d.data_dir
    return build_image_data(d.name, **kwargs)


# ----------------------------------------------------------------------------------------------
# The whole run


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything a training run needs, built from one config."""

    method: Method
    data: Any
    train: TrainSettings
    num_samples: int
    eval_at_end: bool
    evaluation: EvalSettings


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Evaluation during and after training (``training.eval_every``, ``eval.*``).

    every: steps between in-training evaluations (0: none). fid_num: samples for the FID of
    image runs (0: none). fid_stats: reference statistics file ('' : made from the training
    data on first use, in the workdir). split: held-out images for bits/dim ('' : none).
    test_examples: how many of them.
    """

    every: int = 0
    fid_num: int = 0
    fid_stats: str = ""
    split: str = ""
    test_examples: int = 1000


def build_eval_settings(config) -> EvalSettings:
    e = config.get("eval", ml_collections.ConfigDict())
    settings = EvalSettings(
        every=int(config.training.get("eval_every", 0)),
        fid_num=int(e.get("fid_num", 0)),
        fid_stats=str(e.get("fid_stats", "")),
        split=str(e.get("split", "")),
        test_examples=int(e.get("likelihood_examples", 1000)),
    )
    if settings.every and settings.every % config.training.n_jitted_steps:
        raise ConfigError(
            f"training.eval_every={settings.every} must be a multiple of "
            f"training.n_jitted_steps={config.training.n_jitted_steps}"
        )
    if settings.every < 0 or settings.fid_num < 0 or settings.test_examples < 0:
        raise ConfigError(
            "training.eval_every, eval.fid_num, eval.likelihood_examples must be >= 0"
        )
    return settings


def build_eval_data(config):
    """The held-out images of ``eval.split`` (bits/dim on the test split), or None.

    tfds sets take a split name (``test``, ``train[27000:]``); the offline sets their fixed
    ``test`` part; ``npz`` / ``folder`` a path to the held-out file or folder. A held-out split
    that the training data contain is refused.
    """
    split = str(config.get("eval", {}).get("split", ""))
    if not split:
        return None
    d = config.data
    if d.kind != "image":
        raise ConfigError(f"eval.split applies to image data, not data.kind={d.kind!r}")
    train_split = d.get("split", "") or ("train" if d.name in _TFDS_DATASETS else "all")
    if d.name in _PATH_DATASETS:
        if os.path.abspath(split) == os.path.abspath(d.data_dir):
            raise ConfigError(f"eval.split={split!r} is the training data (data.data_dir)")
    elif split == train_split or train_split == "all":
        raise ConfigError(
            f"eval.split={split!r} is not held out: the training data are data.split="
            f"{train_split!r} (use data.split='train' with eval.split='test')"
        )
    held_out = ml_collections.ConfigDict(config.to_dict())
    held_out.data.flip = False
    if d.name in _PATH_DATASETS:
        held_out.data.data_dir = split
    else:
        held_out.data.split = split
    return build_data(held_out)


def build_train_settings(config) -> TrainSettings:
    t = config.training
    return TrainSettings(
        batch_size=t.batch_size,
        num_steps=t.num_steps,
        n_jitted_steps=t.n_jitted_steps,
        log_every=t.log_every,
        ckpt_every=t.ckpt_every,
        keep=t.keep,
        keep_every=t.keep_every,
        snapshot_every=t.snapshot_every,
        seed=config.seed,
        step=StepSettings(t.grad_accum, bool(t.ema_warmup), t.loop),
    )


def build_run(config, data_shape: tuple[int, ...] | None = None, **sampling: Any) -> Run:
    """Method, data and trainer settings of ``config`` (every key of it is read here)."""
    data = build_data(config)
    shape = tuple(data_shape) if data_shape is not None else tuple(data.shape)
    method = build_method(config, shape, **sampling)
    return Run(
        method,
        data,
        build_train_settings(config),
        int(config.sampling.num),
        bool(config.training.eval_at_end),
        build_eval_settings(config),
    )
