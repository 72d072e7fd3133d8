"""Official PyTorch checkpoints into jaxdiff parameters: a name-and-shape map per network family.

A map is a list of :class:`Entry` (official state-dict key -> path in jaxdiff's parameter dict,
with the layout change of the tensor). :func:`apply_map` fills a parameter tree from a state dict
and fails, listing them, on official tensors the map does not use, jaxdiff parameters it does not
fill, and shapes that differ; nothing is guessed from names. Facts about the official layouts
(module order of ``all_modules``, ``NIN`` weights stored ``(in, out)``, ``DataParallel``'s
``module.`` prefix, the EMA's ``shadow_params`` list) come from yang-song/score_sde_pytorch
(``models/ncsnpp.py``, ``models/layerspp.py``, ``models/ema.py``, ``utils.py``), whose layout
nv-tlabs/CLD-SGM keeps, and NVlabs/denoising-diffusion-gan (``ncsnpp_generator_adagn.py``,
``layerspp.py``, ``discriminator.py``, ``train_ddgan.py``). tests/test_import.py checks the maps
against the official networks' outputs and full-size key lists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from flax import nnx

from jaxdiff.io.torch_zip import load
from jaxdiff.nets.discriminators import DDGANDiscriminator
from jaxdiff.nets.layers import (
    AttnBlock,
    Downsample,
    FIRConv,
    ResBlockBigGAN,
    ResBlockDDPM,
    Upsample,
)
from jaxdiff.nets.ncsnpp import NCSNpp


class CheckpointMismatch(ValueError):
    """An official checkpoint that does not fit the configured network or config."""


# Layout changes, official -> jaxdiff (NCHW / (out, in) -> NHWC / (in, out)).
LAYOUTS = {
    "conv": lambda w: np.transpose(w, (2, 3, 1, 0)),  # (O, I, kh, kw) -> (kh, kw, I, O)
    "linear": lambda w: np.transpose(w),  # nn.Linear (O, I) -> (I, O)
    "same": lambda w: w,  # biases, norms, score_sde's NIN W (in, out), Fourier W
    "flat": lambda w: np.reshape(w, -1),  # NVAE's log_weight_norm (O, 1, 1, 1), LSGM's logit
    "chw": lambda w: np.transpose(w, (1, 2, 0)),  # an image-shaped parameter (C, H, W)
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tensor: official ``key`` -> jaxdiff ``path`` with the ``layout`` change (then times
    ``mask``, for weights the official layer masks when it applies them)."""

    key: str
    path: tuple[Any, ...]
    layout: str = "same"
    mask: Any = dataclasses.field(default=None, compare=False)  # multiplies the mapped tensor


# ----------------------------------------------------------------------------------------------
# Per-layer maps (score_sde layerspp names -> jaxdiff layers.py names).


def _conv(key: str, path: tuple) -> list[Entry]:
    return [
        Entry(f"{key}.weight", (*path, "kernel"), "conv"),
        Entry(f"{key}.bias", (*path, "bias")),
    ]


def _linear(key: str, path: tuple) -> list[Entry]:
    return [
        Entry(f"{key}.weight", (*path, "kernel"), "linear"),
        Entry(f"{key}.bias", (*path, "bias")),
    ]


def _nin(key: str, path: tuple) -> list[Entry]:
    return [Entry(f"{key}.W", (*path, "kernel")), Entry(f"{key}.b", (*path, "bias"))]


def _norm(key: str, path: tuple) -> list[Entry]:
    return [Entry(f"{key}.weight", (*path, "scale")), Entry(f"{key}.bias", (*path, "bias"))]


