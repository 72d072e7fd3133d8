"""LSGM (Vahdat, Kreis & Kautz, NeurIPS 2021) as trainer hooks: a VAE with a latent score prior.

Parameter groups ``('vae', 'prior')``; ``prior`` = {'net': eps' network, 'mixing_logit': (C,)},
with its own optimiser (Adam eps 1e-4, constant lr) and EMA; the VAE's optimiser is Adam with
eps 1e-3 and a per-stage cosine schedule. Stages are switched by step counts, inside the jitted
step (``lax.switch``), so the shared trainer resumes across them from any checkpoint:

1. steps [0, stage1_steps): the VAE with a N(0, I) prior, KL warm-up (NVAE objective);
2. then ``stage2_steps``: end to end, the encoder on the likelihood-weighted ELBO (Sec. 3.1), the
   score model on its own weighting (Sec. 3.3); one backward pass when both are w_ll;
3. optionally from ``stage1_steps + stage2_steps``: a freshly initialised score model trained on
   the frozen VAE (LSGM's CelebA-HQ stage 3; here with the stage-2 prior's architecture).

Sampling: the probability-flow ODE in latent space (any shared sampler; adaptive Dormand-Prince
at rtol = atol = 1e-5 by default), then the decoder mean (Sec. 3, App. E).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float

from jaxdiff.methods import lsgm_nets as N
from jaxdiff.methods.base import Method
from jaxdiff.nets.functional import functional, init_params
from jaxdiff.nets.layers import norm_scale_penalty, spectral_regularizer, spectral_state_init
from jaxdiff.objectives import lsgm as L
from jaxdiff.processes.scalar import VP
from jaxdiff.solvers.likelihood import log_likelihood
from jaxdiff.solvers.samplers import get_sampler, sample
from jaxdiff.train.state import TrainState, apply_gradients, next_step

METRICS = ("loss", "nelbo", "recon", "kl", "kl_coeff", "p_loss", "alpha", "stage")


def adam_l2(lr: optax.Schedule, eps: float, weight_decay: float = 0.0, clip: float = 0.0):
    """PyTorch-style Adam with L2 weight decay (LSGM's optimisers), optional norm clipping."""
    parts = [optax.clip_by_global_norm(clip)] if clip else []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts += [optax.scale_by_adam(eps=eps), optax.scale_by_learning_rate(lr)]
    return optax.chain(*parts)


def _cosine(lr: float, min_lr: float, steps: int, warmup: int = 0) -> optax.Schedule:
    decay = optax.cosine_decay_schedule(lr, max(steps - warmup, 1), alpha=min_lr / lr)
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(lr / warmup, lr, warmup), decay], [warmup])


