"""LSGM checkpoints (NVlabs/LSGM) into jaxdiff: the NVAE, the latent NCSN++ and their arguments.

``train_vae.py`` saves ``{'vae_state_dict', 'args', 'epoch', 'global_step', optimisers...}``;
``train_vada.py`` adds ``'dae_state_dict'`` (the latent score model, with its mixing logit) and,
in ``checkpoint.pt``, the score model's EMA inside ``'dae_optimizer'`` (``util/ema.py``: an
``'ema'`` tensor in the optimizer state of each parameter, in ``dae.parameters()`` order);
``checkpoint_fid.pt`` / ``checkpoint_nll.pt`` store the EMA weights as ``dae_state_dict``
(``evaluate_vada.py`` swaps only for ``checkpoint.pt``). ``args`` is the argparse namespace of
the run (read as :class:`jaxdiff.io.torch_zip.Namespace`).

Facts about the layouts (module order of ``enc_tower`` / ``dec_tower``, the combiner cells, the
op names inside ``Cell``, the aliased ``weight_normalized`` parameter of the unnormalised convs,
``SyncBatchNorm``'s ``.bn`` wrapper inside ``InvertedResidual``, the IAF cells' unmasked
weights) come from LSGM's ``nvae.py``, ``layers/cells.py``, ``layers/neural_operations.py`` and
``layers/neural_ar_operations.py``; the score model is score_sde's
``all_modules`` walk (``importers.ncsnpp_map``) without the Fourier layer (LSGM's time embedding
``temb_fun`` is outside ``all_modules``: the positional one has no tensors, the Fourier one its
frequencies ``temb_fun.w``, from ``util/utils.py: RandomFourierEmbedding``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff.io.importers import (
    CheckpointMismatch,
    Entry,
    apply_map,
    ema_from_optimizer,
    ncsnpp_map,
    strip_prefix,
)
from jaxdiff.io.torch_zip import Namespace, load
from jaxdiff.nets.ncsnpp import NCSNpp
from jaxdiff.nets.nvae_cells import BNSwishConv, Cell, FactorizedReduce, InvertedResidual, WNConv
from jaxdiff.nets.nvae_flows import ARConv, PairedCellAR
from jaxdiff.nets.vae import NVAE

# Buffers with no jaxdiff counterpart: the BN step counter (it only sets the momentum when that
# is None; NVAE's is 0.05) and the alias of an unnormalised conv's weight.
LSGM_IGNORED_SUFFIXES = (".num_batches_tracked", ".weight_normalized")


# ----------------------------------------------------------------------------------------------
# The NVAE (nvae.py) onto jaxdiff.nets.vae.NVAE.


def _wnconv(key: str, path: tuple, conv: WNConv) -> list[Entry]:
    out = [Entry(f"{key}.weight", (*path, "kernel"), "conv")]
    if conv.bias is not None:
        out.append(Entry(f"{key}.bias", (*path, "bias")))
    if conv.log_weight_norm is not None:
        out.append(Entry(f"{key}.log_weight_norm", (*path, "log_weight_norm"), "flat"))
    return out


def _bn(key: str, path: tuple, bn: Any) -> list[Entry]:
    """BatchNorm2d / SyncBatchNormSwish: affine, and the running averages when jaxdiff's
    BatchNorm keeps them (``running_stats``)."""
    out = [Entry(f"{key}.weight", (*path, "scale")), Entry(f"{key}.bias", (*path, "bias"))]
    if getattr(bn, "running_stats", False):
        out += [Entry(f"{key}.{n}", (*path, n)) for n in ("running_mean", "running_var")]
    return out


def _bn_swish_conv(key: str, path: tuple, op: BNSwishConv) -> list[Entry]:
    return _bn(f"{key}.bn_act", (*path, "norm"), op.norm) + _wnconv(
        f"{key}.conv_0", (*path, "conv"), op.conv
    )


def _inverted_residual(key: str, path: tuple, op: InvertedResidual) -> list[Entry]:
    """``InvertedResidual.conv``: [UpsamplingNearest2d], BN (``SyncBatchNorm`` wrapper: ``.bn``),
    ConvBNSwish (expand), ConvBNSwish (depthwise), Conv2D (project), BN."""
    o = 1 if op.up else 0
    k = f"{key}.conv"
    return (
        _bn(f"{k}.{o}.bn", (*path, "norm_in"), op.norm_in)
        + _wnconv(f"{k}.{o + 1}.conv.0", (*path, "conv_expand"), op.conv_expand)
        + _bn(f"{k}.{o + 1}.conv.1", (*path, "norm_expand"), op.norm_expand)
        + _wnconv(f"{k}.{o + 2}.conv.0", (*path, "conv_dw"), op.conv_dw)
        + _bn(f"{k}.{o + 2}.conv.1", (*path, "norm_dw"), op.norm_dw)
        + _wnconv(f"{k}.{o + 3}", (*path, "conv_project"), op.conv_project)
        + _bn(f"{k}.{o + 4}.bn", (*path, "norm_out"), op.norm_out)
    )


def _arconv(key: str, path: tuple, conv: ARConv) -> list[Entry]:
    """LSGM's ``ARConv2d``: the official weight is stored unmasked and masked when applied;
    jaxdiff's kernel is stored masked (``nvae_flows``), so the mask is applied on import."""
    out = [
        Entry(f"{key}.weight", (*path, "kernel"), "conv", mask=conv.mask()),
        Entry(f"{key}.log_weight_norm", (*path, "log_weight_norm"), "flat"),
    ]
    if conv.bias is not None:
        out.append(Entry(f"{key}.bias", (*path, "bias")))
    return out


