"""Score-based models (VP / sub-VP / VE, and CLD through its own objective) as trainer hooks."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdiff import rng
from jaxdiff.methods.sampling import SamplingSpec
from jaxdiff.nets.functional import PureNet, ShapeOnlyRngs, functional, init_params
from jaxdiff.processes.base import Process
from jaxdiff.solvers.likelihood import bits_per_dim, log_likelihood
from jaxdiff.train.protocol import Method, PhaseGrads
from jaxdiff.train.sampling import draw
from jaxdiff.train.state import TrainState, create_state


class ScoreMethod(Method):
    """A score network trained by an objective (DSM, CLD's HSM) and sampled by any sampler.

    Args:
      objective: has ``process``, ``loss(net_fn, keys, x0, net_key)``, ``score_fn(net_fn)``,
        ``net_channels(c)`` and optionally ``nll(...)``.
      make_net: ``make_net(in_channels, out_channels, rngs) -> nnx.Module`` with
        ``__call__(x, t, *, key=None)``.
      tx: the optimiser of the score network.
      ema_decay: EMA decay of the parameters used for sampling.
      data_shape: shape of one example (no batch axis).
      sampling: the sampler and its grid.
      dropout: whether the network uses dropout (a key is then passed while training).
      likelihood: keyword options of ``log_likelihood`` (``divergence``); None: :meth:`evaluate`
        reports no likelihood.
      eval_samples, eval_examples, sample_batch: sizes used by :meth:`evaluate`.
    """

    groups = ("score",)

    def __init__(
        self,
        objective: Any,
        make_net: Callable[..., nnx.Module],
        tx: optax.GradientTransformation,
        ema_decay: float,
        data_shape: tuple[int, ...],
        sampling: SamplingSpec,
        dropout: bool = False,
        likelihood: dict[str, Any] | None = None,
        eval_samples: int = 5000,
        eval_examples: int = 1000,
        sample_batch: int | None = None,
    ):
        self.objective = objective
        self.process: Process = objective.process
        self.optimizers = {"score": tx}
        self.ema_decay = {"score": float(ema_decay)}
        self.data_shape = tuple(data_shape)
        self.sampling = sampling
        self.dropout = dropout
        self.likelihood = likelihood
        self.eval_samples, self.eval_examples = eval_samples, eval_examples
        self.sample_batch = sample_batch
        cin, cout = objective.net_channels(self.data_shape[-1])
        self._make = functools.partial(make_net, cin, cout)
        abstract = nnx.eval_shape(lambda: self._make(rngs=ShapeOnlyRngs()))
        self.net: PureNet = functional(abstract)[0]

    def with_sampling(self, sampling: SamplingSpec) -> ScoreMethod:
        """A copy that samples with ``sampling``."""
        new = copy.copy(self)
        new.sampling = sampling
        return new

    # -- hooks -----------------------------------------------------------------------------------

    def init(self, key: jax.Array, batch: dict[str, Any]) -> TrainState:
        del batch
        tx = self.optimizers["score"]
        return create_state({"score": init_params(self._make, key)}, {"score": tx}, ("score",))

    def net_fn(self, params):
        return functools.partial(self.net.apply, params)

    def grads(self, phase, state, batch, keys):
        del phase
        x0 = batch["x"]
        k_loss, k_drop = rng.split(keys)
        # dropout masks come from one key per (micro-)batch: the one per-batch draw left
        net_key = k_drop[0] if self.dropout else None

        def loss_fn(params):
            per_example, _ = self.objective.loss(self.net_fn(params), k_loss, x0, net_key=net_key)
            return jnp.mean(per_example)

        loss, g = jax.value_and_grad(loss_fn)(state.params["score"])
        return PhaseGrads({"score": g}, {"loss": loss})

    def score_fn(self, params):
        return self.objective.score_fn(self.net_fn(params))

    def sampling_params(self, state: TrainState) -> Any:
        return state.ema.get("score", state.params["score"])

    def sample_fn(self, params, key, num):
        out = self.sampling.run(self.process, self.score_fn(params), key, (num, *self.data_shape))
        return out.data, out.nfe

    # -- evaluation ------------------------------------------------------------------------------

    def nll(self, state, key, x0, **kw) -> dict[str, Any]:
        """Negative log-likelihood of data ``x0`` (already dequantised for images): mean ``nll``
        (nats per example), ``bpd`` for images, ``nfe``; the objective's own bound where it has
        one (CLD's augmented bound). Compiled once per option set and batch shape."""
        opts = {**(self.likelihood or {}), **kw}
        out = self._nll_fn(tuple(sorted(opts.items())))(self.sampling_params(state), x0, key)
        out = jax.device_get(out)
        res = {k: float(np.mean(v)) for k, v in out.items() if k != "nfe"}
        return {**res, "nfe": int(out["nfe"])}

    def _nll_fn(self, opts: tuple[tuple[str, Any], ...]):
        cache = self.__dict__.setdefault("_nll_cache", {})
        if opts not in cache:
            kw = dict(opts)
            dims = int(np.prod(self.data_shape))
            images = len(self.data_shape) == 3

            def fn(params, x, key):
                score_fn = self.score_fn(params)
                if hasattr(self.objective, "nll_arrays"):
                    return self.objective.nll_arrays(score_fn, key, x, **kw)
                out = log_likelihood(self.process, score_fn, x, key, **kw)
                res = {"nll": -out.logp, "nfe": out.nfe}
                if images:
                    res["bpd"] = bits_per_dim(out.logp, dims)
                return res

            cache[opts] = jax.jit(fn)
        return cache[opts]

    def evaluate(self, state, key, data):
        """Toy metrics of samples and the model NLL of fresh data (toy data). Images get their
        bits/dim on the test split, dequantised, from ``jaxdiff.api.heldout_likelihood``."""
        from jaxdiff.eval.metrics import toy_metrics

        k_s, k_m, k_d, k_l = jax.random.split(key, 4)
        source = getattr(data, "mixture", None) or getattr(data, "source", None)
        if source is None:  # images
            return {}
        samples, info = draw(
            self.sample_fn, self.sampling_params(state), k_s, self.eval_samples, self.sample_batch
        )
        res: dict[str, Any] = {**toy_metrics(k_m, jnp.asarray(samples), source)}
        res["nfe"] = info["nfe"]
        x = np.asarray(data.sample(k_d, self.eval_examples))
        if self.likelihood is None:
            return res
        lik = self.nll(state, k_l, jnp.asarray(x))
        # The model's own likelihood of true data (probability-flow ODE), kept apart from
        # toy_metrics' "nll" (true density of the model's samples).
        res.update({f"model_{k}": v for k, v in lik.items()})
        return res
