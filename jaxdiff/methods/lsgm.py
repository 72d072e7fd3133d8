"""LSGM (Vahdat, Kreis & Kautz, NeurIPS 2021) as trainer hooks: a VAE with a latent score prior.

Parameter groups ``('vae', 'prior')``; ``prior`` = {'net': eps' network, 'mixing_logit': (C,)},
each with its own optimiser (``jaxdiff.build``: Adam with L2 decay, eps 1e-3 / 1e-4, the VAE's lr
per stage) and an EMA of the prior. Stages are switched by step counts inside the jitted step
(``lax.switch``), so the shared trainer resumes across them from any checkpoint:

1. steps [0, stage1_steps): the VAE with a N(0, I) prior, KL warm-up (NVAE objective);
2. then ``stage2_steps``: end to end, the encoder on the likelihood-weighted ELBO (Sec. 3.1), the
   score model on its own weighting (Sec. 3.3); one backward pass when both are w_ll;
3. optionally from ``stage1_steps + stage2_steps``: a freshly initialised score model trained on
   the frozen VAE (LSGM's CelebA-HQ stage 3; here with the stage-2 prior's architecture).

The trainer updates a group only in the stages that train it (``PhaseGrads.active``).
Sampling: the probability-flow ODE in latent space (any shared sampler; adaptive Dormand-Prince
at rtol = atol = 1e-5 by default), then the decoder mean (Sec. 3, App. E).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array

from jaxdiff import rng
from jaxdiff.methods.sampling import SamplingSpec
from jaxdiff.nets.functional import functional, init_params
from jaxdiff.nets.layers import norm_scale_penalty, spectral_regularizer, spectral_state_init
from jaxdiff.objectives import decoders as N
from jaxdiff.objectives import lsgm as L
from jaxdiff.objectives.parameterisation import LSGMMixed
from jaxdiff.processes.scalar import VP
from jaxdiff.solvers.likelihood import log_likelihood
from jaxdiff.train.protocol import Method, PhaseGrads
from jaxdiff.train.sampling import draw
from jaxdiff.train.state import TrainState

METRICS = ("loss", "nelbo", "recon", "kl", "kl_coeff", "p_loss", "alpha", "stage")


@dataclasses.dataclass(frozen=True)
class LSGMSettings:
    """LSGM's training options (the ``lsgm`` config section; defaults in configs/toy/lsgm.py).

    likelihood: decoder p(x | z_0): gaussian | bernoulli | logistic | dml.
    num_mix: components of the ``dml`` decoder (LSGM's 10).
    num_x_bits: bit depth the images are quantised to (``objectives.decoders.quantise``) and the
      discrete decoders' grid (LSGM's ``--num_x_bits``; 5 for CelebA-HQ).
    stage1_steps, stage2_steps, stage3: the stages above.
    kl_min, kl_max_stage1, kl_anneal_portion: stage 1's linear KL warm-up.
    cont_kl_anneal, cont_kl_portion: stage 2's warm-up kl_max_stage1 -> 1.
    sr_vae, sr_prior: spectral-regularisation weights (0: off).
    sr_vae_stage1: the VAE's weight in stage 1 (``train_vae.py --weight_decay_norm``; None: sr_vae).
    sr_prior_conv: whether the prior's SR includes the kernels' spectral norms (False: only the
      normalisation layers' max|gamma|, as LSGM's ``--custom_conv_dae`` prior, whose SR finds no
      NVAE conv in NCSN++).
    kl_balance: stage 1's KL balancing while the KL coefficient is < 1 (``train_vae.py``: on).
    mixing_logit_init: initial logit of the mixed score's per-channel weight.
    update_q_ema: the encoder's objective uses the prior's EMA (separate objectives only).
    nll_t_min: the likelihood ODE's end time (``--ode_eps``; README: 1e-6 CIFAR-10, 1e-5 MNIST).
    num_iw_samples: importance samples of the evaluation's NLL bound (1: the plain bound).
    """

    likelihood: str = "gaussian"
    num_mix: int = 10
    num_x_bits: int = 8
    stage1_steps: int = 0
    stage2_steps: int = 1
    stage3: bool = False
    kl_min: float = 1e-4
    kl_max_stage1: float = 0.7
    kl_anneal_portion: float = 1.0
    cont_kl_anneal: bool = True
    cont_kl_portion: float = 0.1
    sr_vae: float = 0.0
    sr_prior: float = 0.0
    sr_vae_stage1: float | None = None
    sr_prior_conv: bool = True
    kl_balance: bool = True
    mixing_logit_init: float = -3.0
    update_q_ema: bool = False
    nll_t_min: float = 1e-5
    num_iw_samples: int = 1


class LSGMMethod(Method):
    """LSGM's trainer hooks (build it with ``jaxdiff.build.build_method``); see the module
    docstring.

    Args:
      settings: the stages, KL warm-ups and regularisers.
      process: the latent SDE (VP).
      objective: ``LSGMObjective`` (q's and p's time sampling and weighting).
      make_vae, make_net: ``make(rngs) -> nnx.Module`` for the VAE and the latent eps' network.
      tx_vae, tx_prior: the two optimisers; ema_decay: EMA of the prior.
      data_shape: one example's shape.
      sampling: latent sampler and grid; temp: temperature of the Normal groups outside the prior.
      dropout: whether the score network uses dropout.
      eval_samples, eval_examples, sample_batch, eval_likelihood: sizes used by evaluate.
      divergence: of the likelihood's ODE (None: exact for latents of <= 16 dimensions, else
        Gaussian Hutchinson).
    """

    groups = ("vae", "prior")

    def __init__(
        self,
        settings: LSGMSettings,
        process: VP,
        objective: L.LSGMObjective,
        make_vae: Callable[[nnx.Rngs], nnx.Module],
        make_net: Callable[[nnx.Rngs], nnx.Module],
        tx_vae: optax.GradientTransformation,
        tx_prior: optax.GradientTransformation,
        ema_decay: float,
        data_shape: tuple[int, ...],
        sampling: SamplingSpec,
        temp: float = 1.0,
        dropout: bool = False,
        eval_samples: int = 5000,
        eval_examples: int = 1000,
        sample_batch: int | None = None,
        eval_likelihood: bool = True,
        divergence: str | None = None,
    ):
        c = self.c = settings
        self.data_shape = tuple(data_shape)
        self.likelihood = c.likelihood
        # images on the decoder's grid: held-out likelihoods must not dequantise them
        self.discrete_data = c.likelihood in ("bernoulli", "logistic", "dml")
        self.process = process
        self.objective = objective
        self.s1 = int(c.stage1_steps)
        self.s2 = self.s1 + int(c.stage2_steps)
        self.stage3 = bool(c.stage3)
        self.sampling, self.temp = sampling, float(temp)
        self.eval_samples, self.eval_examples = eval_samples, eval_examples
        self.sample_batch, self.eval_likelihood = sample_batch, eval_likelihood
        self.divergence = divergence
        self._make_vae = make_vae
        vae = nnx.eval_shape(lambda: self._make_vae(nnx.Rngs(0)))
        self.vae_graph = functional(vae)[0].graphdef
        found: dict[str, Any] = {}

        def latents():  # traced once: the latent groups' shapes, which of them are the top
            m = self._make_vae(nnx.Rngs(0))
            zs = m.encode(jnp.zeros((1, *self.data_shape)), jax.random.key(0))["z"]
            top = m.top_latent(zs)
            found["n_top"] = len(m.split_top(top))
            return zs, top

        zs, top = jax.eval_shape(latents)
        self.top_shape = tuple(top.shape[1:])
        self.n_top = found["n_top"]
        self.rest_shapes = [tuple(z.shape[1:]) for z in zs[self.n_top :]]
        # KL balancing's alpha ('square'): 4^s for the groups of scale s (0 the top), equal
        # groups per scale as in LSGM's NVAE
        self.kl_alpha = L.kl_balance_alpha(len(zs) // self.n_top, self.n_top)
        self._make_net = make_net
        net = nnx.eval_shape(lambda: self._make_net(nnx.Rngs(0)))
        self.net_graph = functional(net)[0].graphdef
        self.dropout = dropout
        self.optimizers = {"vae": tx_vae, "prior": tx_prior}
        self.ema_decay = {"prior": float(ema_decay)}

    def with_sampling(self, sampling: SamplingSpec) -> LSGMMethod:
        """A copy that samples the latent prior with ``sampling``."""
        new = copy.copy(self)
        new.sampling = sampling
        return new

    # -- networks --------------------------------------------------------------------------------

    def vae(self, params) -> nnx.Module:
        return nnx.merge(self.vae_graph, params)

    def eps_fn(self, prior, key: jax.Array | None = None) -> L.EpsFn:
        """Mixed eps prediction (Sec. 3.2) of prior params ``{'net', 'mixing_logit'}``."""
        net = nnx.merge(self.net_graph, prior["net"])
        param = LSGMMixed(prior["mixing_logit"])

        def fn(z, t):
            out = net(z, t, key=key) if self.dropout else net(z, t)
            return param.eps(self.process, out, z, t)

        return fn

    def score_fn(self, prior):
        return L.score_from_eps(self.process, self.eps_fn(prior))

    def init_prior(self, key: jax.Array) -> dict[str, Any]:
        net = init_params(self._make_net, key)
        c = self.top_shape[-1]
        return {"net": net, "mixing_logit": jnp.full((c,), self.c.mixing_logit_init, jnp.float32)}

    def init(self, key: jax.Array, batch: dict[str, Any]) -> TrainState:
        del batch
        k_v, k_p, k_s = jax.random.split(key, 3)
        vae = init_params(self._make_vae, k_v)  # one fast-compiled program (nets/functional.py)
        params = {"vae": vae, "prior": self.init_prior(k_p)}
        opt = {g: self.optimizers[g].init(params[g]) for g in self.groups}
        if self.c.sr_vae or self.c.sr_prior:  # persistent power-iteration vectors, warmed up
            sr = {
                g: spectral_state_init(params[g], jax.random.fold_in(k_s, i))
                for i, g in enumerate(self.groups)
            }
            opt["sr"] = {g: spectral_regularizer(params[g], sr[g], 40)[1] for g in self.groups}
        ema = {"prior": jax.tree.map(jnp.copy, params["prior"])}
        return TrainState(jnp.zeros((), jnp.int32), params, opt, ema)

    def _sr(self, group: str, params, state: TrainState, stage1: bool = False):
        c = self.c
        lam = float(c.sr_vae if group == "vae" else c.sr_prior)
        if stage1 and c.sr_vae_stage1 is not None:
            lam = float(c.sr_vae_stage1)
        if not lam or "sr" not in state.opt_state:
            return jnp.zeros(()), None
        if group == "prior" and not c.sr_prior_conv:
            return lam * norm_scale_penalty(params), None
        sigma, new = spectral_regularizer(params, state.opt_state["sr"][group], 4)
        return lam * (sigma + norm_scale_penalty(params)), new

    # -- the ELBO --------------------------------------------------------------------------------

    def preprocess(self, x: Array) -> Array:
        """Images reduced to ``num_x_bits`` (LSGM's ``pre_process``; identity at 8 bits)."""
        x = jnp.asarray(x, jnp.float32)
        if self.likelihood in ("logistic", "dml") and self.c.num_x_bits != 8:
            return N.quantise(x, self.c.num_x_bits)
        return x

    def recon_nll(self, params: Array, x: Array) -> Array:
        """-log p(x | z) per example from the decoder's output ``params``."""
        return N.decoder_nll(self.likelihood, params, x, self.c.num_mix, self.c.num_x_bits)

    def kl_coeff(self, step: Array) -> Array:
        """Stage 1: linear KL warm-up kl_min -> kl_max_stage1 over kl_anneal_portion of stage 1;
        stage 2: ``cont_kl_anneal`` kl_max_stage1 -> 1 over its first 10 % (else 1)."""
        c = self.c
        step = step.astype(jnp.float32)
        n1 = max(c.kl_anneal_portion * self.s1, 1.0)
        w1 = c.kl_min + (c.kl_max_stage1 - c.kl_min) * jnp.clip(step / n1, 0.0, 1.0)
        if c.cont_kl_anneal:
            n2 = max(c.cont_kl_portion * (self.s2 - self.s1), 1.0)
            w2 = c.kl_max_stage1 + (1 - c.kl_max_stage1) * jnp.clip((step - self.s1) / n2, 0, 1)
        else:
            w2 = jnp.ones(())
        return jnp.where(step < self.s1, w1, w2)

    def latent_terms(self, vae_params, x, key):
        """Encoder pass: (decoder nll, log q at the sample, top latent, Normal CE of the rest)."""
        vae = self.vae(vae_params)
        enc = vae.encode(x, key)
        recon = self.recon_nll(vae.decode(enc["z"]), x)
        log_q = sum(
            L.log_normal(*g) for g in zip(enc["z"], enc["mu"], enc["log_sigma"], strict=True)
        )
        rest = enc["mu"][self.n_top :], enc["log_sigma"][self.n_top :]
        ce_rest = sum(
            (L.normal_cross_entropy(m, s) for m, s in zip(*rest, strict=True)),
            jnp.zeros_like(recon),
        )
        return recon, log_q, vae.top_latent(enc["z"]), ce_rest, enc

    # -- gradients: one branch per stage ---------------------------------------------------------

    def _out(self, state, g_v, g_p, active, sr_v=None, sr_p=None, **metrics) -> PhaseGrads:
        """The stage's PhaseGrads; every branch returns the same structure."""
        zeros = lambda g: jax.tree.map(jnp.zeros_like, state.params[g])  # noqa: E731
        grads = {"vae": zeros("vae") if g_v is None else g_v}
        grads["prior"] = zeros("prior") if g_p is None else g_p
        m = {k: jnp.zeros((), jnp.float32) for k in METRICS}
        m.update({k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()})
        m["alpha"] = jnp.mean(jax.nn.sigmoid(state.params["prior"]["mixing_logit"]))
        aux = None
        if "sr" in state.opt_state:
            old = state.opt_state["sr"]
            aux = {"sr": {"vae": old["vae"] if sr_v is None else sr_v}}
            aux["sr"]["prior"] = old["prior"] if sr_p is None else sr_p
        flags = {g: jnp.asarray(g in active) for g in self.groups}
        return PhaseGrads(grads, m, flags, aux)

    def _stage1(self, state, x, keys):
        kl_coeff = self.kl_coeff(state.step)

        def loss_fn(vp):
            vae = self.vae(vp)
            enc = vae.encode(x, keys)
            recon = self.recon_nll(vae.decode(enc["z"]), x)
            groups = [L.normal_kl(m, s) for m, s in zip(enc["mu"], enc["log_sigma"], strict=True)]
            kl_all = jnp.stack(groups, axis=1)  # (b, groups), top group first
            kl = kl_all.sum(axis=1)
            if self.c.kl_balance:  # NVAE's balancing while kl_coeff < 1 (train_vae.py)
                gamma = L.kl_balance_coeffs(kl_all, self.kl_alpha, kl_coeff)
                weighted = jnp.sum(kl_all * gamma, axis=1)
            else:
                weighted = kl
            sr, sr_state = self._sr("vae", vp, state, stage1=True)
            loss = jnp.mean(recon + kl_coeff * weighted) + sr
            return loss, (jnp.mean(recon), jnp.mean(kl), sr_state)

        (loss, (recon, kl, sr_state)), g = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params["vae"]
        )
        return self._out(
            state, g, None, ("vae",), sr_v=sr_state, loss=loss, nelbo=recon + kl, recon=recon,
            kl=kl, kl_coeff=kl_coeff, stage=1.0,
        )  # fmt: skip

    def _net_key(self, keys):
        return rng.fold_in(keys, 7)[0] if self.dropout else None

    def _q_loss(self, vp, pp, x, keys, kl_coeff, state):
        k_enc, k_ce = rng.split(keys)
        recon, log_q, top, ce_rest, _ = self.latent_terms(vp, x, k_enc)
        eps_fn = self.eps_fn(pp, self._net_key(keys))
        ce_top, _ = self.objective.cross_entropy(eps_fn, k_ce, top)
        loss, nelbo = L.negative_elbo(recon, log_q, ce_top + ce_rest, kl_coeff)
        sr, sr_state = self._sr("vae", vp, state)
        aux = dict(nelbo=nelbo.mean(), recon=recon.mean(), kl=(nelbo - recon).mean(), top=top)
        return jnp.mean(loss) + sr, (aux, sr_state)

    def _p_loss(self, pp, top, keys, state):
        eps_fn = self.eps_fn(pp, self._net_key(rng.fold_in(keys, 1)))
        loss, _ = self.objective.sgm_loss(eps_fn, keys, jax.lax.stop_gradient(top))
        sr, sr_state = self._sr("prior", pp, state)
        return jnp.mean(loss) + sr, sr_state

    def _stage2(self, state, x, keys):
        kl_coeff = self.kl_coeff(state.step)
        k_q, k_p = rng.split(keys)
        vp, pp = state.params["vae"], state.params["prior"]
        if self.objective.joint:  # p's objective is q's: one backward pass for both networks

            def joint(vp, pp):
                val, (aux, sr_v) = self._q_loss(vp, pp, x, k_q, kl_coeff, state)
                sr, sr_p = self._sr("prior", pp, state)
                return val + sr, (aux, sr_v, sr_p)

            grad_fn = jax.value_and_grad(joint, argnums=(0, 1), has_aux=True)
            (loss, (aux, sr_v, sr_p)), (g_v, g_p) = grad_fn(vp, pp)
            p_loss = aux["nelbo"]
        else:  # separate objectives, the score model's on detached latents (Sec. 3.3)
            pq = state.ema["prior"] if self.c.update_q_ema else pp
            grad_fn = jax.value_and_grad(self._q_loss, has_aux=True)
            (loss, (aux, sr_v)), g_v = grad_fn(vp, pq, x, k_q, kl_coeff, state)
            if self.objective.shares_draws:  # reweight_p_samples: p on q's (t, eps) draws
                k_p = rng.split(k_q)[1]
            (p_loss, sr_p), g_p = jax.value_and_grad(self._p_loss, has_aux=True)(
                pp, aux["top"], k_p, state
            )
        return self._out(
            state, g_v, g_p, ("vae", "prior"), sr_v=sr_v, sr_p=sr_p, loss=loss,
            nelbo=aux["nelbo"], recon=aux["recon"], kl=aux["kl"], kl_coeff=kl_coeff,
            p_loss=p_loss, stage=2.0,
        )  # fmt: skip

    def _stage3(self, state, x, keys):
        k_enc, k_p = rng.split(keys)
        vp, pp = state.params["vae"], state.params["prior"]
        recon, log_q, top, ce_rest, _ = self.latent_terms(vp, x, k_enc)
        top = jax.lax.stop_gradient(top)
        (p_loss, sr_p), g_p = jax.value_and_grad(self._p_loss, has_aux=True)(pp, top, k_p, state)
        return self._out(
            state, None, g_p, ("prior",), sr_p=sr_p, loss=p_loss, p_loss=p_loss,
            recon=recon.mean(), kl_coeff=1.0, stage=3.0,
        )  # fmt: skip

    def stage(self, step: Array) -> Array:
        """0, 1, 2 for stages 1, 2, 3 at ``step``."""
        s = (step >= self.s1).astype(jnp.int32)
        return s + (step >= self.s2).astype(jnp.int32) if self.stage3 else s

    def prepare(self, state: TrainState) -> TrainState:
        """Stage 3's first step: a new score model, optimiser state and EMA."""
        if not self.stage3:
            return state

        def reset(state):
            fresh = self.init_prior(jax.random.fold_in(jax.random.key(17), self.s2))
            return state.replace(
                params={**state.params, "prior": fresh},
                opt_state={**state.opt_state, "prior": self.optimizers["prior"].init(fresh)},
                ema={**state.ema, "prior": jax.tree.map(jnp.copy, fresh)},
            )

        return jax.lax.cond(state.step == self.s2, reset, lambda s: s, state)

    def grads(self, phase: int, state: TrainState, batch: dict[str, Any], keys: jax.Array):
        del phase
        x = self.preprocess(batch["x"])
        branches = [self._stage1, self._stage2] + ([self._stage3] if self.stage3 else [])
        if self.s1 <= 0:
            branches[0] = self._stage2
        return jax.lax.switch(self.stage(state.step), branches, state, x, keys)

    # -- sampling and likelihood ----------------------------------------------------------------

    def sampling_params(self, state: TrainState) -> Any:
        return {"prior": state.ema["prior"], "vae": state.params["vae"]}

    def sample_fn(self, params, key, num: int):
        """Latent sampler from N(0, I) (``sampling``), then the decoder mean; NFE of the prior."""
        k_s, k_r = jax.random.split(key)
        out = self.sampling.run(
            self.process, self.score_fn(params["prior"]), k_s, (num, *self.top_shape)
        )
        vae = self.vae(params["vae"])
        rest = [
            self.temp * jax.random.normal(jax.random.fold_in(k_r, i), (num, *s))
            for i, s in enumerate(self.rest_shapes)
        ]
        x = N.decoder_mean(
            self.likelihood, vae.decode(vae.split_top(out.data) + rest), self.data_shape[-1],
            self.c.num_mix,
        )  # fmt: skip
        return x, out.nfe

    def nll(
        self,
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
        """
        k_iw = int(self.c.num_iw_samples if num_iw_samples is None else num_iw_samples)
        if k_iw < 1:
            raise ValueError(f"num_iw_samples must be >= 1, got {k_iw}")
        auto = "exact" if math.prod(self.top_shape) <= 16 else "hutchinson_gaussian"
        opts = {"divergence": self.divergence or auto}
        opts.update(t_min=float(self.c.nll_t_min), rtol=1e-5, atol=1e-5)
        opts.update(kw)
        prior = state.ema["prior"]

        @jax.jit
        def bound(vae_params, prior, x, key):
            k_e, k_l = jax.random.split(key)
            recon, log_q, top, ce_rest, enc = self.latent_terms(vae_params, x, k_e)
            out = log_likelihood(self.process, self.score_fn(prior), top, k_l, **opts)
            log_p_rest = sum(
                (
                    L.log_normal(z, jnp.zeros_like(z), jnp.zeros_like(z))
                    for z in enc["z"][self.n_top :]
                ),
                jnp.zeros_like(recon),
            )
            log_w = -recon - log_q + out.logp + log_p_rest
            return recon + log_q - out.logp + ce_rest, recon, log_w, out.nfe

        x = self.preprocess(x)
        draws = [bound(state.params["vae"], prior, x, k) for k in jax.random.split(key, k_iw)]
        nll = np.mean([np.asarray(d[0]) for d in draws], axis=0)
        recon = np.mean([np.asarray(d[1]) for d in draws], axis=0)
        res = {"nll": float(np.mean(nll)), "recon": float(np.mean(recon))}
        res["nfe"] = int(np.mean([int(d[3]) for d in draws]))
        names = ["nll"]
        if k_iw > 1:
            log_w = np.stack([np.asarray(d[2], np.float64) for d in draws])
            iw = -(np.logaddexp.reduce(log_w, axis=0) - math.log(k_iw))
            res["nll_iw"], res["num_iw_samples"] = float(np.mean(iw)), k_iw
            names.append("nll_iw")
        if self.likelihood in ("logistic", "dml"):
            for n in names:
                key_out = "bpd" if n == "nll" else "bpd_iw"
                res[key_out] = res[n] / (math.prod(self.data_shape) * math.log(2.0))
        return res

    def evaluate(self, state: TrainState, key: jax.Array, data: Any) -> dict[str, float]:
        """Toy metrics of samples (toy data) and the NLL bound on data (toy and images)."""
        from jaxdiff.eval.metrics import toy_metrics

        k_s, k_m, k_d, k_l = jax.random.split(key, 4)
        res: dict[str, Any] = {}
        source = getattr(data, "mixture", None) or getattr(data, "source", None)
        if source is not None and len(self.data_shape) == 1:
            samples, info = draw(
                self.sample_fn, self.sampling_params(state), k_s, self.eval_samples,
                self.sample_batch,
            )  # fmt: skip
            res.update(toy_metrics(k_m, jnp.asarray(samples), source))
            res["nfe"] = info["nfe"]
            x = np.asarray(data.sample(k_d, self.eval_examples))
        else:
            x = np.asarray(data.batch(10**7, min(self.eval_examples, 256))["x"])
        if self.eval_likelihood:
            lik = self.nll(state, k_l, jnp.asarray(x))
            res.update(
                {
                    f"model_{k}" if k == "nfe" else f"{k}_bound" if k == "nll" else k: v
                    for k, v in lik.items()
                }
            )
        res["alpha_mean"] = float(jax.nn.sigmoid(state.params["prior"]["mixing_logit"]).mean())
        return res