class LSGMMethod(Method):
    """LSGM's trainer hooks; build it with :meth:`from_config`. See the module docstring."""

    groups = ("vae", "prior")

    def __init__(self, config, data_shape: tuple[int, ...]):
        from jaxdiff.build import build_process, compute_dtype

        c = config.lsgm
        self.c = c
        self.data_shape = tuple(data_shape)
        self.likelihood = c.likelihood
        self.process: VP = build_process(config.process)
        self.objective = L.LSGMObjective(
            self.process, c.q_sampling, c.p_weighting, c.p_sampling, float(c.t_min)
        )
        self.s1 = int(c.stage1_steps)
        self.s2 = self.s1 + int(c.stage2_steps)
        self.stage3 = bool(c.get("stage3", False))
        self.sampling = dict(config.sampling)
        self.eval_cfg = dict(config.eval)
        dtype = compute_dtype(config)
        self._make_vae = functools.partial(N.make_vae, c.vae, self.data_shape, c.likelihood, dtype)
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
        self._make_net = functools.partial(N.make_score_net, c.score, self.top_shape, dtype)
        net = nnx.eval_shape(lambda: self._make_net(nnx.Rngs(0)))
        self.net_graph = functional(net)[0].graphdef
        self.dropout = float(c.score.get("dropout", 0.0)) > 0
        # optimisers: the VAE's lr follows stage 1 then stage 2; the prior's starts at stage 2
        v, p = c.vae_optim, c.prior_optim
        s2_len = max(self.s2 - self.s1, 1)
        vae_lr = optax.join_schedules(
            [
                _cosine(v.lr_stage1, v.min_lr_stage1, max(self.s1, 1), v.warmup_stage1),
                _cosine(v.lr, v.min_lr, s2_len, v.get("warmup", 0)),
            ],
            [self.s1],
        )
        self.tx_vae = adam_l2(vae_lr, v.eps, v.weight_decay, v.get("grad_clip", 0.0))
        prior_lr = optax.join_schedules(
            [
                optax.linear_schedule(p.lr / max(p.warmup, 1), p.lr, max(p.warmup, 1)),
                optax.constant_schedule(p.lr),
            ],
            [max(p.warmup, 1)],
        )
        self.tx_prior = adam_l2(prior_lr, p.eps, p.weight_decay, p.get("grad_clip", 0.0))
        self.ema_decay = float(c.ema_decay)

    @classmethod
    def from_config(cls, config, data_shape: tuple[int, ...] | None = None) -> LSGMMethod:
        from jaxdiff.build import example_shape

        return cls(config, tuple(data_shape) if data_shape else example_shape(config))

    # -- networks --------------------------------------------------------------------------------

    def vae(self, params) -> nnx.Module:
        return nnx.merge(self.vae_graph, params)

    def eps_fn(self, prior, key: jax.Array | None = None) -> L.EpsFn:
        """Mixed eps prediction (Sec. 3.2) of prior params ``{'net', 'mixing_logit'}``."""
        net = nnx.merge(self.net_graph, prior["net"])

        def fn(z, t):
            out = net(z, t, key=key) if self.dropout else net(z, t)
            return L.mixed_eps(out, prior["mixing_logit"], z, L.var(self.process, t))

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
        opt = {"vae": self.tx_vae.init(vae), "prior": self.tx_prior.init(params["prior"])}
        if self.c.sr_vae or self.c.sr_prior:  # persistent power-iteration vectors, warmed up
            sr = {
                g: spectral_state_init(params[g], jax.random.fold_in(k_s, i))
                for i, g in enumerate(self.groups)
            }
            opt["sr"] = {g: spectral_regularizer(params[g], sr[g], 40)[1] for g in self.groups}
        ema = {"prior": jax.tree.map(jnp.copy, params["prior"])}
        return TrainState(jnp.zeros((), jnp.int32), params, opt, ema)

    def _sr(self, group: str, params, state: TrainState):
        lam = float(self.c.sr_vae if group == "vae" else self.c.sr_prior)
        if not lam or "sr" not in state.opt_state:
            return jnp.zeros(()), None
        sigma, new = spectral_regularizer(params, state.opt_state["sr"][group], 4)
        return lam * (sigma + norm_scale_penalty(params)), new

    # -- the ELBO --------------------------------------------------------------------------------

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
        recon = N.decoder_nll(self.likelihood, vae.decode(enc["z"]), x)
        log_q = sum(
            L.log_normal(*g) for g in zip(enc["z"], enc["mu"], enc["log_sigma"], strict=True)
        )
        rest = enc["mu"][self.n_top :], enc["log_sigma"][self.n_top :]
        ce_rest = sum(
            (L.normal_cross_entropy(m, s) for m, s in zip(*rest, strict=True)),
            jnp.zeros_like(recon),
        )
        return recon, log_q, vae.top_latent(enc["z"]), ce_rest, enc

    # -- train step: one branch per stage -------------------------------------------------------

    def _metrics(self, **kw) -> dict[str, Array]:
        out = {k: jnp.zeros((), jnp.float32) for k in METRICS}
        out.update({k: jnp.asarray(v, jnp.float32) for k, v in kw.items()})
        return out

    def _stage1(self, state, x, key):
        kl_coeff = self.kl_coeff(state.step)

        def loss_fn(vp):
            vae = self.vae(vp)
            enc = vae.encode(x, key)
            recon = N.decoder_nll(self.likelihood, vae.decode(enc["z"]), x)
            kl = sum(L.normal_kl(m, s) for m, s in zip(enc["mu"], enc["log_sigma"], strict=True))
            sr, sr_state = self._sr("vae", vp, state)
            loss = jnp.mean(recon + kl_coeff * kl) + sr
            return loss, (jnp.mean(recon), jnp.mean(kl), sr_state)

        (loss, (recon, kl, sr_state)), g = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params["vae"]
        )
        state, _ = apply_gradients(state, "vae", g, self.tx_vae)
        state = self._set_sr(state, vae=sr_state)
        m = self._metrics(loss=loss, nelbo=recon + kl, recon=recon, kl=kl, kl_coeff=kl_coeff)
        return state, {**m, "stage": jnp.float32(1), **self._alpha(state)}

    def _q_loss(self, vp, pp, x, key, kl_coeff, state):
        k_enc, k_ce, k_drop = jax.random.split(key, 3)
        recon, log_q, top, ce_rest, _ = self.latent_terms(vp, x, k_enc)
        eps_fn = self.eps_fn(pp, k_drop if self.dropout else None)
        ce_top, _ = self.objective.cross_entropy(eps_fn, k_ce, top)
        loss, nelbo = L.negative_elbo(recon, log_q, ce_top + ce_rest, kl_coeff)
        sr, sr_state = self._sr("vae", vp, state)
        aux = dict(nelbo=nelbo.mean(), recon=recon.mean(), kl=(nelbo - recon).mean(), top=top)
        return jnp.mean(loss) + sr, (aux, sr_state)

    def _p_loss(self, pp, top, key, state):
        k_t, k_drop = jax.random.split(key)
        eps_fn = self.eps_fn(pp, k_drop if self.dropout else None)
        loss, _ = self.objective.sgm_loss(eps_fn, k_t, jax.lax.stop_gradient(top))
        sr, sr_state = self._sr("prior", pp, state)
        return jnp.mean(loss) + sr, sr_state

    def _stage2(self, state, x, key):
        kl_coeff = self.kl_coeff(state.step)
        k_q, k_p = jax.random.split(key)
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
            pq = state.ema["prior"] if self.c.get("update_q_ema", False) else pp
            grad_fn = jax.value_and_grad(self._q_loss, has_aux=True)
            (loss, (aux, sr_v)), g_v = grad_fn(vp, pq, x, k_q, kl_coeff, state)
            (p_loss, sr_p), g_p = jax.value_and_grad(self._p_loss, has_aux=True)(
                pp, aux["top"], k_p, state
            )
        state, _ = apply_gradients(state, "vae", g_v, self.tx_vae)
        state, _ = apply_gradients(state, "prior", g_p, self.tx_prior, self.ema_decay)
        state = self._set_sr(state, vae=sr_v, prior=sr_p)
        m = self._metrics(
            loss=loss, nelbo=aux["nelbo"], recon=aux["recon"], kl=aux["kl"], kl_coeff=kl_coeff
        )
        return state, {**m, "p_loss": p_loss, "stage": jnp.float32(2), **self._alpha(state)}

    def _stage3(self, state, x, key):
        k_init, k_enc, k_p = jax.random.split(key, 3)

        def reset(state):  # a new score model, optimiser state and EMA at the stage's first step
            fresh = self.init_prior(jax.random.fold_in(jax.random.key(17), self.s2))
            return state.replace(
                params={**state.params, "prior": fresh},
                opt_state={**state.opt_state, "prior": self.tx_prior.init(fresh)},
                ema={**state.ema, "prior": jax.tree.map(jnp.copy, fresh)},
            )

        state = jax.lax.cond(state.step == self.s2, reset, lambda s: s, state)
        vp, pp = state.params["vae"], state.params["prior"]
        recon, log_q, top, ce_rest, _ = self.latent_terms(vp, x, k_enc)
        top = jax.lax.stop_gradient(top)
        (p_loss, sr_p), g_p = jax.value_and_grad(self._p_loss, has_aux=True)(pp, top, k_p, state)
        state, _ = apply_gradients(state, "prior", g_p, self.tx_prior, self.ema_decay)
        state = self._set_sr(state, prior=sr_p)
        m = self._metrics(loss=p_loss, p_loss=p_loss, recon=recon.mean(), kl_coeff=1.0)
        return state, {**m, "stage": jnp.float32(3), **self._alpha(state)}

    def _set_sr(self, state, **new):
        new = {k: v for k, v in new.items() if v is not None}
        if not new or "sr" not in state.opt_state:
            return state
        return state.replace(opt_state={**state.opt_state, "sr": {**state.opt_state["sr"], **new}})

    def _alpha(self, state) -> dict[str, Array]:
        return {"alpha": jnp.mean(jax.nn.sigmoid(state.params["prior"]["mixing_logit"]))}

    def stage(self, step: Array) -> Array:
        """0, 1, 2 for stages 1, 2, 3 at ``step``."""
        s = (step >= self.s1).astype(jnp.int32)
        return s + (step >= self.s2).astype(jnp.int32) if self.stage3 else s

    def train_step(self, state: TrainState, batch: dict[str, Any], key: jax.Array):
        x = jnp.asarray(batch["x"] if "x" in batch else batch["image"], jnp.float32)
        branches = [self._stage1, self._stage2] + ([self._stage3] if self.stage3 else [])
        if self.s1 <= 0:
            branches[0] = self._stage2
        state, metrics = jax.lax.switch(self.stage(state.step), branches, state, x, key)
        return next_step(state), metrics

    # -- sampling and likelihood ----------------------------------------------------------------

    def _prior_params(self, state, use_ema=True):
        return state.ema["prior"] if use_ema else state.params["prior"]

    def _sampler(self, name: str | None, overrides: dict[str, Any]):
        opts = {**self.sampling, **{k: v for k, v in overrides.items() if v is not None}}
        name = name or opts.get("sampler", "ode_dopri5")
        kw = {}
        if name in ("ode_tsit5", "ode_dopri5"):
            kw = {"rtol": opts.get("rtol", 1e-5), "atol": opts.get("atol", opts.get("rtol", 1e-5))}
        elif name == "pc":
            kw = {"snr": opts.get("snr", 0.16), "n_corrector": opts.get("n_corrector", 1)}
        return get_sampler(name, **kw), opts

    def sample(
        self,
        state: TrainState,
        key: jax.Array,
        num: int,
        *,
        sampler: str | None = None,
        use_ema: bool = True,
        **overrides: Any,
    ) -> tuple[Float[Array, "n ..."], dict[str, Any]]:
        """Latent probability-flow ODE (or any shared sampler) from N(0, I), then the decoder mean.

        Options (defaults from ``config.sampling``): ``sampler`` ('ode_dopri5' LSGM's RK45),
        ``rtol`` = ``atol`` (1e-5), ``t_min`` (ODE end time, 1e-5), ``steps``/``grid`` for fixed
        grids, ``denoise``, ``batch_size``, ``temp`` (of the Normal groups outside the prior).
        Returns ``(samples (num, *data_shape), {'nfe': network evaluations per sample})``.
        """
        samp, opts = self._sampler(sampler, overrides)
        prior, vae = self._prior_params(state, use_ema), state.params["vae"]
        bs = int(opts.get("batch_size", 0) or num)

        @functools.partial(jax.jit, static_argnums=(2,))
        def run(prior, vae_params, n, key):
            k_s, k_r = jax.random.split(key)
            out = sample(
                self.process,
                self.score_fn(prior),
                k_s,
                (n, *self.top_shape),
                samp,
                steps=int(opts.get("steps", 100)),
                grid=opts.get("grid", "uniform"),
                t_min=float(opts.get("t_min", 1e-5)),
                denoise=bool(opts.get("denoise", False)),
            )
            vae_mod = self.vae(vae_params)
            rest = [
                float(opts.get("temp", 1.0))
                * jax.random.normal(jax.random.fold_in(k_r, i), (n, *s))
                for i, s in enumerate(self.rest_shapes)
            ]
            x = N.decoder_mean(self.likelihood, vae_mod.decode(vae_mod.split_top(out.data) + rest))
            return x, out.nfe

        xs, nfes = [], []
        for i, start in enumerate(range(0, num, bs)):
            x, nfe = run(prior, vae, min(bs, num - start), jax.random.fold_in(key, i))
            xs.append(x)
            nfes.append(int(nfe))
        return jnp.concatenate(xs), {"nfe": int(max(nfes))}

    def nll(self, state: TrainState, key: jax.Array, x: Array, **kw: Any) -> dict[str, float]:
        """The NLL bound recon + log q - log p_ODE(z_0) + CE of the Normal groups (App. E).

        ``log p(z_0)`` of the score prior comes from the probability-flow ODE (exact divergence
        for small latents, Gaussian Hutchinson otherwise), from ``t_min`` (1e-5) to 1.
        Returns nats per example (``nll``), and ``bpd`` for 8-bit images.
        """
        opts = {"divergence": "exact" if math.prod(self.top_shape) <= 16 else "hutchinson_gaussian"}
        opts.update(t_min=1e-5, rtol=1e-5, atol=1e-5)
        opts.update(kw)
        prior = self._prior_params(state)

        @jax.jit
        def bound(vae_params, prior, x, key):
            k_e, k_l = jax.random.split(key)
            recon, log_q, top, ce_rest, _ = self.latent_terms(vae_params, x, k_e)
            out = log_likelihood(self.process, self.score_fn(prior), top, k_l, **opts)
            return recon + log_q - out.logp + ce_rest, recon, out.nfe

        nll, recon, nfe = bound(state.params["vae"], prior, jnp.asarray(x, jnp.float32), key)
        res = {"nll": float(np.mean(nll)), "recon": float(np.mean(recon)), "nfe": int(nfe)}
        if self.likelihood == "logistic":
            res["bpd"] = res["nll"] / (math.prod(self.data_shape) * math.log(2.0))
        return res

    def evaluate(self, state: TrainState, key: jax.Array, data: Any) -> dict[str, float]:
        """Toy metrics of samples (toy data) and the NLL bound on data (toy and images)."""
        from jaxdiff.eval.metrics import toy_metrics

        k_s, k_m, k_d, k_l = jax.random.split(key, 4)
        res: dict[str, Any] = {}
        n_nll = int(self.eval_cfg.get("likelihood_examples", 1000))
        source = getattr(data, "mixture", None) or getattr(data, "source", None)
        if source is not None and len(self.data_shape) == 1:
            samples, info = self.sample(state, k_s, int(self.eval_cfg.get("num_samples", 5000)))
            res.update(toy_metrics(k_m, samples, source))
            res["nfe"] = info["nfe"]
            x = np.asarray(data.sample(k_d, n_nll))
        else:
            x = np.asarray(data.batch(10**7, min(n_nll, 256))["image"])
        if self.eval_cfg.get("likelihood", True):
            lik = self.nll(state, k_l, jnp.asarray(x))
            res.update(
                {
                    f"model_{k}" if k == "nfe" else f"{k}_bound" if k == "nll" else k: v
                    for k, v in lik.items()
                }
            )
        res["alpha_mean"] = float(jax.nn.sigmoid(state.params["prior"]["mixing_logit"]).mean())
        return res
