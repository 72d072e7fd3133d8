"""LSGM imports: the official NVAE and latent NCSN++ (tools/make_lsgm_fixtures.py, NVlabs/LSGM run
on CPU torch with seeded weights) against jaxdiff's networks filled by jaxdiff.io.import_lsgm.

Parity within 1e-5 relative (float32): the posterior (latents and log q at the sample, with the
official noise fed to jaxdiff's sampler), the decoder's output and its likelihood (discretised
logistic mixture / Bernoulli), BatchNorm in training mode (batch statistics) and in evaluation
mode (the imported running averages), the score network's output and the mixed eps, for the
trained weights and the EMA. The full-size released configurations map completely.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxdiff.io import import_lsgm as IL
from jaxdiff.io.importers import CheckpointMismatch, map_problems
from jaxdiff.io.torch_zip import Namespace, load
from jaxdiff.nets import vae as vae_module
from jaxdiff.nets import zoo
from jaxdiff.nets.functional import ShapeOnlyRngs
from jaxdiff.nets.ncsnpp import NCSNpp
from jaxdiff.nets.nvae_cells import set_bn_mode
from jaxdiff.nets.vae import NVAE
from jaxdiff.objectives.decoders import decoder_nll
from jaxdiff.objectives.parameterisation import LSGMMixed
from jaxdiff.processes.scalar import VP
from jaxdiff.processes.schedules import LinearSchedule

FIX = pathlib.Path(__file__).parent / "fixtures" / "import"

# The reduced networks of tools/make_lsgm_fixtures.py, as jaxdiff keyword arguments.
VAES = {
    "lsgm_cifar_small": dict(
        image_size=32, in_ch=3, out_ch=100, num_channels=8, channel_mult=(1, 2, 2),
        num_preprocess_blocks=1, num_preprocess_cells=2, num_postprocess_blocks=1,
        num_postprocess_cells=2, num_latent_scales=2, num_groups_per_scale=2,
        num_latent_per_group=3, num_cell_per_cond_enc=1, num_cell_per_cond_dec=1,
        arch_instance="res_bnswish", progressive_input="input_skip", use_se=True,
    ),
    "lsgm_mnist_small": dict(
        image_size=32, in_ch=1, out_ch=1, num_channels=8, channel_mult=(1, 2),
        num_preprocess_blocks=1, num_preprocess_cells=2, num_postprocess_blocks=1,
        num_postprocess_cells=2, num_latent_scales=1, num_groups_per_scale=2,
        num_latent_per_group=4, num_cell_per_cond_enc=1, num_cell_per_cond_dec=1,
        arch_instance="res_mbconv", progressive_input="none", use_se=True, num_nf=2,
    ),
}  # fmt: skip
SCORES = {
    "lsgm_cifar_small": dict(image_size=8, in_ch=6, out_ch=6, ch_mult=(1, 1, 1), fir=True,
                             mixing_logit_init=-3.0),
    "lsgm_mnist_small": dict(image_size=16, in_ch=8, out_ch=8, ch_mult=(1, 1), fir=False,
                             mixing_logit_init=-6.0),
}  # fmt: skip
SCORE_COMMON = dict(nf=8, num_res_blocks=1, attn_resolutions=(16,), dropout=0.2,
                    resblock_type="biggan", skip_rescale=True, embedding_type="positional",
                    time_scale=1000.0, embedding_dim=8, init_scale=0.0)  # fmt: skip
LIKELIHOOD = {"lsgm_cifar_small": "dml", "lsgm_mnist_small": "bernoulli"}
PROCESS = {"name": "vp", "schedule": "linear", "beta_min": 0.1, "beta_max": 20.0}


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (0, 2, 3, 1))


def close(got, want, rtol: float = 1e-5) -> None:
    """Within ``rtol`` of the reference's scale (elementwise relative error fails where a value
    crosses zero)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30)
    assert err < rtol, err


def expected(name: str) -> dict:
    lsgm = {"likelihood": LIKELIHOOD[name], "num_x_bits": 8}
    score = {**SCORE_COMMON, **SCORES[name]}
    return IL.expected_args(VAES[name], score, PROCESS, lsgm)


def abstract_vae(name: str, bn_stats: bool = True) -> NVAE:
    return nnx.eval_shape(lambda: NVAE(**VAES[name], bn_stats=bn_stats, rngs=ShapeOnlyRngs()))