def _resblock(key: str, path: tuple, block: Any) -> list[Entry]:
    """ResnetBlockDDPMpp / ResnetBlockBigGANpp (and DDGAN's ``_Adagn`` variants): GroupNorm_0,
    Conv_0, Dense_0, GroupNorm_1, Conv_1, and the shortcut (BigGAN: 1x1 Conv_2; DDPM: NIN_0, or
    Conv_2 with ``conv_shortcut``)."""
    # DDGAN's AdaptiveGroupNorm: an affine-free GroupNorm and the ``style`` dense (gamma, beta)
    norm = (lambda k, p: _linear(f"{k}.style", (*p, "style"))) if block.adaptive else _norm
    out = norm(f"{key}.GroupNorm_0", (*path, "norm0")) + _conv(f"{key}.Conv_0", (*path, "conv0"))
    if block.temb is not None:
        out += _linear(f"{key}.Dense_0", (*path, "temb"))
    out += norm(f"{key}.GroupNorm_1", (*path, "norm1")) + _conv(f"{key}.Conv_1", (*path, "conv1"))
    if block.shortcut is not None:
        if isinstance(block.shortcut, nnx.Linear):
            out += _nin(f"{key}.NIN_0", (*path, "shortcut"))
        else:
            out += _conv(f"{key}.Conv_2", (*path, "shortcut"))
    return out


def _attn(key: str, path: tuple) -> list[Entry]:
    out = _norm(f"{key}.GroupNorm_0", (*path, "norm"))
    for i, name in enumerate(("q", "k", "v", "out")):
        out += _nin(f"{key}.NIN_{i}", (*path, name))
    return out


def _resample(key: str, path: tuple, module: Upsample | Downsample) -> list[Entry]:
    """layerspp.Upsample / Downsample: ``Conv2d_0`` (FIR resampling conv) or ``Conv_0``."""
    if module.conv is None:
        return []
    name = "Conv2d_0" if isinstance(module.conv, FIRConv) else "Conv_0"
    return _conv(f"{key}.{name}", (*path, "conv"))


# ----------------------------------------------------------------------------------------------
# NCSN++ / DDPM++ (score_sde_pytorch models/ncsnpp.py): one walk of ``all_modules`` in the order
# the official constructor appends them, over jaxdiff's module of the same configuration.


def _ncsnpp_modules(net: NCSNpp) -> Iterator[tuple[tuple, Any, str]]:
    """(jaxdiff path, module, kind) for each entry of the official ``all_modules``, in order."""
    cfg = net.cfg
    if cfg["embedding_type"] == "fourier":  # (LSGM's random_fourier is outside all_modules)
        yield ("fourier",), net.fourier, "fourier"
    if net.temb0 is not None:
        yield ("temb0",), net.temb0, "linear"
        yield ("temb1",), net.temb1, "linear"
    yield ("conv_in",), net.conv_in, "conv"
    i = 0
    for lvl in range(net.num_levels):
        for _ in range(cfg["num_res_blocks"]):
            yield ("down", i), net.down[i], "resblock"
            if net.down_attn[i] is not None:
                yield ("down_attn", i), net.down_attn[i], "attn"
            i += 1
        if lvl != net.num_levels - 1:
            kind = "resblock" if cfg["resblock_type"] == "biggan" else "resample"
            yield ("down_res", lvl), net.down_res[lvl], kind
            if cfg["progressive_input"] == "input_skip":
                yield ("pyr_down", lvl), net.pyr_down[lvl], "combine"
            elif cfg["progressive_input"] == "residual":
                yield ("pyr_down", lvl), net.pyr_down[lvl], "resample"
    yield ("mid0",), net.mid0, "resblock"
    yield ("mid_attn",), net.mid_attn, "attn"
    yield ("mid1",), net.mid1, "resblock"
    i = 0
    for j, lvl in enumerate(reversed(range(net.num_levels))):
        for _ in range(cfg["num_res_blocks"] + 1):
            yield ("up", i), net.up[i], "resblock"
            i += 1
        if net.up_attn[j] is not None:
            yield ("up_attn", j), net.up_attn[j], "attn"
        if cfg["progressive"] != "none":
            if net.pyr_conv[j] is not None:
                yield ("pyr_norm", j), net.pyr_norm[j], "norm"
                yield ("pyr_conv", j), net.pyr_conv[j], "conv"
            else:
                yield ("pyr_up", j), net.pyr_up[j], "resample"
        if lvl != 0:
            kind = "resblock" if cfg["resblock_type"] == "biggan" else "resample"
            yield ("up_res", j), net.up_res[j], kind
    if cfg["progressive"] != "output_skip":
        yield ("norm_out",), net.norm_out, "norm"
        yield ("conv_out",), net.conv_out, "conv"


