"""Objects from configs: the one place where config names become Python objects.

Each ``build_*`` reads a config section (``ml_collections.ConfigDict``) and returns typed
library objects; library code never sees a ConfigDict. Names map to constructors through
explicit dicts here, not through registries filled by import side effects.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from jaxdiff.methods.base import Method
from jaxdiff.processes import VE, VP, CosineSchedule, GeometricSchedule, LinearSchedule, SubVP


def _choose(kind: str, name: str, table: dict[str, Any]):
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; known: {sorted(table)}")
    return table[name]


def build_schedule(cfg):
    table = {
        "linear": lambda: LinearSchedule(cfg.beta_min, cfg.beta_max),
        "cosine": lambda: CosineSchedule(cfg.get("cosine_s", 0.008)),
        "geometric": lambda: GeometricSchedule(
            cfg.get("sigma2_min", 3e-5), cfg.get("sigma2_max", 0.999)
        ),
    }
    return _choose("schedule", cfg.schedule, table)()


def _build_cld(cfg):
    from jaxdiff.processes.cld import CLD

    return CLD.from_config(cfg)


def build_process(cfg):
    """A process from the ``process`` config section."""
    table = {
        "vp": lambda: VP(build_schedule(cfg), cfg.get("end_time", 1.0)),
        "subvp": lambda: SubVP(build_schedule(cfg), cfg.get("end_time", 1.0)),
        "ve": lambda: VE(cfg.get("sigma_min", 0.01), cfg.get("sigma_max", 50.0)),
        "cld": lambda: _build_cld(cfg),
    }
    return _choose("process", cfg.name, table)()


def _build_hsm(cfg, process):
    from jaxdiff.objectives.cld import HybridScoreMatching

    return HybridScoreMatching.from_config(cfg, process)


def build_objective(cfg, process):
    """A score-model objective from the ``objective`` section, for ``process``."""
    from jaxdiff.objectives.dsm import DenoisingScoreMatching

    table = {
        "dsm": lambda: DenoisingScoreMatching(
            process,
            cfg.parameterisation,
            cfg.weighting,
            cfg.t_min,
            cfg.reduce,
            cfg.get("data_mean", 0.0),
            cfg.get("data_var", 1.0),
        ),
        "hsm": lambda: _build_hsm(cfg, process),
    }
    return _choose("objective", cfg.name, table)()


def compute_dtype(config) -> Any:
    return _choose(
        "precision",
        config.training.precision,
        {"float32": jnp.float32, "bfloat16": jnp.bfloat16},
    )


def build_net_factory(model_cfg, data_shape: tuple[int, ...], dtype=jnp.float32):
    """``make_net(in_channels, out_channels, rngs) -> nnx.Module`` from the ``model`` section."""
    if model_cfg.name == "mlp":
        from jaxdiff.nets.mlp import MLPScoreNet

        dim = int(math.prod(data_shape))

        def make_mlp(cin, cout, rngs):
            return MLPScoreNet(
                dim,
                hidden=model_cfg.hidden,
                depth=model_cfg.depth,
                embedding=model_cfg.embedding,
                embed_dim=model_cfg.embed_dim,
                in_dim=dim * cin // data_shape[-1],
                out_dim=dim * cout // data_shape[-1],
                input_frequencies=model_cfg.get("input_frequencies", 0),
                input_scale=model_cfg.get("input_scale", 4.0),
                dtype=dtype,
                rngs=rngs,
            )

        return make_mlp
    return _zoo_factory(model_cfg, data_shape, dtype)


def _zoo_factory(model_cfg, data_shape: tuple[int, ...], dtype):
    """Image score networks from the module zoo (``jaxdiff.nets.zoo.CONSTRUCTORS``).

    The config's ``model`` section may carry keys the constructor does not take (the base
    config's MLP keys, or official options recorded for reference such as ``normalization``);
    only the constructor's own keyword arguments are passed. Channels, resolution and dtype
    come from the data and the objective.
    """
    import inspect

    from jaxdiff.nets import zoo

    name = model_cfg.name
    ctor = _choose("network", name, zoo.CONSTRUCTORS)
    # The constructor's own keywords (NNX's metaclass hides them from signature(ctor) itself).
    accepted = set(inspect.signature(ctor.__init__).parameters) - {"self", "rngs"}
    kwargs = {
        k: tuple(v) if isinstance(v, list | tuple) else v
        for k, v in model_cfg.to_dict().items()
        if k in accepted and k not in ("name", "in_ch", "out_ch")
    }
    if "image_size" in accepted and len(data_shape) == 3:
        kwargs["image_size"] = data_shape[0]
    if "dtype" in accepted:
        kwargs["dtype"] = dtype

    def make(cin, cout, rngs):
        return ctor(**kwargs, in_ch=cin, out_ch=cout, rngs=rngs)

    return make


def build_score_method(config) -> Method:
    from jaxdiff.methods.score import ScoreMethod
    from jaxdiff.train.state import optimizer_from_config

    process = build_process(config.process)
    objective = build_objective(config.objective, process)
    shape = example_shape(config)
    tx = optimizer_from_config(config.optim, config.training.num_steps, config.training.grad_accum)
    return ScoreMethod(
        objective,
        build_net_factory(config.model, shape, compute_dtype(config)),
        tx,
        config.training.ema_decay,
        shape,
        sampling=dict(config.sampling),
        dropout=config.model.get("dropout", 0.0) > 0,
        likelihood={"divergence": config.eval.divergence},
    )


def _build_ddgan(config) -> Method:
    from jaxdiff.methods.ddgan import DDGANMethod

    return DDGANMethod.from_config(config)


def _build_lsgm(config) -> Method:
    from jaxdiff.methods.lsgm import LSGMMethod

    return LSGMMethod.from_config(config)


def build_method(config) -> Method:
    """The trainer hooks of ``config.method``."""
    table = {"score": build_score_method, "ddgan": _build_ddgan, "lsgm": _build_lsgm}
    return _choose("method", config.method, table)(config)


# ----------------------------------------------------------------------------------------------
# Data

_PATH_DATASETS = ("npz", "folder")
_TFDS_DATASETS = ("cifar10", "mnist", "celeba_hq_256", "lsun_church")


def build_data(config, seed: int | None = None):
    """The training data object (``batch(step, batch_size, process_index=, process_count=)``).

    Toy sets are infinite seeded streams; image sets are shuffled per epoch from the seed. Both
    give batches as pure functions of (seed, step), which is what makes resumption exact.
    """
    from jaxdiff.data.images import build_image_data
    from jaxdiff.data.toy import ToyData, random_mixture

    d = config.data
    seed = config.seed if seed is None else seed
    if d.kind == "toy":
        if d.name.startswith("mixture") and d.name[len("mixture") :].isdigit():
            dim = int(d.name[len("mixture") :])
            import jax

            return ToyData(random_mixture(jax.random.key(d.get("mixture_seed", 0)), dim=dim), seed)
        return ToyData(d.name, seed)
    if d.kind != "image":
        raise ValueError(f"unknown data.kind {d.kind!r}; use 'toy' or 'image'")
    kwargs: dict[str, Any] = {"seed": seed, "flip": d.flip}
    if d.get("image_size", 0):
        kwargs["resolution"] = d.image_size
    if d.get("binarize", False):
        kwargs["binarize"] = True
    if d.get("pad", 0):
        kwargs["pad"] = d.pad
    if d.name in _PATH_DATASETS:
        if not d.data_dir:
            raise ValueError(f"data.name={d.name!r} needs data.data_dir (the file or folder path)")
        kwargs["path"] = d.data_dir
    elif d.name in _TFDS_DATASETS and d.data_dir:
        kwargs["data_dir"] = d.data_dir
    return build_image_data(d.name, **kwargs)


def example_shape(config) -> tuple[int, ...]:
    """Shape of one example of the configured data (reads one example for image sets)."""
    return tuple(build_data(config).shape)