def abstract_score(name: str) -> NCSNpp:
    return nnx.eval_shape(lambda: NCSNpp(**SCORE_COMMON, **SCORES[name], rngs=ShapeOnlyRngs()))


def imported(name: str):
    """(abstract vae, abstract score net, ImportedLSGM)."""
    vae, score = abstract_vae(name), abstract_score(name)
    imp = IL.import_lsgm(str(FIX / f"{name}.pt"), vae, score, expected(name))
    return vae, score, imp


def run_module(module: nnx.Module, fn):
    """``fn(module)`` jitted (training-mode BN updates stay inside the trace)."""
    graph, state = nnx.split(module)
    return jax.jit(lambda st: fn(nnx.merge(graph, st)))(state)


def run(module: nnx.Module, tree: dict, fn):
    """``fn(m)`` jitted, ``m`` being ``module``'s graph with the parameters ``tree`` (one compiled
    program: eager dispatch of the NVAE's many small ops is slower than its compile)."""
    graph, state = nnx.split(module)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, tree))
    return jax.jit(lambda st: fn(nnx.merge(graph, st)))(state)


@pytest.fixture(scope="module", params=sorted(VAES))
def case(request):
    name = request.param
    return name, imported(name), dict(np.load(FIX / f"{name}.npz"))


def feed_noise(monkeypatch, rec: dict, mode: str, n: int) -> None:
    """jaxdiff's posterior sampler draws the official noise, group by group (top first)."""
    noise = iter(nhwc(rec[f"{mode}_noise_{k}"]) for k in range(n))
    monkeypatch.setattr(vae_module.rng, "normal", lambda key, shape, dtype=jnp.float32: next(noise))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_nvae_matches_official(case, monkeypatch, mode):
    """Posterior latents and log q at the sample, the decoder's output parameters and likelihood
    (of the encoded latents and of the decoder alone), in both BatchNorm modes."""
    name, (vae, _, imp), rec = case
    n = vae.S * vae.G
    feed_noise(monkeypatch, rec, mode, n)
    x = jnp.asarray(nhwc(rec["x"]))
    zs = [jnp.asarray(nhwc(rec[f"{mode}_z_{k}"])) for k in range(n)]

    def forward(m):
        set_bn_mode(m, train=mode == "train")
        return m(x, jax.random.key(0)), m.decode(zs)

    out, decoded = run(vae, imp.vae, forward)
    for k in range(n):
        z, mu, ls = out["z"][k], out["mu"][k], out["log_sigma"][k]
        close(z, nhwc(rec[f"{mode}_z_{k}"]))
        z_q = out["z_q"][k]  # the sample before the IAF cells (volume-preserving)
        log_q = -0.5 * ((z_q - mu) / jnp.exp(ls)) ** 2 - 0.5 * np.log(2 * np.pi) - ls
        close(log_q, nhwc(rec[f"{mode}_log_q_{k}"]))
    close(out["logits"][:, :8, :8], nhwc(rec[f"{mode}_logits"]))
    want = rec[f"{mode}_log_p"].reshape(2, -1).sum(1)
    close(-decoder_nll(LIKELIHOOD[name], out["logits"], x), want)
    want = rec[f"{mode}_decoded"].reshape(2, -1).sum(1)
    close(-decoder_nll(LIKELIHOOD[name], decoded, x), want)


@pytest.mark.slow
def test_score_model_and_mixed_eps_match_official(case):
    """The latent NCSN++ output and LSGM's mixed eps (1 - a) sigma_t z_t + a F, trained weights
    and the EMA (read from the optimizer state of checkpoint.pt)."""
    name, (_, score, imp), rec = case
    process = VP(LinearSchedule(0.1, 20.0))
    z_t, t = jnp.asarray(nhwc(rec["z_t"])), jnp.asarray(rec["t"])
    graph, state = nnx.split(score)
    apply = jax.jit(lambda st: nnx.merge(graph, st)(z_t, t))  # one compile for both weights
    for which, prior in (("model", imp.prior), ("ema", imp.prior_ema)):
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, prior["net"]))
        out = apply(state)
        close(out, nhwc(rec[f"out_{which}"]))
        mixed = LSGMMixed(jnp.asarray(prior["mixing_logit"])).eps(process, out, z_t, t)
        close(mixed, nhwc(rec[f"mixed_{which}"]))
    assert imp.step == 1234
    assert not np.allclose(imp.prior["mixing_logit"], imp.prior_ema["mixing_logit"])