def _iaf(key: str, path: tuple, pair: PairedCellAR) -> list[Entry]:
    """``PairedCellAR``: ``cell1`` / ``cell2``, each ``conv.convz`` (masked 3x3 expand, ELU,
    masked depthwise 5x5) and ``mu.conv_0`` (masked 1x1)."""
    out: list[Entry] = []
    for name in ("cell1", "cell2"):
        cell, k, p = getattr(pair, name), f"{key}.{name}", (*path, name)
        out += _arconv(f"{k}.conv.convz.0", (*p, "conv", "conv_expand"), cell.conv.conv_expand)
        out += _arconv(f"{k}.conv.convz.2", (*p, "conv", "conv_dw"), cell.conv.conv_dw)
        out += _arconv(f"{k}.mu.conv_0", (*p, "mu", "conv_0"), cell.mu.conv_0)
    return out


def _cell(key: str, path: tuple, cell: Cell) -> list[Entry]:
    """layers/cells.py ``Cell``: skip (FactorizedReduce ``conv_1..4`` / up: ``Sequential(UpSample,
    Conv2D)``), ``_ops``, ``se.se`` (Linear, ReLU, Linear, Sigmoid)."""
    out: list[Entry] = []
    if isinstance(cell.skip, FactorizedReduce):
        for i, conv in enumerate(cell.skip.convs):
            out += _wnconv(f"{key}.skip.conv_{i + 1}", (*path, "skip", "convs", i), conv)
    elif cell.skip is not None:
        out += _wnconv(f"{key}.skip.1", (*path, "skip", "conv"), cell.skip.conv)
    for i, op in enumerate(cell.branch):
        p, k = (*path, "branch", i), f"{key}._ops.{i}"
        if isinstance(op, InvertedResidual):
            out += _inverted_residual(k, p, op)
        else:
            out += _bn_swish_conv(k, p, op)
    if cell.se is not None:
        for i, j in ((0, 0), (2, 1)):
            out += [
                Entry(f"{key}.se.se.{i}.weight", (*path, "se", f"kernel{j}"), "linear"),
                Entry(f"{key}.se.se.{i}.bias", (*path, "se", f"bias{j}")),
            ]
    return out