def ncsnpp_map(
    net: NCSNpp, prefix: str = "all_modules", mixing_logit: str | None = None
) -> list[Entry]:
    """The map of score_sde's / CLD-SGM's ``NCSNpp`` state dict (without ``module.``), or of
    DDGAN's z-conditioned generator (``ncsnpp_generator_adagn.py``: the same ``all_modules``
    plus the ``z_transform`` mapping network), onto ``net``'s params. ``mixing_logit``: the
    official key of LSGM's mixing logit (``(1, C, 1, 1)``), when the configured net has one."""
    entries: list[Entry] = []
    if net.mixing_logit is not None:
        if mixing_logit is None:
            raise CheckpointMismatch(
                "the official NCSN++ has no mixing logit; the configured one has"
            )
        entries.append(Entry(mixing_logit, ("mixing_logit",), "flat"))
    if net.mapping is not None:  # Sequential(PixelNorm, dense, act, dense, act, ...)
        for i in range(len(net.mapping.layers)):
            entries += _linear(f"z_transform.{2 * i + 1}", ("mapping", "layers", i))
    for idx, (path, module, kind) in enumerate(_ncsnpp_modules(net)):
        key = f"{prefix}.{idx}"
        if kind == "fourier":
            entries.append(Entry(f"{key}.W", (*path, "W")))
        elif kind == "linear":
            entries += _linear(key, path)
        elif kind == "conv":
            entries += _conv(key, path)
        elif kind == "norm":
            entries += _norm(key, path)
        elif kind == "resblock":
            assert isinstance(module, (ResBlockBigGAN, ResBlockDDPM))
            entries += _resblock(key, path, module)
        elif kind == "attn":
            assert isinstance(module, AttnBlock)
            entries += _attn(key, path)
        elif kind == "combine":
            entries += _conv(f"{key}.Conv_0", (*path, "proj"))
        else:
            entries += _resample(key, path, module)
    return entries


# ----------------------------------------------------------------------------------------------
# DDGAN's discriminators (score_sde/models/discriminator.py: Discriminator_small / _large).


def ddgan_discriminator_map(net: DDGANDiscriminator) -> list[Entry]:
    """The map of DDGAN's ``Discriminator_small`` / ``Discriminator_large`` state dict."""
    entries = _linear("t_embed.main.0", ("t0",)) + _linear("t_embed.main.2", ("t1",))
    entries += _conv("start_conv", ("start",))
    for i in range(len(net.blocks)):
        key, path = f"conv{i + 1}", ("blocks", i)
        entries += _conv(f"{key}.conv1.0", (*path, "conv1"))
        entries += _conv(f"{key}.conv2.0", (*path, "conv2"))
        entries += _linear(f"{key}.dense_t1", (*path, "dense_t"))
        entries.append(Entry(f"{key}.skip.0.weight", (*path, "skip", "kernel"), "conv"))
    return entries + _conv("final_conv", ("final",)) + _linear("end_linear", ("end",))


# ----------------------------------------------------------------------------------------------
# Applying a map.


def _get(tree: Mapping, path: tuple) -> Any:
    for p in path:
        if not isinstance(tree, Mapping) or p not in tree:
            return None
        tree = tree[p]
    return tree


def _paths(tree: Any, prefix: tuple = ()) -> Iterator[tuple]:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from _paths(v, (*prefix, k))
    else:
        yield prefix