def test_without_running_stats_the_averages_are_the_one_leftover():
    """A VAE built without BN running averages imports everything else; evaluation mode is then
    unavailable (the averages are the listed leftover)."""
    name = "lsgm_mnist_small"
    vae = abstract_vae(name, bn_stats=False)
    sd = load(FIX / f"{name}.pt")["vae_state_dict"]
    ignored = IL.lsgm_ignored(sd, vae)
    assert {k.rsplit(".", 1)[1] for k in ignored} == {
        "running_mean", "running_var", "num_batches_tracked", "weight_normalized"
    }  # fmt: skip
    shapes = {k: np.shape(v) for k, v in sd.items()}
    abstract = nnx.to_pure_dict(nnx.state(vae))
    assert map_problems(IL.nvae_map(vae), shapes, abstract, ignore=ignored) == []


def test_stored_args_are_checked():
    """The checkpoint's argparse namespace against the config: each difference listed."""
    name = "lsgm_cifar_small"
    args = load(FIX / f"{name}.pt")["args"]
    assert isinstance(args, Namespace) and args.num_latent_per_group == 3
    assert IL.args_differences(args, expected(name)) == []
    want = expected(name)
    want.update(num_latent_per_group=4, embedding_scale=1.0, beta_end=10.0)
    want["score_ch_mult"] = (1, 2, 2)
    diffs = IL.args_differences(args, want)
    assert len(diffs) == 4, diffs
    assert any(d.startswith("embedding_scale: checkpoint 1000.0") for d in diffs)
    vae, score = abstract_vae(name), abstract_score(name)
    bad = dict(want, beta_start=0.2, num_latent_per_group=3)
    with pytest.raises(CheckpointMismatch, match="differ \\(4\\)"):
        IL.import_lsgm(str(FIX / f"{name}.pt"), vae, score, bad)


def _released_config(name: str) -> ml_collections.ConfigDict:
    if name == "cifar10":
        from configs.lsgm.cifar10 import get_config
    else:
        from configs.lsgm.binarized_mnist import get_config
    return get_config()


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_full_size_released_lsgm_maps_completely(name):
    """The released configurations' VAE and score-model state dicts (README commands, recorded
    by the tools script) against configs/lsgm/cifar10.py and binarized_mnist.py: no tensor left
    over on either side, and no stored argument that differs from the config."""
    rec = json.loads((FIX / "lsgm_full_size_keys.json").read_text())[name]
    cfg = _released_config(name)
    in_ch, out_ch = (3, 100) if name == "cifar10" else (1, 1)
    vae = zoo.build_net_abstract(cfg.lsgm.vae, image_size=32, in_ch=in_ch, out_ch=out_ch,
                                 bn_stats=True)  # fmt: skip
    shapes = {k: tuple(s) for k, s in rec["vae"]}
    ignored = IL.lsgm_ignored({k: np.zeros(s) for k, s in shapes.items()}, vae)
    abstract = nnx.to_pure_dict(nnx.state(vae))
    assert map_problems(IL.nvae_map(vae), shapes, abstract, ignore=ignored) == []
    score = zoo.build_net_abstract(cfg.lsgm.score, out_ch=cfg.lsgm.score.in_ch)
    shapes = {k: tuple(s) for k, s in rec["dae"]}
    abstract = nnx.to_pure_dict(nnx.state(score))
    assert map_problems(IL.lsgm_score_map(score), shapes, abstract) == []
    plain = [c.to_dict() for c in (cfg.lsgm.vae, cfg.lsgm.score, cfg.process, cfg.lsgm)]
    assert IL.args_differences(rec["args"], IL.expected_args(*plain)) == []


def _released_nets(args: dict) -> tuple[nnx.Module, nnx.Module]:
    """(NVAE, latent NCSN++) of a released configuration, from its stored arguments."""
    size = {"cifar10": 32, "mnist": 32, "celeba_256": 256}[args["dataset"]]
    vae = dict(
        name="nvae", image_size=size, in_ch=1 if args["dataset"] == "mnist" else 3,
        out_ch={"dml": 100, "bin": 1}[args["decoder_dist"]], num_channels=args["num_channels_enc"],
        channel_mult=tuple(args["channel_mult"]), arch_instance=args["arch_instance"],
        progressive_input=args["progressive_input_vae"], use_se=args["use_se"],
        num_nf=args["num_nf"], bn_stats=True, **{k: args[k] for k in IL._VAE_ARGS},
    )  # fmt: skip
    top = size // 2 ** (args["num_preprocess_blocks"] + args["num_latent_scales"] - 1)
    c = args["num_groups_per_scale"] * args["num_latent_per_group"]
    ch_mult = {3: (1, 1, 1), 4: (1, 2, 2, 2)}[args["num_scales_dae"]]  # LSGM's table
    score = dict(
        name="ncsnpp", image_size=top, in_ch=c, out_ch=c, nf=args["num_channels_dae"],
        ch_mult=ch_mult, num_res_blocks=args["num_cell_per_scale_dae"], attn_resolutions=(16,),
        dropout=args["dropout"], fir=args["fir"], time_scale=args["embedding_scale"],
        embedding_dim=args["embedding_dim"], mixing_logit_init=args["mixing_logit_init"],
    )  # fmt: skip
    build = lambda kw: zoo.build_net_abstract(ml_collections.ConfigDict(kw))  # noqa: E731
    return build(vae), build(score)


