"""Score-based models (VP / sub-VP / VE, and CLD through its own objective) as trainer hooks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdiff.methods.base import Method
from jaxdiff.nets.functional import PureNet, ShapeOnlyRngs, functional, init_params
from jaxdiff.processes.base import Process
from jaxdiff.solvers.likelihood import bits_per_dim, log_likelihood
from jaxdiff.solvers.samplers import Sampler, get_sampler, sample
from jaxdiff.train.state import TrainState, apply_gradients, create_state, next_step


class ScoreMethod(Method):
    """A score network trained by an objective (DSM, CLD's HSM) and sampled by any sampler.

    Args:
      objective: has ``process``, ``loss(net_fn, key, x0, net_key)``, ``score_fn(net_fn)``,
        ``net_channels(c)`` and optionally ``nll(...)``.
      make_net: ``make_net(in_channels, out_channels, rngs) -> nnx.Module`` with
        ``__call__(x, t, *, key=None)``.
      tx: the optimiser of the score network.
      ema_decay: EMA decay of the parameters used for sampling.
      data_shape: shape of one example (no batch axis).
      sampling: default sampler options: ``sampler`` name, ``steps``, ``grid``, ``t_min``,
        ``denoise``, ``rtol``, ``atol``.
      dropout: whether the network uses dropout (a key is then passed while training).
    """

    groups = ("score",)

    def __init__(
        self,
        objective: Any,
        make_net: Callable[..., nnx.Module],
        tx: optax.GradientTransformation,
        ema_decay: float,
        data_shape: tuple[int, ...],
        sampling: dict[str, Any],
        dropout: bool = False,
        likelihood: dict[str, Any] | None = None,
    ):
        self.objective = objective
        self.process: Process = objective.process
        self.tx = tx
        self.ema_decay = ema_decay
        self.data_shape = tuple(data_shape)
        self.sampling = dict(sampling)
        self.dropout = dropout
        self.likelihood = dict(likelihood or {})
        cin, cout = objective.net_channels(self.data_shape[-1])
        self._make = functools.partial(make_net, cin, cout)
        abstract = nnx.eval_shape(lambda: self._make(rngs=ShapeOnlyRngs()))
        self.net: PureNet = functional(abstract)[0]

    # -- hooks -----------------------------------------------------------------------------------

    def init(self, key: jax.Array, batch: dict[str, Any]) -> TrainState:
        del batch
        return create_state({"score": init_params(self._make, key)}, {"score": self.tx}, ("score",))

    def net_fn(self, params):
        return functools.partial(self.net.apply, params)

    def train_step(self, state, batch, key):
        x0 = batch["x"]
        k_loss, k_drop = jax.random.split(key)

        def loss_fn(params):
            per_example, _ = self.objective.loss(
                self.net_fn(params), k_loss, x0, net_key=k_drop if self.dropout else None
            )
            return jnp.mean(per_example)

        loss, grads = jax.value_and_grad(loss_fn)(state.params["score"])
        state, metrics = apply_gradients(state, "score", grads, self.tx, self.ema_decay)
        return next_step(state), {"loss": loss, **metrics}

    def score_fn(self, params):
        return self.objective.score_fn(self.net_fn(params))

    def make_sampler(self, name: str | None = None, **overrides: Any) -> tuple[Sampler, dict]:
        """The sampler and grid options from the defaults in ``sampling`` and ``overrides``."""
        opts = {**self.sampling, **{k: v for k, v in overrides.items() if v is not None}}
        name = name or opts.pop("sampler", "em")
        opts.pop("sampler", None)
        sampler_kw = {k: opts.pop(k) for k in ("rtol", "atol", "snr", "n_corrector") if k in opts}
        if not name.startswith("ode_") or name in ("ode_euler", "ode_heun"):
            sampler_kw.pop("rtol", None)
            sampler_kw.pop("atol", None)
        if name != "pc":
            sampler_kw.pop("snr", None)
            sampler_kw.pop("n_corrector", None)
        return get_sampler(name, **sampler_kw), opts

    def sample(self, state, key, num, *, sampler: str | None = None, **overrides):
        samp, opts = self.make_sampler(sampler, **overrides)
        params = state.ema.get("score", state.params["score"])
        shape = (num, *self.data_shape)

        @jax.jit
        def run(params, key):
            return sample(
                self.process,
                self.score_fn(params),
                key,
                shape,
                samp,
                steps=int(opts.get("steps", 1000)),
                grid=opts.get("grid", "uniform"),
                t_min=float(opts.get("t_min", 1e-3)),
                denoise=bool(opts.get("denoise", True)),
            )

        out = run(params, key)
        return out.data, {"nfe": int(out.nfe)}

    def nll(self, state, key, x0, **kw) -> dict[str, Any]:
        """Negative log-likelihood (nats per example, and bits/dim for images) of data ``x0``."""
        params = state.ema.get("score", state.params["score"])
        opts = {**self.likelihood, **kw}
        if hasattr(self.objective, "nll"):
            return self.objective.nll(self.score_fn(params), key, x0, **opts)
        out = jax.jit(lambda p, x, k: log_likelihood(self.process, self.score_fn(p), x, k, **opts))(
            params, x0, key
        )
        nll = -np.asarray(out.logp)
        res = {"nll": float(nll.mean()), "nfe": int(out.nfe)}
        if len(self.data_shape) == 3:
            res["bpd"] = float(bits_per_dim(-nll, int(np.prod(self.data_shape))).mean())
        return res

    def evaluate(self, state, key, data, *, num_samples: int = 5000, nll_examples: int = 1000):
        """Toy metrics of samples (toy data) and the NLL of held-out data (toy and images)."""
        from jaxdiff.eval.metrics import toy_metrics

        k_s, k_m, k_d, k_l = jax.random.split(key, 4)
        res: dict[str, Any] = {}
        source = getattr(data, "mixture", None) or getattr(data, "source", None)
        if source is not None:  # toy data
            samples, info = self.sample(state, k_s, num_samples)
            res.update(toy_metrics(k_m, samples, source))
            res["nfe"] = info["nfe"]
            x = np.asarray(data.sample(k_d, nll_examples))
        else:  # images: a held-out-style batch from the data stream (seeded apart from training)
            x = np.asarray(data.batch(10**7, min(nll_examples, 256))["image"])
        lik = self.nll(state, k_l, jnp.asarray(x))
        # The model's own likelihood of true data (probability-flow ODE), kept apart from
        # toy_metrics' "nll" (true density of the model's samples).
        res.update({f"model_{k}": v for k, v in lik.items()})
        return res
