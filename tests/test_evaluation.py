"""Evaluation protocol: held-out splits, dequantised bits/dim, streamed samples, best checkpoint."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import api, build
from jaxdiff.data.images import digits_data
from jaxdiff.solvers.likelihood import bits_per_dim
from jaxdiff.train.sampling import batches, draw


def test_offline_test_split_is_held_out_and_fixed():
    train, test, full = (digits_data(split=s) for s in ("train", "test", "all"))
    assert (train.num_examples, test.num_examples, full.num_examples) == (1500, 297, 1797)
    rows = {full.images(i, 1).tobytes() for i in range(full.num_examples)}
    train_rows = {train.images(i, 1).tobytes() for i in range(train.num_examples)}
    test_rows = [test.images(i, 1).tobytes() for i in range(test.num_examples)]
    assert all(r in rows for r in test_rows)
    # the digits set holds a few exact duplicates; the split is by index, not by content
    assert sum(r in train_rows for r in test_rows) < 5


def _digits_config(**eval_kw):
    from configs.vp.digits import get_config

    c = get_config()
    for k, v in eval_kw.items():
        c.eval[k] = v
    return c


def test_a_held_out_split_that_the_training_data_contain_is_refused():
    c = _digits_config()
    c.data.split = "all"
    with pytest.raises(build.ConfigError, match="not held out"):
        build.build_eval_data(c)
    c.data.split = "train"
    c.eval.split = "train"
    with pytest.raises(build.ConfigError, match="not held out"):
        build.build_eval_data(c)
    c.eval.split = "test"
    assert build.build_eval_data(c).num_examples == 297
    c.eval.split = ""
    assert build.build_eval_data(c) is None


class _Uniform:
    """A model whose density is uniform on [-1, 1]^D: exactly 8 bits/dim of 8-bit data after
    dequantisation (log2 256), whatever the images. It records what it was given."""

    def __init__(self, shape):
        self.data_shape, self.seen = shape, []

    def nll(self, state, key, x):
        x = np.asarray(x)
        self.seen.append(x)
        d = int(np.prod(self.data_shape))
        inside = np.all((x >= -1) & (x < 1), axis=(1, 2, 3))
        logp = np.where(inside, -d * np.log(2.0), -np.inf)
        return {"nll": float(np.mean(-logp)), "bpd": float(np.mean(bits_per_dim(logp, d))),
                "nfe": 0}  # fmt: skip


class _Run(NamedTuple):
    config: Any
    method: Any
    state: Any
    data: Any


def test_heldout_bits_per_dim_dequantises_into_the_right_bins():
    c = _digits_config(split="test")
    held_out = build.build_eval_data(c)
    model = _Uniform(held_out.shape)
    res = api.heldout_likelihood(_Run(c, model, None, None), num=100, seed=3, batch_size=32)
    # the uniform density on [-1, 1]^D is 1 bit/dim in [-1, 1] units: 8 bits/dim of 8-bit data
    assert res["test_bpd"] == pytest.approx(8.0, abs=1e-9)
    assert res["test_examples"] == 100 and res["test_split"] == "test"
    x = np.concatenate(model.seen)
    assert x.shape == (100, *held_out.shape) and [len(s) for s in model.seen] == [32, 32, 32, 4]
    k = np.rint((held_out.images(0, 100) + 1) * 127.5)
    # x = 2 (k + u) / 256 - 1 with u ~ U[0, 1): the bin of x is the pixel's 8-bit value
    u = (x + 1) * 128 - k
    assert np.all(u >= 0) and np.all(u < 1)
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    again = _Uniform(held_out.shape)
    api.heldout_likelihood(_Run(c, again, None, None), num=100, seed=3, batch_size=32)
    np.testing.assert_array_equal(np.concatenate(again.seen), x)  # seeded: the same noise


def test_discrete_models_see_the_8_bit_values():
    c = _digits_config(split="test")
    model = _Uniform(build.build_eval_data(c).shape)
    model.discrete_data = True
    api.heldout_likelihood(_Run(c, model, None, None), num=10)
    k = (model.seen[0] + 1) * 127.5
    np.testing.assert_allclose(k, np.rint(k), atol=1e-4)


def test_score_model_bits_per_dim_matches_the_analytic_gaussian():
    """A VP model with the exact score of N(0, s^2 I) data: the PF-ODE bits/dim of dequantised
    held-out images equals the closed form -log N(x; 0, s^2 I) / (D ln 2) + 7 (to ODE error)."""
    from jaxdiff.methods.sampling import SamplingSpec
    from jaxdiff.methods.score import ScoreMethod
    from jaxdiff.processes import VP
    from jaxdiff.solvers.samplers import make_sampler

    s2 = 0.3

    class GaussianObjective:
        process = VP()

        def net_channels(self, c):
            return c, c

        def score_fn(self, net_fn):
            def score(y, t):
                m = self.process.marginal(jnp.zeros_like(y), t, var0=s2)
                return m.score(y)

            return score

    import flax.nnx as nnx

    class Tiny(nnx.Module):
        def __init__(self, cin, cout, rngs):
            self.w = nnx.Param(jnp.zeros(()))

        def __call__(self, x, t, key=None):
            return x * self.w

    method = ScoreMethod(
        GaussianObjective(), Tiny, None, 0.0, (4, 4, 1),
        SamplingSpec(make_sampler("ode_tsit5")), likelihood={"divergence": "exact"},
    )  # fmt: skip
    state = type("S", (), {"ema": {}, "params": {"score": {"w": jnp.zeros(())}}})()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4, 4, 1)) * np.sqrt(s2), jnp.float32)
    out = method.nll(state, jax.random.key(0), x, rtol=1e-6, atol=1e-6, t_min=1e-5)
    d = 16
    exact = 0.5 * np.sum(np.asarray(x) ** 2, axis=(1, 2, 3)) / s2 + 0.5 * d * np.log(2 * np.pi * s2)
    assert out["nll"] == pytest.approx(exact.mean(), rel=2e-3)
    assert out["bpd"] == pytest.approx(exact.mean() / (d * np.log(2)) + 7, rel=1e-3)


def _counting_sample_fn(params, key, num):
    return jnp.full((num, 3), num, jnp.float32) + jax.random.normal(key, (num, 3)), jnp.int32(7)


def test_batches_stream_and_draw_concatenates_them():
    info: dict[str, Any] = {}
    key = jax.random.key(1)
    chunks = list(batches(_counting_sample_fn, None, key, 10, 4, info=info))
    assert [len(c) for c in chunks] == [4, 4, 2] and info["batches"] == 3 and info["nfe"] == 7
    whole, meta = draw(_counting_sample_fn, None, key, 10, 4)
    np.testing.assert_array_equal(whole, np.concatenate(chunks))
    assert meta["nfe"] == 7


_CLD_STREAM = r"""
import json, resource
import jax, numpy as np
from configs.cld.cifar10 import get_config
from jaxdiff import build
from jaxdiff.nets.functional import init_params
from jaxdiff.train import sampling

