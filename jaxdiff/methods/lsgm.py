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
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array

from jaxdiff import rng
from jaxdiff.methods import lsgm_eval as E
from jaxdiff.methods.lsgm_settings import LSGMSettings
from jaxdiff.methods.lsgm_vae_io import active_channels, load_vae
from jaxdiff.methods.sampling import SamplingSpec
from jaxdiff.nets.functional import ShapeOnlyRngs, functional, init_params
from jaxdiff.nets.layers import norm_scale_penalty, spectral_regularizer, spectral_state_init
from jaxdiff.nets.nvae_cells import merge_batch_stats, set_bn_mode, split_batch_stats
from jaxdiff.objectives import decoders as N
from jaxdiff.objectives import lsgm as L
from jaxdiff.processes.scalar import VP
from jaxdiff.train.protocol import Method, PhaseGrads
from jaxdiff.train.state import TrainState

INACTIVE_LOGIT = -15.0  # LSGM train_vada.py: mixing_logit of inactive channels

METRICS = ("loss", "nelbo", "recon", "kl", "kl_coeff", "p_loss", "alpha", "stage")


class LSGMMethod(Method):
    """LSGM's trainer hooks (build it with ``jaxdiff.build.build_method``); see the module
    docstring.

    Args:
      settings: the stages, KL warm-ups and regularisers.
      process: the latent SDE (VP; sub-VP or VE with t_min > 0).
      objective: ``LSGMObjective`` (q's and p's time sampling and weighting).
      make_vae: ``make(rngs) -> nnx.Module``, the VAE.
      make_net: ``make_net(top_shape)`` gives ``make(rngs) -> nnx.Module``, the latent eps'
        network for the top latent's one-example shape (traced here from the VAE).
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
        make_net: Callable[[tuple[int, ...]], Callable[[nnx.Rngs], nnx.Module]],
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
        vae = nnx.eval_shape(lambda: self._make_vae(ShapeOnlyRngs()))  # shapes only: fast
        self.vae_graph = functional(vae)[0].graphdef
        # BatchNorm running averages (NVAE with bn_stats): kept in opt_state['batch_stats']['vae']
        self.bn_stats = bool(jax.tree.leaves(nnx.state(vae, nnx.BatchStat)))
        self.num_nf = int(getattr(vae, "num_nf", 0))  # IAF cells: log q and KLs at the sample
        found: dict[str, Any] = {}

        def latents():  # traced once: the latent groups' shapes, which of them are the top
            m = self._make_vae(ShapeOnlyRngs())
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
        self._make_net = make_net(self.top_shape)  # the prior sees the top latent's shape
        net = nnx.eval_shape(lambda: self._make_net(ShapeOnlyRngs()))  # shapes only: fast
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

    def vae(self, params, stats: dict | None = None, train: bool = True) -> nnx.Module:
        """The VAE from its parameters and (networks with BatchNorm running averages) the
        averages ``stats``, its BatchNorms in training (batch statistics) or evaluation mode."""
        if not self.bn_stats:
            return nnx.merge(self.vae_graph, params)
        if stats is None:
            raise ValueError("this VAE keeps BatchNorm running averages: pass them as stats")
        return set_bn_mode(nnx.merge(self.vae_graph, merge_batch_stats(params, stats)), train)

    def batch_stats(self, state: TrainState) -> dict | None:
        """The VAE's BatchNorm running averages in ``state`` (None without them)."""
        return state.opt_state["batch_stats"]["vae"] if self.bn_stats else None

    def updated_stats(self, vae: nnx.Module) -> dict | None:
        """The running averages a training-mode pass of ``vae`` has left (None without)."""
        if not self.bn_stats:
            return None
        stats = nnx.to_pure_dict(nnx.state(vae, nnx.BatchStat))
        return jax.lax.stop_gradient(split_batch_stats(stats)[1])

    def eps_fn(self, prior, key: jax.Array | None = None, active: Array | None = None):
        """Mixed eps prediction (Sec. 3.2) of prior params ``{'net', 'mixing_logit'}``; with
        an ``active`` (C,) 0/1 mask the inactive channels' network input is 0 and their mixing
        logit -15 (``drop_inactive_var``; LSGM's ``mask_inactive_variables``)."""
        net = nnx.merge(self.net_graph, prior["net"])
        logit = prior["mixing_logit"]
        if active is not None:
            logit = jnp.where(active > 0, logit, INACTIVE_LOGIT)

        def fn(z, t):
            zin = z if active is None else z * active.astype(z.dtype)
            out = net(zin, t, key=key) if self.dropout else net(zin, t)
            return L.process_mixed_eps(self.process, out, logit, z, t)

        return fn

    def score_fn(self, prior, active: Array | None = None):
        return L.score_from_eps(self.process, self.eps_fn(prior, active=active))

    def active(self, state: TrainState) -> Array | None:
        """The top latent's active-channel mask (``drop_inactive_var``; None when off)."""
        return state.opt_state["is_active"] if self.c.drop_inactive_var else None

    def measure_active(self, vae_params, stats, x: Array, key: jax.Array) -> Array:
        """The active-channel mask on one batch (``lsgm_vae_io.active_channels``)."""
        return active_channels(self, vae_params, stats, x, key)

    def init_prior(self, key: jax.Array) -> dict[str, Any]:
        net = init_params(self._make_net, key)
        c = self.top_shape[-1]
        return {"net": net, "mixing_logit": jnp.full((c,), self.c.mixing_logit_init, jnp.float32)}

    def init(self, key: jax.Array, batch: dict[str, Any]) -> TrainState:
        del batch
        k_v, k_p, k_s = jax.random.split(key, 3)
        vae = init_params(self._make_vae, k_v)  # one fast-compiled program (nets/functional.py)
        vae, stats = split_batch_stats(vae)
        if self.c.vae_checkpoint:
            vae, stats = load_vae(self.c.vae_checkpoint, vae, stats)
        params = {"vae": vae, "prior": self.init_prior(k_p)}
        opt = {g: self.optimizers[g].init(params[g]) for g in self.groups}
        if self.bn_stats:  # not trained: the step replaces them (PhaseGrads.aux)
            opt["batch_stats"] = {"vae": stats}
        if self.c.drop_inactive_var:  # all active until the first stage-2 step measures them
            opt["is_active"] = jnp.ones((self.top_shape[-1],), jnp.float32)
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

    def latent_terms(self, vae_params, x, key, stats=None, train: bool = True):
        """Encoder pass: (decoder nll, log q at the sample, top latent, Normal CE of the rest,
        the encoder's outputs with ``bn`` the updated BatchNorm averages)."""
        vae = self.vae(vae_params, stats, train)
        enc = vae.encode(x, key)
        recon = self.recon_nll(vae.decode(enc["z"]), x)
        enc["bn"] = self.updated_stats(vae) if train else stats
        log_q = sum(self.group_log_q(enc))
        if self.num_nf:  # flowed groups are not Normal: LSGM's Monte-Carlo cross_entropy_normal
            ce = [-L.log_normal(z, jnp.zeros_like(z), jnp.zeros_like(z)) for z in enc["z"]]
        else:  # its expectation, analytic
            pairs = zip(enc["mu"], enc["log_sigma"], strict=True)
            ce = [L.normal_cross_entropy(m, s) for m, s in pairs]
        ce_rest = sum(ce[self.n_top :], jnp.zeros_like(recon))
        return recon, log_q, vae.top_latent(enc["z"]), ce_rest, enc

    def group_log_q(self, enc: dict) -> list[Array]:
        """log q(z_g | x) (b,) per group at the encoder's sample: with IAF cells, the Gaussian
        density of the pre-flow sample minus the flows' log-determinant (LSGM nvae.py)."""
        z = enc["z_q"] if self.num_nf else enc["z"]
        log_q = [L.log_normal(*g) for g in zip(z, enc["mu"], enc["log_sigma"], strict=True)]
        if self.num_nf:
            log_q = [lq - ld for lq, ld in zip(log_q, enc["log_det"], strict=True)]
        return log_q

    # -- gradients: one branch per stage ---------------------------------------------------------

    def _out(self, state, g_v, g_p, active, sr_v=None, sr_p=None, bn=None, **metrics):
        """The stage's PhaseGrads; every branch returns the same structure."""
        zeros = lambda g: jax.tree.map(jnp.zeros_like, state.params[g])  # noqa: E731
        grads = {"vae": zeros("vae") if g_v is None else g_v}
        grads["prior"] = zeros("prior") if g_p is None else g_p
        m = {k: jnp.zeros((), jnp.float32) for k in METRICS}
        m.update({k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()})
        m["alpha"] = jnp.mean(jax.nn.sigmoid(state.params["prior"]["mixing_logit"]))
        aux = {}
        if "sr" in state.opt_state:
            old = state.opt_state["sr"]
            aux = {"sr": {"vae": old["vae"] if sr_v is None else sr_v}}
            aux["sr"]["prior"] = old["prior"] if sr_p is None else sr_p
        if self.bn_stats:
            aux["batch_stats"] = {"vae": self.batch_stats(state) if bn is None else bn}
        if self.c.drop_inactive_var:
            aux["is_active"] = state.opt_state["is_active"]
        aux = aux or None
        flags = {g: jnp.asarray(g in active) for g in self.groups}
        return PhaseGrads(grads, m, flags, aux)

    def _stage1(self, state, x, keys):
        kl_coeff = self.kl_coeff(state.step)

        def loss_fn(vp):
            vae = self.vae(vp, self.batch_stats(state))
            enc = vae.encode(x, keys)
            recon = self.recon_nll(vae.decode(enc["z"]), x)
            if self.num_nf:  # LSGM's vae_terms: log q - log N(z; 0, I) at the (flowed) sample
                zero = [jnp.zeros_like(z) for z in enc["z"]]
                log_p = [L.log_normal(z, o, o) for z, o in zip(enc["z"], zero, strict=True)]
                groups = [lq - lp for lq, lp in zip(self.group_log_q(enc), log_p, strict=True)]
            else:  # its expectation, analytic
                pairs = zip(enc["mu"], enc["log_sigma"], strict=True)
                groups = [L.normal_kl(m, s) for m, s in pairs]
            kl_all = jnp.stack(groups, axis=1)  # (b, groups), top group first
            kl = kl_all.sum(axis=1)
            if self.c.kl_balance:  # NVAE's balancing while kl_coeff < 1 (train_vae.py)
                gamma = L.kl_balance_coeffs(kl_all, self.kl_alpha, kl_coeff)
                weighted = jnp.sum(kl_all * gamma, axis=1)
            else:
                weighted = kl
            sr, sr_state = self._sr("vae", vp, state, stage1=True)
            loss = jnp.mean(recon + kl_coeff * weighted) + sr
            return loss, (jnp.mean(recon), jnp.mean(kl), sr_state, self.updated_stats(vae))

        (loss, (recon, kl, sr_state, bn)), g = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params["vae"]
        )
        return self._out(
            state, g, None, ("vae",), sr_v=sr_state, bn=bn, loss=loss, nelbo=recon + kl,
            recon=recon, kl=kl, kl_coeff=kl_coeff, stage=1.0,
        )  # fmt: skip

    def _net_key(self, keys):
        return rng.fold_in(keys, 7)[0] if self.dropout else None

    def _q_loss(self, vp, pp, x, keys, kl_coeff, state):
        k_enc, k_ce = rng.split(keys)
        recon, log_q, top, ce_rest, enc = self.latent_terms(vp, x, k_enc, self.batch_stats(state))
        eps_fn = self.eps_fn(pp, self._net_key(keys), self.active(state))
        ce_top, _ = self.objective.cross_entropy(eps_fn, k_ce, top)
        loss, nelbo = L.negative_elbo(recon, log_q, ce_top + ce_rest, kl_coeff)
        sr, sr_state = self._sr("vae", vp, state)
        aux = dict(nelbo=nelbo.mean(), recon=recon.mean(), kl=(nelbo - recon).mean(), top=top)
        aux["bn"] = enc["bn"]
        return jnp.mean(loss) + sr, (aux, sr_state)

    def _p_loss(self, pp, top, keys, state):
        eps_fn = self.eps_fn(pp, self._net_key(rng.fold_in(keys, 1)), self.active(state))
        loss, _ = self.objective.sgm_loss(eps_fn, keys, jax.lax.stop_gradient(top))
        sr, sr_state = self._sr("prior", pp, state)
        return jnp.mean(loss) + sr, sr_state

    def _stage2(self, state, x, keys):
        kl_coeff = self.kl_coeff(state.step)
        k_q, k_p = rng.split(keys)
        vp, pp = state.params["vae"], state.params["prior"]
        if self.c.drop_inactive_var:  # measured once, at the first stage-2 step, then kept
            measure = lambda: self.measure_active(  # noqa: E731
                vp, self.batch_stats(state), x, rng.fold_in(keys, 3)
            )
            new = jax.lax.cond(state.step == self.s1, measure, lambda: self.active(state))
            state = state.replace(opt_state={**state.opt_state, "is_active": new})
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
            state, g_v, g_p, ("vae", "prior"), sr_v=sr_v, sr_p=sr_p, bn=aux["bn"], loss=loss,
            nelbo=aux["nelbo"], recon=aux["recon"], kl=aux["kl"], kl_coeff=kl_coeff,
            p_loss=p_loss, stage=2.0,
        )  # fmt: skip

    def _stage3(self, state, x, keys):
        k_enc, k_p = rng.split(keys)
        vp, pp = state.params["vae"], state.params["prior"]
        # LSGM's frozen VAE still runs in train() mode: BN batch statistics, averages updated
        recon, log_q, top, ce_rest, enc = self.latent_terms(vp, x, k_enc, self.batch_stats(state))
        top = jax.lax.stop_gradient(top)
        (p_loss, sr_p), g_p = jax.value_and_grad(self._p_loss, has_aux=True)(pp, top, k_p, state)
        return self._out(
            state, None, g_p, ("prior",), sr_p=sr_p, bn=enc["bn"], loss=p_loss, p_loss=p_loss,
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
        c = self.c
        sizes = [c.batch_size_stage1, c.batch_size_stage2, c.batch_size_stage3]
        for n in sizes:
            if n < 0 or n > x.shape[0]:
                raise ValueError(f"lsgm.batch_size_stage*: {sizes}, each in [0, {x.shape[0]}]")

        def sliced(fn, n):  # a stage on the first n examples of the batch (0: all)
            return lambda state, x, keys: fn(state, x[: n or None], keys[: n or None])

        stages = [self._stage1, self._stage2] + ([self._stage3] if self.stage3 else [])
        branches = [sliced(f, n) for f, n in zip(stages, sizes, strict=False)]
        if self.s1 <= 0:
            branches[0] = branches[1]
        return jax.lax.switch(self.stage(state.step), branches, state, x, keys)

    # -- sampling and likelihood (methods/lsgm_eval.py) -----------------------------------------

    def sampling_params(self, state: TrainState) -> Any:
        out = {"prior": state.ema["prior"], "vae": state.params["vae"]}
        if self.bn_stats:
            out["batch_stats"] = self.batch_stats(state)
        if self.c.drop_inactive_var:
            out["is_active"] = self.active(state)
        return out

    def sample_fn(self, params, key, num: int):
        """Latent sampler from N(0, I) (``sampling``), then the decoder mean; NFE of the prior."""
        return E.sample(self, params, key, num)

    def nll(
        self,
        state: TrainState,
        key: jax.Array,
        x: Array,
        num_iw_samples: int | None = None,
        **kw: Any,
    ) -> dict[str, float]:
        """The NLL bound (``lsgm_eval.nll``)."""
        return E.nll(self, state, key, x, num_iw_samples, **kw)

    def readjust_bn(self, state: TrainState, key: jax.Array, **kw: Any) -> TrainState:
        """NVAE's BN readjustment before evaluation (``lsgm_eval.readjust_bn``)."""
        return E.readjust_bn(self, state, key, **kw)

    def evaluate(self, state: TrainState, key: jax.Array, data: Any) -> dict[str, float]:
        """Toy metrics of samples (toy data) and the NLL bound on data (``lsgm_eval``)."""
        return E.evaluate(self, state, key, data)