@pytest.mark.parametrize("name", ["celebahq256", "cifar10_nll"])
def test_full_size_iaf_models_map_completely(name):
    """The released models with IAF cells (CelebA-HQ-256 quantitative: 3 scales x 8 groups, the
    input-skip pyramid, res_mbconv; CIFAR-10 best NLL: 4 groups x 45), built from their README
    arguments: every tensor of both state dicts maps, the IAF cells' included."""
    rec = json.loads((FIX / "lsgm_full_size_keys.json").read_text())[name]
    vae, score = _released_nets(rec["args"])
    assert vae.num_nf == 2
    shapes = {k: tuple(s) for k, s in rec["vae"]}
    ignored = IL.lsgm_ignored({k: np.zeros(s) for k, s in shapes.items()}, vae)
    abstract = nnx.to_pure_dict(nnx.state(vae))
    assert map_problems(IL.nvae_map(vae), shapes, abstract, ignore=ignored) == []
    shapes = {k: tuple(s) for k, s in rec["dae"]}
    abstract = nnx.to_pure_dict(nnx.state(score))
    assert map_problems(IL.lsgm_score_map(score), shapes, abstract) == []


def fixture_config(name: str = "lsgm_mnist_small") -> ml_collections.ConfigDict:
    """configs/lsgm/mnist_offline.py (binarised 32x32 digits, Bernoulli decoder) with the
    fixture's reduced NVAE and latent NCSN++."""
    from configs.lsgm.mnist_offline import get_config

    c = get_config("nvae")
    vae = {k: v for k, v in VAES[name].items() if k not in ("image_size", "in_ch", "out_ch")}
    c.lsgm.vae = ml_collections.ConfigDict({"name": "nvae", **vae})
    score = {**SCORE_COMMON, **SCORES[name]}
    del score["image_size"], score["out_ch"]
    c.lsgm.score = ml_collections.ConfigDict({"name": "ncsnpp", **score})
    c.lsgm.mixing_logit_init = SCORES[name]["mixing_logit_init"]
    c.sampling.sampler = "em"
    c.sampling.steps = 3
    c.sampling.num = 2
    return c