c = get_config()
assert c.sampling.num == 50_000 and c.sampling.batch_size == 1000
c.sampling.batch_size = 250  # the config's 1000 per call costs ~35 s each on this CPU
for k, v in dict(nf=4, ch_mult=(1,), num_res_blocks=1, attn_resolutions=()).items():
    c.model[k] = v
method = build.build_method(c, (32, 32, 3), sampler="em", steps=1)
params = {"score": init_params(method._make, jax.random.key(0))}
state = type("S", (), {"ema": params, "params": params})()
shapes, seen, info = [], 0, {}
for chunk in sampling.batches(method.sample_fn, method.sampling_params(state),
                              jax.random.key(0), 1000, method.sample_batch, info=info):
    shapes.append(list(chunk.shape))
    seen += len(chunk)
    assert np.all(np.isfinite(chunk))
print(json.dumps({"devices": jax.device_count(), "shapes": shapes, "seen": seen,
                  "batches": info["batches"], "nfe": info["nfe"]}))
"""


@pytest.mark.slow
def test_cld_cifar10_samples_arrive_a_sharded_batch_at_a_time():
    """The CLD CIFAR-10 config's sampling path (a 4-channel NCSN++, one EM step) on 8 CPU
    devices: the samples arrive batch by batch, each batch sharded over the devices, so 50,000
    images are never one array (``api.sample_quality`` feeds them to Inception as they come)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run(
        [sys.executable, "-c", _CLD_STREAM], env=env, capture_output=True, text=True,
        timeout=900, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rematerialization" not in out.stderr  # no replication of a batch onto one device
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["devices"] == 8 and res["seen"] == 1000 and res["batches"] == 4
    assert res["shapes"] == [[250, 32, 32, 3]] * 4
    assert res["nfe"] == 2  # one EM step and the denoising step


def test_in_training_evaluation_logs_and_keeps_the_best_checkpoint(tmp_path):
    from configs.toy.vp import get_config

    c = get_config()
    c.training.num_steps, c.training.n_jitted_steps = 60, 10
    c.training.log_every, c.training.ckpt_every, c.training.eval_every = 10, 30, 20
    c.training.eval_at_end = False
    c.sampling.steps, c.sampling.num = 20, 64
    c.eval.num_samples, c.eval.likelihood = 500, False
    work = str(tmp_path / "run")
    api.train(c, work, progress=False)
    rows = [json.loads(line) for line in open(f"{work}/metrics.jsonl")]
    evals = {r["step"]: r["eval/sw_ratio"] for r in rows if "eval/sw_ratio" in r}
    assert sorted(evals) == [20, 40]  # every 20 steps, the last step left to the end of run
    best = api.best_record(work)
    assert best["metric"] == "sw_ratio" and best["value"] == pytest.approx(min(evals.values()))
    assert evals[best["step"]] == pytest.approx(best["value"])
    run = api.restore(work, best=True)
    assert int(run.state.step) == best["step"]
    assert int(api.restore(work).state.step) == 60


def test_report_measures_runs_on_one_clock(tmp_path):
    import shutil

    from configs.toy.vp import get_config
    from jaxdiff.report import report

    c = get_config()
    c.training.num_steps, c.training.n_jitted_steps, c.training.log_every = 40, 20, 20
    c.training.eval_at_end = False
    c.sampling.steps, c.sampling.num = 20, 16
    fast = str(tmp_path / "em20")
    api.train(c, fast, progress=False)
    slow = str(tmp_path / "em80")
    shutil.copytree(fast, slow)
    stored = json.loads(open(f"{slow}/config.json").read())
    stored["sampling"]["steps"] = 80
    open(f"{slow}/config.json", "w").write(json.dumps(stored))
    rows = report([fast, slow], str(tmp_path / "out"), num=400)
    assert [r["nfe"] for r in rows] == [21, 81]  # EM steps and the denoising step
    assert all(r["quality_name"] == "SW/floor" and np.isfinite(r["quality"]) for r in rows)
    assert all(r["num_modes"] == 25 and r["train_steps"] == 40 for r in rows)
    assert all(r["seconds_per_1000"] > 0 for r in rows)
    md = open(tmp_path / "out" / "report.md").read()
    assert "| em20 |" in md and "| em80 |" in md
    assert (tmp_path / "out" / "report_25gaussians.png").stat().st_size > 1000
    with pytest.raises(api.WorkdirError, match="no jaxdiff run"):
        report([fast, str(tmp_path)], str(tmp_path / "out2"))
