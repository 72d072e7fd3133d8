"""LSGM's sampling, likelihood bound, BatchNorm readjustment and evaluation (the hooks of
``methods/lsgm.py`` delegate here; ``method`` is an ``LSGMMethod``).

BatchNorm (NVAE with running averages): the NLL bound runs the VAE in evaluation mode (LSGM's
``vae.eval()``, the README's NLL commands); sampling too unless ``vae_train_mode``
(``evaluate_vada.py --vae_train_mode``, the CelebA-HQ FID commands), in which case each batch of
samples is normalised with its own statistics.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxdiff.objectives import decoders as N
from jaxdiff.objectives import lsgm as L
from jaxdiff.solvers import ancestral
from jaxdiff.solvers.likelihood import log_likelihood
from jaxdiff.train.sampling import draw
from jaxdiff.train.state import TrainState


def sample(
    method: Any, params: dict[str, Any], key: jax.Array, num: int
) -> tuple[Float[Array, "n ..."], Array]:
    """Latent sampler from N(0, I) (``method.sampling``), the Normal groups outside the prior at
    temperature ``method.temp``, then the decoder mean (Sec. 3, App. E); NFE of the prior."""
    k_s, k_r = jax.random.split(key)
    out = method.sampling.run(
        method.process,
        method.score_fn(params["prior"], params.get("is_active")),
        k_s,
        (num, *method.top_shape),
    )
    vae = method.vae(params["vae"], params.get("batch_stats"), train=method.c.vae_train_mode)
    rest = [
        method.temp * jax.random.normal(jax.random.fold_in(k_r, i), (num, *s))
        for i, s in enumerate(method.rest_shapes)
    ]
    logits = vae.decode(vae.split_top(out.data) + rest)
    x = N.decoder_mean(method.likelihood, logits, method.data_shape[-1], method.c.num_mix)
    return x, out.nfe


def readjust_bn(
    method: Any,
    state: TrainState,
    key: jax.Array,
    num_batches: int | None = None,
    batch_size: int | None = None,
    temp: float | None = None,
) -> TrainState:
    """NVAE's BatchNorm readjustment (``evaluate.py --readjust_bn``: ``set_bn``): decode
    ``num_batches`` batches of ``batch_size`` latents drawn from the VAE's prior N(0, t^2 I) in
    training mode, so that the decoder's running averages follow (momentum 0.05, as in
    training) the statistics of generated rather than reconstructed images. Defaults: the
    settings' ``readjust_bn_batches`` (NVAE: 500), ``readjust_bn_batch_size`` (NVAE: 2) and the
    sampling temperature. The encoder's averages are left as they are (only the decoder runs).
    Returns ``state`` with the new averages; a VAE without running averages is returned as is.
    """
    if not method.bn_stats:
        return state
    c = method.c
    n = int(c.readjust_bn_batches if num_batches is None else num_batches)
    b = int(c.readjust_bn_batch_size if batch_size is None else batch_size)
    t = float(method.temp if temp is None else temp)
    if n < 1 or b < 2:
        raise ValueError(f"readjust_bn needs >= 1 batch of >= 2 samples, got {n} x {b}")
    shapes = [method.top_shape, *method.rest_shapes]

    @jax.jit
    def run(params, stats, key):
        def body(stats, k):
            vae = method.vae(params, stats, train=True)
            zs = [t * jax.random.normal(jax.random.fold_in(k, i), (b, *s)) for i, s in
                  enumerate(shapes)]  # fmt: skip
            vae.decode(vae.split_top(zs[0]) + zs[1:])
            return method.updated_stats(vae), None

        return jax.lax.scan(body, stats, jax.random.split(key, n))[0]

    stats = run(state.params["vae"], method.batch_stats(state), key)
    return state.replace(opt_state={**state.opt_state, "batch_stats": {"vae": stats}})


def nll(
    method: Any,
    state: TrainState,
    key: jax.Array,
    x: Array,
    num_iw_samples: int | None = None,
    **kw: Any,
) -> dict[str, float]:
    """The NLL bound recon + log q - log p_ODE(z_0) + CE of the Normal groups (App. E).

    ``log p(z_0)`` of the score prior comes from the probability-flow ODE (exact divergence
    for small latents, Gaussian Hutchinson otherwise), from ``nll_t_min`` to 1.
    With ``num_iw_samples`` K > 1 (LSGM's ``--num_iw_samples``) it also returns the
    importance-weighted bound (Burda et al. 2016, Eq. 8)
    ``nll_iw = -log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)``, z_k ~ q, with log p of the
    top group from the ODE and N(0, I) for the others (``nll``: the mean single-sample
    bound over the same K draws). Returns nats per example, and ``bpd`` for images.

    With ``nll_prior = 'discrete'`` the ODE's -log p(z_0) is replaced by the -ELBO of the
    ``diffusion_steps``-step chain (LSGM's ``--elbo_eval``; ``kw`` are then ignored), an upper
    bound on the chain's -log p(z_0) that the IW bound then uses as its log p.
    """
    c = method.c
    k_iw = int(c.num_iw_samples if num_iw_samples is None else num_iw_samples)
    if k_iw < 1:
        raise ValueError(f"num_iw_samples must be >= 1, got {k_iw}")
    if c.nll_prior not in ("ode", "discrete"):
        raise ValueError(f"lsgm.nll_prior is 'ode' or 'discrete', got {c.nll_prior!r}")
    auto = "exact" if math.prod(method.top_shape) <= 16 else "hutchinson_gaussian"
    opts = {"divergence": method.divergence or auto}
    opts.update(t_min=float(c.nll_t_min), rtol=1e-5, atol=1e-5)
    opts.update(kw)
    prior = state.ema["prior"]

    @jax.jit
    def bound(vae_params, stats, prior, active, x, key):
        k_e, k_l = jax.random.split(key)
        recon, log_q, top, ce_rest, enc = method.latent_terms(
            vae_params, x, k_e, stats, train=False
        )
        if c.nll_prior == "discrete":
            eps_fn = method.eps_fn(prior, active=active)
            nelbo, nfe = ancestral.nelbo(
                method.process, eps_fn, k_l, top, c.diffusion_steps, c.denoising_stddevs
            )
            out = _Prior(-nelbo, nfe)
        else:
            score = method.score_fn(prior, active)
            out = log_likelihood(method.process, score, top, k_l, **opts)
        log_p_rest = sum(
            (
                L.log_normal(z, jnp.zeros_like(z), jnp.zeros_like(z))
                for z in enc["z"][method.n_top :]
            ),
            jnp.zeros_like(recon),
        )
        log_w = -recon - log_q + out.logp + log_p_rest
        return recon + log_q - out.logp + ce_rest, recon, log_w, out.nfe

    x = method.preprocess(x)
    stats = method.batch_stats(state)
    args = (state.params["vae"], stats, prior, method.active(state), x)
    draws = [bound(*args, k) for k in jax.random.split(key, k_iw)]
    nll_ = np.mean([np.asarray(d[0]) for d in draws], axis=0)
    recon = np.mean([np.asarray(d[1]) for d in draws], axis=0)
    res = {"nll": float(np.mean(nll_)), "recon": float(np.mean(recon))}
    res["nfe"] = int(np.mean([int(d[3]) for d in draws]))
    names = ["nll"]
    if k_iw > 1:
        log_w = np.stack([np.asarray(d[2], np.float64) for d in draws])
        iw = -(np.logaddexp.reduce(log_w, axis=0) - math.log(k_iw))
        res["nll_iw"], res["num_iw_samples"] = float(np.mean(iw)), k_iw
        names.append("nll_iw")
    if method.likelihood in ("logistic", "dml"):
        for n in names:
            key_out = "bpd" if n == "nll" else "bpd_iw"
            res[key_out] = res[n] / (math.prod(method.data_shape) * math.log(2.0))
    return res


class _Prior(NamedTuple):
    logp: Array
    nfe: Array


def evaluate(method: Any, state: TrainState, key: jax.Array, data: Any) -> dict[str, float]:
    """Toy metrics of samples (toy data) and the NLL bound on data (toy and images); first the
    BN readjustment when ``readjust_bn`` is set."""
    from jaxdiff.eval.metrics import toy_metrics

    k_s, k_m, k_d, k_l = jax.random.split(key, 4)
    if method.c.readjust_bn:
        state = readjust_bn(method, state, jax.random.fold_in(key, 5))
    res: dict[str, Any] = {}
    source = getattr(data, "mixture", None) or getattr(data, "source", None)
    if source is not None and len(method.data_shape) == 1:
        samples, info = draw(
            method.sample_fn, method.sampling_params(state), k_s, method.eval_samples,
            method.sample_batch,
        )  # fmt: skip
        res.update(toy_metrics(k_m, jnp.asarray(samples), source))
        res["nfe"] = info["nfe"]
        x = np.asarray(data.sample(k_d, method.eval_examples))
    else:
        x = np.asarray(data.batch(10**7, min(method.eval_examples, 256))["x"])
    if method.eval_likelihood:
        lik = nll(method, state, k_l, jnp.asarray(x))
        res.update(
            {
                f"model_{k}" if k == "nfe" else f"{k}_bound" if k == "nll" else k: v
                for k, v in lik.items()
            }
        )
    res["alpha_mean"] = float(jax.nn.sigmoid(state.params["prior"]["mixing_logit"]).mean())
    return res