@pytest.mark.slow
def test_api_imports_an_lsgm_checkpoint_and_samples(tmp_path, monkeypatch, capsys):
    """``jaxdiff import`` of a train_vada.py checkpoint: the workdir restores to the official
    decoder (training and evaluation BN) and score model (EMA), at stage-2 step stage1 + 1234;
    it samples; a config that differs from the stored args is refused with the differences.

    ``drop_inactive_var`` (on in this config): the import measures the mask on the config's
    training data (as train_vada.py does; the file does not hold it) and stores it where
    jaxdiff's training keeps it; the inactive channels' mixed eps is the Normal's sigma_t z_t.
    The random fixture's channels all carry more than 0.1 nats, so the threshold is moved
    between their KLs here to get both kinds (one import for both checks: each costs minutes)."""
    from jaxdiff import api

    name = "lsgm_mnist_small"
    config = fixture_config(name)
    assert config.lsgm.drop_inactive_var
    monkeypatch.setattr(IL, "MAX_ACTIVE_BATCHES", 2)  # drop_inactive_var: measured on 2 batches
    real, seen = IL.infer_active_variables, {}

    def between(kl_fn, batches, key):  # LSGM's threshold first, then one between the KLs
        batches = list(batches)
        seen["mask"], seen["kl"] = real(kl_fn, batches, key)
        monkeypatch.setattr(IL, "INACTIVE_KL", float(np.median(seen["kl"])))
        return real(kl_fn, batches, key)

    monkeypatch.setattr(IL, "infer_active_variables", between)
    work = str(tmp_path / "run")
    meta = api.import_checkpoint(config, str(FIX / f"{name}.pt"), work)
    assert meta["step"] == config.lsgm.stage1_steps + 1234
    run = api.restore(work)
    kl = np.asarray(seen["kl"])
    assert kl.shape == (8,) and np.all(np.asarray(seen["mask"]) == 1.0)  # all > 0.1 nats
    mask = np.asarray(run.method.active(run.state))
    np.testing.assert_array_equal(mask, (kl > np.median(kl)).astype(np.float32))
    assert 0 < mask.sum() < mask.size
    assert "drop_inactive_var" not in capsys.readouterr().err  # the fixture's logits mark none
    rec = dict(np.load(FIX / f"{name}.npz"))
    x = jnp.asarray(nhwc(rec["x"]))
    stats = run.method.batch_stats(run.state)
    for mode in ("eval", "train"):
        zs = [jnp.asarray(nhwc(rec[f"{mode}_z_{k}"])) for k in range(2)]
        vae = run.method.vae(run.state.params["vae"], stats, mode == "train")
        nll = decoder_nll("bernoulli", run_module(vae, lambda m, zs=zs: m.decode(zs)), x)
        close(-nll, rec[f"{mode}_decoded"].reshape(2, -1).sum(1))
    z_t, t = jnp.asarray(nhwc(rec["z_t"])), jnp.asarray(rec["t"])
    eps = run.method.eps_fn(run.state.ema["prior"])(z_t, t)
    close(eps, nhwc(rec["mixed_ema"]))
    eps = np.asarray(run.method.eps_fn(run.state.ema["prior"], active=jnp.asarray(mask))(z_t, t))
    sigma = np.sqrt(np.asarray(run.method.process.kernel_var(t)))[:, None, None, None]
    off = mask == 0
    close(eps[..., off], (sigma * np.asarray(z_t))[..., off])  # a = sigmoid(-15) = 3e-7 of F
    samples, _ = api.sample(run, num=2)
    assert np.asarray(samples).shape == (2, 32, 32, 1) and np.all(np.isfinite(samples))
    bad = fixture_config(name)
    bad.lsgm.score.time_scale = 1.0
    with pytest.raises(CheckpointMismatch, match="embedding_scale: checkpoint 1000.0"):
        api.import_checkpoint(bad, str(FIX / f"{name}.pt"), str(tmp_path / "bad"))


def test_namespace_is_a_plain_attribute_holder():
    """The restricted reader restores ``argparse.Namespace`` as attributes only; other argparse
    names stay refused, and so does a Namespace whose state is not a dict of names."""
    import argparse
    import io
    import pickle

    from jaxdiff.io.torch_zip import TorchUnpickler

    def read(obj_bytes: bytes):
        return TorchUnpickler(io.BytesIO(obj_bytes), lambda *a: None).load()

    ns = read(pickle.dumps(argparse.Namespace(lr=1e-4, ch_mult=[1, 2], name="x"), protocol=2))
    assert isinstance(ns, Namespace) and vars(ns) == {"lr": 1e-4, "ch_mult": [1, 2], "name": "x"}
    with pytest.raises(pickle.UnpicklingError, match="argparse.ArgumentParser"):
        read(b"\x80\x02cargparse\nArgumentParser\nq\x00)\x81q\x01.")  # a parser object
    good = pickle.dumps(argparse.Namespace(a=1), protocol=2)
    forged = good[: good.index(b"}")] + b"K\x05b."  # BUILD with the int 5 as the state
    with pytest.raises(pickle.UnpicklingError, match="not a dict of names"):
        read(forged)


def test_vae_only_checkpoint(monkeypatch):
    """A ``train_vae.py`` checkpoint (no score model; its args have no score-model fields):
    the VAE imports, the prior is None; asking for a score model from it fails clearly."""
    name = "lsgm_mnist_small"
    full = load(FIX / f"{name}.pt")
    vae_args = {k: v for k, v in vars(full["args"]).items() if not k.endswith("_dae")}
    for k in ("sde_type", "beta_start", "beta_end", "sigma2_0", "embedding_scale"):
        vae_args.pop(k)
    vae_only = {"vae_state_dict": full["vae_state_dict"], "args": vae_args, "global_step": 77}
    monkeypatch.setattr(IL, "load", lambda path: vae_only)
    exp = IL.expected_args(VAES[name], {}, PROCESS, {"likelihood": "bernoulli"})
    imp = IL.import_lsgm("vae/checkpoint.pt", abstract_vae(name), None, exp)
    assert imp.prior is None and imp.step == 77
    np.testing.assert_array_equal(
        imp.vae["stem"]["kernel"], np.transpose(full["vae_state_dict"]["stem.weight"], (2, 3, 1, 0))
    )
    with pytest.raises(CheckpointMismatch, match="holds no score model"):
        IL.import_lsgm("vae/checkpoint.pt", abstract_vae(name), abstract_score(name))