def nvae_map(net: NVAE) -> list[Entry]:
    """The map of LSGM's ``NVAE`` state dict onto ``net``'s parameters (and its BN running
    averages when it keeps them, and its IAF cells), walking the official towers in order."""
    S, G = net.S, net.G
    n = S * G
    out = [Entry("prior_ftr0", ("prior_ftr0",), "chw")]
    out += _wnconv("stem", ("stem",), net.stem)
    for i, c in enumerate(net.pre):
        out += _cell(f"pre_process.{i}", ("pre", i), c)
    # enc_tower: per group its cells, then (but after the very last group) a combiner; a 'down'
    # cell between scales. Encoder group e's combiner serves decoder group n - 1 - e.
    idx = 0
    for s in range(S):
        for g in range(G):
            e = s * G + g
            for c, cell in enumerate(net.enc[e]):
                out += _cell(f"enc_tower.{idx}", ("enc", e, c), cell)
                idx += 1
            if e < n - 1:
                k = n - 2 - e
                out += _wnconv(f"enc_tower.{idx}.conv", ("enc_comb", k), net.enc_comb[k])
                idx += 1
        if s < S - 1:
            out += _cell(f"enc_tower.{idx}", ("enc_down", s), net.enc_down[s])
            idx += 1
    for s, op in enumerate(net.input_skip):
        out += _bn_swish_conv(f"progressive_input_cells.{s}.conv", ("input_skip", s), op)
    for k in range(n):
        out += _wnconv(f"enc_sampler.{k}.1", ("samplers", k), net.samplers[k])
        out += _wnconv(f"eps_conv.{k}", ("eps_convs", k), net.eps_convs[k])
    for i, pair in enumerate(getattr(net, "nf_cells", [])):  # num_nf per group, groups in order
        out += _iaf(f"nf_cells.{i}", ("nf_cells", i), pair)
    # dec_tower: per group the combiner then its cells; an 'up' cell between scales
    idx = 0
    for s in range(S):
        for g in range(G):
            k = s * G + g
            out += _wnconv(f"dec_tower.{idx}.conv", ("dec_comb", k), net.dec_comb[k])
            idx += 1
            for c, cell in enumerate(net.dec[k]):
                out += _cell(f"dec_tower.{idx}", ("dec", k, c), cell)
                idx += 1
        if s < S - 1:
            out += _cell(f"dec_tower.{idx}", ("dec_up", s), net.dec_up[s])
            idx += 1
    for i, c in enumerate(net.post):
        out += _cell(f"post_process.{i}", ("post", i), c)
    return out + _wnconv("image_conditional.1", ("image_conditional",), net.image_conditional)


def lsgm_ignored(state_dict: Mapping[str, Any], vae: NVAE | None = None) -> tuple[str, ...]:
    """The official tensors with no jaxdiff counterpart: ``LSGM_IGNORED_SUFFIXES`` (an alias is
    checked equal to the weight it names), and the BN running averages when ``vae`` keeps none
    (then training-mode BN only; the caller says so)."""
    out = []
    for k in state_dict:
        if k.endswith(".weight_normalized"):
            w = state_dict.get(k[: -len("_normalized")])
            if w is None or np.shape(w) != np.shape(state_dict[k]):
                raise CheckpointMismatch(f"{k} does not alias a weight of its shape")
            if hasattr(w, "dtype") and not np.array_equal(np.asarray(w), state_dict[k]):
                raise CheckpointMismatch(f"{k} differs from the weight it aliases")
            out.append(k)
        elif k.endswith(LSGM_IGNORED_SUFFIXES):
            out.append(k)
    if vae is not None and not _keeps_stats(vae):
        out += [k for k in state_dict if k.endswith((".running_mean", ".running_var"))]
    return tuple(out)


def _keeps_stats(vae: NVAE) -> bool:
    return any(getattr(m, "running_stats", False) for _, m in nnx.iter_graph(vae))