def _set(tree: dict, path: tuple, value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _mapped_shape(layout: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if layout == "conv":
        return (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else shape
    if layout == "flat":
        return (int(np.prod(shape)),)
    if layout == "chw" and len(shape) == 3:
        return (shape[1], shape[2], shape[0])
    return tuple(reversed(shape)) if layout == "linear" else tuple(shape)


def map_problems(
    entries: list[Entry],
    shapes: Mapping[str, tuple[int, ...]],
    abstract: Mapping,
    ignore: tuple[str, ...] = (),
) -> list[str]:
    """Every way the official tensors ``shapes`` (key -> shape) and the jaxdiff parameter tree
    ``abstract`` (leaves with ``.shape``) fail to correspond through ``entries``: official keys
    the map does not use (but ``ignore``), jaxdiff parameters it does not fill, shapes that
    differ. Empty: the map is complete both ways."""
    problems: list[str] = []
    used = set()
    for e in entries:
        target = _get(abstract, e.path)
        if e.key not in shapes:
            problems.append(f"missing in the checkpoint: {e.key} (for {_dotted(e.path)})")
            continue
        used.add(e.key)
        if target is None or isinstance(target, Mapping):
            problems.append(f"no jaxdiff parameter {_dotted(e.path)} (for {e.key})")
            continue
        got = _mapped_shape(e.layout, tuple(shapes[e.key]))
        if got != tuple(target.shape):
            problems.append(f"shape of {e.key} {got} -> {_dotted(e.path)} {tuple(target.shape)}")
    problems += [
        f"unused checkpoint tensor: {k} {tuple(v)}"
        for k, v in shapes.items()
        if k not in used and k not in ignore
    ]
    filled = {e.path for e in entries}
    problems += [
        f"jaxdiff parameter not in the map: {_dotted(p)}"
        for p in _paths(abstract)
        if p not in filled
    ]
    return problems


def apply_map(
    entries: list[Entry],
    state_dict: Mapping[str, np.ndarray],
    abstract: Mapping,
    ignore: tuple[str, ...] = (),
) -> dict:
    """A parameter tree shaped like ``abstract`` filled from ``state_dict`` through ``entries``,
    float32. Raises :class:`CheckpointMismatch` listing every problem of :func:`map_problems`."""
    shapes = {k: tuple(np.shape(v)) for k, v in state_dict.items()}
    problems = map_problems(entries, shapes, abstract, ignore)
    if problems:
        kinds = {"shape of": "shapes differ", "unused": "checkpoint tensors unused",
                 "not in the map": "parameters unfilled", "missing": "tensors missing"}  # fmt: skip
        counts = ", ".join(f"{sum(k in p for p in problems)} {label}" for k, label in kinds.items())
        raise CheckpointMismatch(
            f"the checkpoint does not fit the configured network ({len(problems)} problems: "
            f"{counts}); the first ones:\n  "
            + "\n  ".join(problems[:12])
            + ("\n  ..." if len(problems) > 12 else "")
        )
    out: dict = {}
    for e in entries:
        value = LAYOUTS[e.layout](np.asarray(state_dict[e.key]))
        if e.mask is not None:
            value = value * e.mask
        _set(out, e.path, np.ascontiguousarray(value, dtype=np.float32))
    return out


# ----------------------------------------------------------------------------------------------
# score_sde_pytorch checkpoints: {'optimizer', 'model', 'ema', 'step'} (utils.save_checkpoint).

SCORE_SDE_BUFFERS = ("sigmas",)  # registered buffer of NCSNpp: the discrete VE noise levels


def strip_prefix(sd: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """State dict without ``torch.nn.DataParallel``'s ``module.`` prefix (if every key has it)."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


@dataclasses.dataclass
class OfficialCheckpoint:
    """What an official file holds, as numpy: the trained and EMA state dicts (same keys),
    the training step and the arguments it stores (empty when it stores none)."""

    model: dict[str, np.ndarray]
    ema: dict[str, np.ndarray] | None
    step: int
    args: dict[str, Any]


def _score_sde_frozen(key: str) -> bool:
    """Buffers and the Fourier frequencies (``requires_grad=False``): not in the EMA's list."""
    return key in SCORE_SDE_BUFFERS or (key.startswith("all_modules.0.") and key.endswith(".W"))


def read_score_sde(path: str, trainable: list[str] | None = None) -> OfficialCheckpoint:
    """Reads a score_sde_pytorch checkpoint. The EMA is a list (``shadow_params``) in the order
    of ``model.parameters()`` with ``requires_grad``: the state-dict keys less the buffers and
    the Fourier frequencies, unless ``trainable`` names them."""
    obj = load(path)
    if not isinstance(obj, Mapping) or "model" not in obj:
        raise CheckpointMismatch(
            f"{path} is not a score_sde_pytorch checkpoint (a dict with 'model', 'ema', 'step'); "
            f"top-level keys: {sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__}"
        )
    model = {k: np.asarray(v) for k, v in strip_prefix(obj["model"]).items()}
    ema = None
    shadow = (obj.get("ema") or {}).get("shadow_params")
    if shadow is not None:
        if trainable is None:
            trainable = [k for k in model if not _score_sde_frozen(k)]
        if len(shadow) != len(trainable):
            raise CheckpointMismatch(
                f"{path}: the EMA holds {len(shadow)} tensors, the model {len(trainable)} trainable"
            )
        ema = dict(model)
        for k, v in zip(trainable, shadow, strict=True):
            if tuple(np.shape(v)) != tuple(model[k].shape):
                raise CheckpointMismatch(f"{path}: EMA tensor of {k} has shape {np.shape(v)}")
            ema[k] = np.asarray(v)
    return OfficialCheckpoint(model, ema, int(obj.get("step", 0)), {})


def check_score_sde_sigmas(net: NCSNpp, sigmas: np.ndarray | None) -> list[str]:
    """Differences between the stored VE noise levels (``sigmas``: geometric from sigma_max to
    sigma_min) and the network's labels ``label_scale * sigma(t)`` at t = 1 and t = 0; for a
    discrete-time model (which divides by ``sigmas[label]``) also their number."""
    if sigmas is None or net.cfg["ve_sigma"] is None:
        return []
    lo, hi = (net.cfg["label_scale"] * s for s in net.cfg["ve_sigma"])
    diffs = []
    n = net.cfg.get("num_scales", 0)
    if n and len(sigmas) != n:
        diffs.append(f"noise levels: checkpoint {len(sigmas)}, config num_scales {n}")
    if not np.isclose(float(sigmas[0]), hi, rtol=1e-5):
        diffs.append(f"sigma_max: checkpoint {float(sigmas[0]):.6g}, config label {hi:.6g}")
    if not np.isclose(float(sigmas[-1]), lo, rtol=1e-5):
        diffs.append(f"sigma_min: checkpoint {float(sigmas[-1]):.6g}, config label {lo:.6g}")
    return diffs


@dataclasses.dataclass
class Imported:
    """jaxdiff parameter trees (float32 numpy) of one network: trained and EMA, and the step."""

    params: dict
    ema: dict
    step: int


def import_score_sde(path: str, net: NCSNpp) -> Imported:
    """score_sde_pytorch's ``checkpoint_*.pth`` (DDPM++ / NCSN++, VP, sub-VP or VE; its ``ddpm``
    models too: ``models/ddpm.py``'s ``all_modules`` is NCSN++'s with DDPM blocks, and
    ``jaxdiff.nets.ddpm.DDPM`` is an ``NCSNpp``) or CLD-SGM's
    (the same layout and module order, without the ``sigmas`` buffer) onto the NCSN++ ``net``
    (an abstract module is enough). The stored VE noise levels must match the network's labels;
    neither file stores other arguments (CLD-SGM keeps its config in a separate text file)."""
    ck = read_score_sde(path)
    abstract = nnx.to_pure_dict(nnx.state(net))
    diffs = check_score_sde_sigmas(net, ck.model.get("sigmas"))
    if diffs:
        raise CheckpointMismatch(f"{path} and the config differ: " + "; ".join(diffs))
    entries = ncsnpp_map(net)
    params = apply_map(entries, ck.model, abstract, ignore=SCORE_SDE_BUFFERS)
    ema = apply_map(entries, ck.ema, abstract, ignore=SCORE_SDE_BUFFERS) if ck.ema else params
    return Imported(params, ema, ck.step)


# ----------------------------------------------------------------------------------------------
# DDGAN: ``netG_{epoch}.pth`` is the generator's state dict (EMA weights swapped in when trained
# with --use_ema), DDP-wrapped; ``content.pth`` adds ``netD_dict`` and the argparse arguments.


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A bare state dict file (``torch.save(net.state_dict())``), ``module.`` stripped."""
    obj = load(path)
    if not isinstance(obj, Mapping) or not all(hasattr(v, "shape") for v in obj.values()):
        raise CheckpointMismatch(f"{path} is not a state dict of tensors")
    return {k: np.asarray(v) for k, v in strip_prefix(obj).items()}


def import_state_dict(path: str, entries: list[Entry], net: nnx.Module) -> dict:
    """Parameters of ``net`` from the bare state dict at ``path`` through ``entries``."""
    return apply_map(entries, read_state_dict(path), nnx.to_pure_dict(nnx.state(net)))


def ema_from_optimizer(
    sd: Mapping[str, np.ndarray], optimizer: Mapping | None
) -> dict[str, np.ndarray] | None:
    """The EMA that LSGM's ``util/ema.py`` (and DDGAN's ``EMA.py``, adapted from it) keeps in its
    optimizer's state: ``state[i]['ema']`` for the i-th entry of the parameter groups, i.e. of
    ``net.parameters()``, the state-dict order of a network without buffers. Parameters the
    optimizer never stepped (no ``'ema'``, e.g. frozen ones) keep their value; None when the
    optimizer holds no EMA."""
    state = (optimizer or {}).get("state") or {}
    if not any(isinstance(v, Mapping) and "ema" in v for v in state.values()):
        return None
    order = [i for group in optimizer.get("param_groups", []) for i in group["params"]]
    if len(order) != len(sd):
        raise CheckpointMismatch(
            f"the optimizer holds {len(order)} parameters, the state dict {len(sd)} tensors"
        )
    ema = dict(sd)
    for key, i in zip(sd, order, strict=True):
        if "ema" in state.get(i, {}):
            v = np.asarray(state[i]["ema"])
            if v.shape != np.shape(sd[key]):
                raise CheckpointMismatch(f"EMA tensor of {key} has shape {v.shape}")
            ema[key] = v
    return ema


@dataclasses.dataclass
class DDGANContent:
    """DDGAN's ``content.pth`` as numpy: generator (trained), its EMA (None without
    ``--use_ema``), discriminator, ``global_step`` and the stored arguments."""

    netG: dict[str, np.ndarray]
    netG_ema: dict[str, np.ndarray] | None
    netD: dict[str, np.ndarray]
    step: int
    args: dict[str, Any]


def read_ddgan_content(path: str) -> DDGANContent | None:
    """Reads train_ddgan.py's resume file ``content.pth`` (``netG_dict``, ``optimizerG`` with the
    EMA, ``netD_dict``, ``args``, ``global_step``); None when ``path`` is a bare state dict
    (``netG_{epoch}.pth``)."""
    obj = load(path)
    if not isinstance(obj, Mapping) or "netG_dict" not in obj:
        return None
    arrays = lambda sd: {k: np.asarray(v) for k, v in strip_prefix(sd).items()}  # noqa: E731
    netG = arrays(obj["netG_dict"])
    args = obj.get("args")
    return DDGANContent(
        netG,
        ema_from_optimizer(netG, obj.get("optimizerG")),
        arrays(obj.get("netD_dict") or {}),
        int(obj.get("global_step", 0)),
        dict(vars(args)) if hasattr(args, "__dict__") else dict(args or {}),
    )