def test_drop_inactive_var_finds_a_channel_without_kl():
    """LSGM's ``infer_active_variables`` on the imported CIFAR-like VAE (no IAF cells), whose
    top posterior head is zeroed for one channel: q = N(0, 1) = p there, the Monte-Carlo KL
    log q(z) - log p(z) is 0 at every sample, and the channel comes out inactive; the mask is
    the 0.1-nat threshold of the KL averaged over the batches."""
    from jaxdiff.methods.lsgm_vae_io import channel_kl

    name = "lsgm_cifar_small"
    vae, _, imp = imported(name)
    tree = jax.tree.map(np.array, imp.vae)
    lat, c = VAES[name]["num_latent_per_group"], 1
    head = tree["samplers"][0]  # the top group's posterior head: (mu, log sigma) channels
    head["kernel"][..., [c, lat + c]] = 0.0
    head["bias"][[c, lat + c]] = 0.0
    graph, state = nnx.split(vae)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, tree))

    @jax.jit
    def kl_fn(x, key):
        m = nnx.merge(graph, state)
        set_bn_mode(m, train=False)
        return channel_kl(m.encode(x, key), vae.G, 0)

    x = jnp.asarray(nhwc(np.load(FIX / f"{name}.npz")["x"]))
    batches = [x, x[:, :, ::-1]]
    mask, kl = IL.infer_active_variables(kl_fn, batches, jax.random.key(0))
    per_batch = [kl_fn(b, jax.random.fold_in(jax.random.key(0), i)) for i, b in enumerate(batches)]
    np.testing.assert_allclose(kl, (per_batch[0] + per_batch[1]) / 2, rtol=1e-6)
    assert kl.shape == (vae.G * lat,) and abs(float(kl[c])) < 1e-6 and mask[c] == 0.0
    np.testing.assert_array_equal(mask, (kl > 0.1).astype(np.float32))
    assert mask.sum() >= 1  # the other channels carry information


def test_fourier_time_embedding_matches_official():
    """LSGM's ``--embedding_type fourier`` (``RandomFourierEmbedding`` of t itself, W of size
    embedding_dim / 2 with std ``--embedding_scale``, stored as ``temb_fun.w``) is jaxdiff's
    ``random_fourier``: the imported score network gives the official output to 1e-5, and the
    stored arguments are the ones the configured network implies."""
    name = "lsgm_cifar_small"
    kw = {**SCORE_COMMON, **SCORES[name], "embedding_type": "random_fourier", "fourier_scale": 16.0}
    score = nnx.eval_shape(lambda: NCSNpp(**kw, rngs=ShapeOnlyRngs()))
    obj = load(FIX / "lsgm_fourier_score.pt")
    dsd = {k: np.asarray(v) for k, v in obj["dae_state_dict"].items()}
    tree = IL.apply_map(IL.lsgm_score_map(score), dsd, nnx.to_pure_dict(nnx.state(score)))
    np.testing.assert_array_equal(tree["fourier"]["W"], dsd["temb_fun.w"][0])
    rec = np.load(FIX / "lsgm_fourier_score.npz")
    out = run(score, tree, lambda m: m(jnp.asarray(nhwc(rec["z_t"])), jnp.asarray(rec["t"])))
    close(out, nhwc(rec["out"]))
    exp = IL.expected_args(VAES[name], kw, PROCESS, {"likelihood": "dml"})
    args = vars(obj["args"])
    assert (exp["embedding_type"], exp["embedding_scale"]) == ("fourier", 16.0)
    assert (args["embedding_type"], args["embedding_scale"]) == ("fourier", 16.0)
    log_t = nnx.eval_shape(
        lambda: NCSNpp(**{**kw, "embedding_type": "fourier"}, rngs=ShapeOnlyRngs())
    )
    with pytest.raises(CheckpointMismatch, match="of t, not log t"):
        IL.lsgm_score_map(log_t)