# ----------------------------------------------------------------------------------------------
# The latent score model (score_sde/ncsnpp.py of LSGM).


def lsgm_score_map(net: NCSNpp) -> list[Entry]:
    """LSGM's latent ``NCSNpp``: ``mixing_logit``, score_sde's ``all_modules`` walk and, for
    ``--embedding_type fourier`` (jaxdiff's ``random_fourier``), the frequencies ``temb_fun.w``
    (outside ``all_modules``; the positional embedding has no tensors)."""
    if net.cfg["embedding_type"] == "fourier":
        raise CheckpointMismatch(
            "LSGM's Fourier time embedding is of t, not log t: use embedding_type "
            "'random_fourier' (or 'positional', which every README command uses)"
        )
    entries = ncsnpp_map(net, mixing_logit="mixing_logit")
    if net.cfg["embedding_type"] == "random_fourier":  # temb_fun.w (1, embedding_dim / 2)
        entries.append(Entry("temb_fun.w", ("fourier", "W"), "flat"))
    return entries


# ----------------------------------------------------------------------------------------------
# The stored arguments against the configured networks.

# LSGM's get_channel_multiplier (util/utils.py): the score model's ch_mult per dataset, scales.
_SCORE_CH_MULT = {
    ("cifar10", 3): (1, 1, 1), ("omniglot", 3): (1, 1, 1), ("mnist", 2): (1, 1),
    ("celeba_256", 3): (1, 1, 1), ("celeba_256", 4): (1, 2, 2, 2),
    ("celeba_256", 5): (1, 1, 2, 2, 2),
}  # fmt: skip
_VAE_ARGS = (
    "num_preprocess_blocks", "num_preprocess_cells", "num_postprocess_blocks",
    "num_postprocess_cells", "num_latent_scales", "num_groups_per_scale", "num_latent_per_group",
    "num_cell_per_cond_enc", "num_cell_per_cond_dec",
)  # fmt: skip
_SDE_ARGS = ("sde_type", "beta_start", "beta_end", "sigma2_0", "sigma2_min", "sigma2_max")
# jaxdiff's embedding_type -> LSGM's --embedding_type (score_sde's log-sigma Fourier: none)
_EMBEDDINGS = {"positional": "positional", "random_fourier": "fourier", "fourier": "(log t)"}
_LIKELIHOODS = {"dml": "dml", "bin": "bernoulli", "dl": "logistic", "normal": "gaussian"}


def expected_args(
    vae: Mapping[str, Any], score: Mapping[str, Any], process: Mapping[str, Any], lsgm: Mapping
) -> dict[str, Any]:
    """LSGM argument name -> the value jaxdiff's configured run implies, from plain dicts of the
    VAE / score network keyword arguments, the process and the LSGM settings."""
    out = {
        "num_channels_enc": vae["num_channels"],
        "num_channels_dec": vae["num_channels"],
        "channel_mult": tuple(vae["channel_mult"]),
        "num_nf": vae.get("num_nf", 0),
        "arch_instance": vae["arch_instance"],
        "use_se": vae["use_se"],
        "progressive_input_vae": vae["progressive_input"],
        "decoder_dist": {v: k for k, v in _LIKELIHOODS.items()}.get(lsgm.get("likelihood")),
        "num_x_bits": lsgm.get("num_x_bits", 8),
    }
    for k in _VAE_ARGS:
        out[k] = vae[k]
    if score:
        out.update(
            num_channels_dae=score["nf"],
            num_scales_dae=len(score["ch_mult"]),
            score_ch_mult=tuple(score["ch_mult"]),  # against LSGM's table, not a stored arg
            num_cell_per_scale_dae=score["num_res_blocks"],
            embedding_type=_EMBEDDINGS[score.get("embedding_type", "positional")],
            embedding_scale=float(
                score.get("fourier_scale", 16.0)
                if score.get("embedding_type") == "random_fourier"
                else score.get("time_scale", 1.0)
            ),
            embedding_dim=score.get("embedding_dim") or score["nf"],
            fir=bool(score.get("fir", False)),
            progressive=score.get("progressive", "none"),
            progressive_input=score.get("progressive_input", "none"),
            progressive_combine=score.get("progressive_combine", "sum"),
            dropout=float(score.get("dropout", 0.0)),
        )
        schedule = process.get("schedule", "linear")
        if process.get("name") == "vp" and schedule == "linear":
            out.update(sde_type="vpsde", beta_start=process["beta_min"],
                       beta_end=process["beta_max"], sigma2_0=0.0)  # fmt: skip
        elif process.get("name") == "vp" and schedule == "geometric":
            out.update(sde_type="geometric_sde", sigma2_min=process.get("sigma2_min", 3e-5),
                       sigma2_max=process.get("sigma2_max", 0.999), sigma2_0=0.0)  # fmt: skip
        else:
            out["sde_type"] = f"(jaxdiff process {process.get('name')!r})"
    return out


