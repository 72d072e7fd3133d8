"""The VAE as LSGM's stage 2 finds it: its parameters and BatchNorm averages read from a
separately trained run's checkpoint (``train_vada.py --vae_checkpoint``), and the top latent's
inactive channels (``--drop_inactive_var``, ``train_vae.py infer_active_variables``)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

INACTIVE_KL = 0.1  # LSGM train_vae.py infer_active_variables: kl_meter.avg > 0.1


def active_channels(
    method: Any, vae_params: dict, stats: dict | None, x: Array, key: jax.Array
) -> Float[Array, " c"]:
    """LSGM's ``infer_active_variables`` on one batch: per channel of the top latent, the
    Monte-Carlo KL log q(z | x) - log N(z; 0, I) (at the pre-flow sample for log q, minus the
    IAF cells' zero log-det) summed over space and averaged over the batch, with the VAE in
    evaluation mode; 1.0 where it exceeds 0.1 nats, else 0.0."""
    enc = method.vae(vae_params, stats, train=False).encode(x, key)
    return (channel_kl(enc, method.n_top, method.num_nf) > INACTIVE_KL).astype(jnp.float32)


def channel_kl(enc: dict, n_top: int, num_nf: int) -> Float[Array, " c"]:
    """The top latent's per-channel KL of :func:`active_channels`, from the encoder's output
    ``enc`` (``NVAE.encode``) over its ``n_top`` top groups, averaged over the batch."""
    zq = enc["z_q"] if num_nf else enc["z"]
    kls = []
    for g in range(n_top):
        z, q, mu, ls = enc["z"][g], zq[g], enc["mu"][g], enc["log_sigma"][g]
        log_q = -0.5 * jnp.square((q - mu) * jnp.exp(-ls)) - ls  # the log 2 pi terms cancel
        kl = log_q + 0.5 * jnp.square(z)
        kls.append(kl.sum(axis=tuple(range(1, kl.ndim - 1))).mean(axis=0))
    return jnp.concatenate(kls)


def load_vae(workdir: str, params: dict, stats: dict) -> tuple[dict, dict]:
    """The VAE parameters and BN averages of the newest checkpoint in ``workdir`` (an LSGM run,
    e.g. stage 1 only), checked name by name and shape by shape against ``params`` / ``stats``
    (this run's VAE). A missing or mismatched checkpoint is a ValueError naming the problem."""
    import orbax.checkpoint as ocp

    from jaxdiff.train.checkpoint import Checkpointer

    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(directory) or not os.listdir(directory):
        raise ValueError(f"lsgm.vae_checkpoint: no checkpoint in {directory}")
    ckpt = Checkpointer(directory, use_async=False)
    step = ckpt.latest_step()
    if step is None:
        raise ValueError(f"lsgm.vae_checkpoint: no checkpoint in {directory}")
    args = ocp.args.Composite(state=ocp.args.StandardRestore())
    raw = ckpt.manager.restore(step, args=args).state
    ckpt.close()
    if "vae" not in raw.get("params", {}):
        raise ValueError(f"lsgm.vae_checkpoint: {directory}/{step} holds no LSGM VAE")
    out = []
    where = f"lsgm.vae_checkpoint {directory}/{step}"
    stored_stats = raw.get("opt_state", {}).get("batch_stats", {}).get("vae", {})
    for name, ours, theirs in (("params", params, raw["params"]["vae"]),
                               ("BN averages", stats, stored_stats)):  # fmt: skip
        flat = {_path(p): v for p, v in jax.tree_util.tree_flatten_with_path(theirs)[0]}
        leaves, tree = jax.tree_util.tree_flatten_with_path(ours)
        missing = [_path(p) for p, _ in leaves if _path(p) not in flat]
        extra = sorted(set(flat) - {_path(p) for p, _ in leaves})
        shapes = [
            f"{_path(p)} {tuple(flat[_path(p)].shape)} != {tuple(v.shape)}"
            for p, v in leaves
            if _path(p) in flat and tuple(flat[_path(p)].shape) != tuple(v.shape)
        ]
        if missing or extra or shapes:
            raise ValueError(
                f"{where}: its VAE {name} do not match this config's: missing {missing[:3]}"
                f" ({len(missing)}), unexpected {extra[:3]} ({len(extra)}), shapes {shapes[:3]}"
            )
        vals = [jnp.asarray(flat[_path(p)], v.dtype) for p, v in leaves]
        out.append(jax.tree_util.tree_unflatten(tree, vals))
    return out[0], out[1]


def _path(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def max_pairwise_sq_distance(z: Float[Array, "n ..."], block: int = 1024) -> float:
    """max_{i, j} ||z_i - z_j||^2 over the flattened rows of ``z`` (float64, blockwise), LSGM's
    ``set_vesde_sigma_max`` (``torch.cdist(...).square().max()``)."""
    import numpy as np

    z = np.asarray(z, np.float64).reshape(len(z), -1)
    sq = np.sum(z * z, axis=1)
    best = 0.0
    for i in range(0, len(z), block):
        a = z[i : i + block]
        d = sq[i : i + block, None] + sq[None, :] - 2.0 * a @ z.T
        best = max(best, float(d.max()))
    return best


def ve_sigma2_max(
    method: Any, vae_params: dict, stats: dict | None, batches: Any, key: jax.Array
) -> float:
    """The VE latent SDE's sigma^2_max from one pass over the data (LSGM ``train_vada.py``: after
    the VAE is loaded, before stage 2): the largest squared distance between two encoded top
    latents, each a sample of q(z | x) with the VAE in evaluation mode. ``batches``: an iterable
    of image batches; the process's ``sigma_max`` is its square root."""

    @jax.jit
    def encode(x, k):
        vae = method.vae(vae_params, stats, train=False)
        return vae.top_latent(vae.encode(x, k)["z"])

    zs = [encode(jnp.asarray(x), jax.random.fold_in(key, i)) for i, x in enumerate(batches)]
    return max_pairwise_sq_distance(jnp.concatenate(zs))