def args_differences(args: Namespace | Mapping, expected: Mapping[str, Any]) -> list[str]:
    """Every difference ``arg: checkpoint X, config Y`` between the stored arguments and
    ``expected`` (numbers compared to float rounding, lists as tuples); a VAE-only checkpoint
    (no ``num_channels_dae``) is compared on the VAE's arguments. ``expected['score_ch_mult']``
    (the configured score model's ch_mult) is checked against LSGM's fixed table per dataset."""
    a = vars(args) if isinstance(args, Namespace) else dict(args)
    diffs = []
    has_score = "num_channels_dae" in a and a.get("dae_arch", "ncsnpp") == "ncsnpp"
    score_ch_mult = expected.get("score_ch_mult")
    for k, want in expected.items():
        if k == "score_ch_mult":
            continue
        if k not in a:
            if k.endswith("dae") or k in _SDE_ARGS:
                if has_score:
                    diffs.append(f"{k}: not stored, config {want!r}")
                continue
            if k == "num_nf":
                continue
            diffs.append(f"{k}: not stored, config {want!r}")
            continue
        got = a[k]
        if isinstance(got, list):
            got = tuple(got)
        same = (
            np.isclose(float(got), float(want), rtol=1e-6)
            if isinstance(got, (int, float)) and isinstance(want, (int, float))
            and not isinstance(got, bool)
            else got == want
        )  # fmt: skip
        if not same:
            diffs.append(f"{k}: checkpoint {got!r}, config {want!r}")
    if has_score and score_ch_mult is not None:
        table = _SCORE_CH_MULT.get((a.get("dataset"), a.get("num_scales_dae")))
        if table is not None and tuple(score_ch_mult) != table:
            diffs.append(
                f"score ch_mult: checkpoint {table} (LSGM's table), config {score_ch_mult}"
            )
    return diffs


# ----------------------------------------------------------------------------------------------
# Reading a checkpoint.


@dataclasses.dataclass
class ImportedLSGM:
    """jaxdiff trees (float32 numpy): the VAE's parameters and BN running averages (None when
    the configured VAE keeps none), the prior ``{'net', 'mixing_logit'}`` trained and EMA
    (None for a VAE-only checkpoint), the step and the stored arguments."""

    vae: dict
    prior: dict | None
    prior_ema: dict | None
    step: int
    args: dict


def read_lsgm(path: str) -> dict:
    """The checkpoint's dict, checked to be an LSGM one."""
    obj = load(path)
    if not isinstance(obj, Mapping) or "vae_state_dict" not in obj:
        raise CheckpointMismatch(
            f"{path} is not an LSGM checkpoint (a dict with 'vae_state_dict', 'args' and, from "
            "train_vada.py, 'dae_state_dict'); top-level keys: "
            f"{sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__}"
        )
    return dict(obj)


def import_lsgm(
    path: str, vae: NVAE, score: NCSNpp | None, expected: Mapping[str, Any] | None = None
) -> ImportedLSGM:
    """An LSGM checkpoint onto the (abstract) ``vae`` and latent ``score`` networks. The stored
    ``args`` must match ``expected`` (:func:`expected_args`); a ``train_vae.py`` checkpoint
    (no score model) needs ``score`` None, and gives ``prior`` None."""
    obj = read_lsgm(path)
    args = obj.get("args")
    args = vars(args) if isinstance(args, Namespace) else dict(args or {})
    if expected is not None:
        diffs = args_differences(args, expected)
        if diffs:
            raise CheckpointMismatch(
                f"{path} and the config differ ({len(diffs)}):\n  " + "\n  ".join(diffs)
            )
    vsd = {k: np.asarray(v) for k, v in strip_prefix(obj["vae_state_dict"]).items()}
    abstract = nnx.to_pure_dict(nnx.state(vae))
    vae_tree = apply_map(nvae_map(vae), vsd, abstract, ignore=lsgm_ignored(vsd, vae))
    prior = ema = None
    if score is not None:
        if "dae_state_dict" not in obj:
            raise CheckpointMismatch(f"{path} holds no score model (a train_vae.py checkpoint)")
        dsd = {k: np.asarray(v) for k, v in strip_prefix(obj["dae_state_dict"]).items()}
        entries = lsgm_score_map(score)
        s_abs = nnx.to_pure_dict(nnx.state(score))
        net = apply_map(entries, dsd, s_abs)
        prior = {"net": net, "mixing_logit": net["mixing_logit"]}
        ema_sd = ema_from_optimizer(dsd, obj.get("dae_optimizer"))
        if ema_sd is not None:
            e = apply_map(entries, ema_sd, s_abs)
            ema = {"net": e, "mixing_logit": e["mixing_logit"]}
        else:  # checkpoint_fid / _nll: the EMA weights are the state dict
            ema = prior
    return ImportedLSGM(vae_tree, prior, ema, int(obj.get("global_step", 0)), args)


# ----------------------------------------------------------------------------------------------
# drop_inactive_var: the mask is not in the checkpoint. train_vada.py measures it at its first
# epoch (infer_active_variables(train_queue, vae, args, max_iter=1000): batches 0..1000 of one
# pass over the training data, VAE in eval mode, the top scale's per-channel KL averaged over
# the batches, inactive where <= 0.1 nats), sets those channels' mixing logit to -15 and masks
# the score network's input with it; the file keeps the logits, not the mask.

MAX_ACTIVE_BATCHES = 1001  # batches 0..max_iter of train_vae.py's loop, max_iter 1000
STORED_INACTIVE_LOGIT = -15.0  # train_vada.py: dae.mixing_logit[inactive] = -15
INACTIVE_KL = 0.1  # nats, train_vae.py: kl_meter.avg > 0.1 (= methods.lsgm_vae_io.INACTIVE_KL)


def infer_active_variables(
    kl_fn: Callable[[Array, jax.Array], Float[Array, " c"]],
    batches: Iterable[Float[Array, "b h w ch"]],
    key: jax.Array,
) -> tuple[Float[Array, " c"], Float[Array, " c"]]:
    """(mask, KL): LSGM's ``infer_active_variables`` over ``batches``. ``kl_fn(x, key)`` is one
    batch's per-channel KL of the top scale (``lsgm_vae_io.channel_kl``), averaged over the
    batches with equal weights (LSGM's ``AvgrageMeter`` updated with n = 1 per batch); the mask
    is 1.0 where the average exceeds 0.1 nats."""
    total, n = None, 0
    for i, x in enumerate(batches):
        kl = kl_fn(x, jax.random.fold_in(key, i))
        total = kl if total is None else total + kl
        n += 1
    if n == 0:
        raise ValueError("drop_inactive_var: no training batch to measure the channels on")
    kl = total / n
    return (kl > INACTIVE_KL).astype(jnp.float32), kl
