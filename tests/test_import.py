"""Official PyTorch checkpoints into jaxdiff: output parity with the official networks, complete
name-and-shape maps of the full-size released networks, and the ``jaxdiff import`` command.

The fixtures (tests/fixtures/import/, made by tools/make_import_fixtures.py with CPU torch and
the official code) hold reduced-width official networks with seeded random weights, saved as the
official code saves them, fixed inputs and the official outputs. No torch here.
"""

from __future__ import annotations

import importlib
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff import build
from jaxdiff.io import importers
from jaxdiff.nets import zoo
from jaxdiff.nets.functional import ShapeOnlyRngs, functional

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "import"
SMALL = dict(nf=8, ch_mult=(1, 2), num_res_blocks=2, attn_resolutions=(8,))
# released model -> (jaxdiff config module, full-size network config)
RELEASED = {
    "vp_ddpmpp": ("configs.vp.cifar10_ddpmpp", zoo.ddpmpp_cifar10_continuous),
    "vp_ncsnpp": ("configs.vp.cifar10_ncsnpp", zoo.ncsnpp_cifar10_vp_continuous),
    "ve_ncsnpp": ("configs.ve.cifar10_ncsnpp", zoo.ncsnpp_cifar10_ve_continuous),
}


def rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def small_method(kind: str, **model):
    import importlib

    module = RELEASED[kind][0] if kind in RELEASED else kind
    config = importlib.import_module(module).get_config()
    config.model.update(dict(SMALL, **model))
    method = build.build_method(config, data_shape=(16, 16, 3))
    net = nnx.eval_shape(lambda: method._make(rngs=ShapeOnlyRngs()))
    return method, net


@pytest.mark.parametrize("kind", sorted(RELEASED))
def test_score_sde_outputs_match_the_official_network(kind):
    """Raw network output (trained and EMA weights) and the score through jaxdiff's objective
    equal score_sde_pytorch's ``model(x, labels)`` and ``get_score_fn`` to 1e-5 relative.

    VE: the official model works on [0, 1] data x'; jaxdiff runs it on x = 2x' - 1, where the
    score is half the official one (d x' / d x = 1/2), and so is the network's output."""
    method, net = small_method(kind)
    imported = importers.import_score_sde(str(FIX / f"score_sde_{kind}.pth"), net)
    assert imported.step == 1234
    fx = np.load(FIX / f"score_sde_{kind}.npz")
    x = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1)
    t = jnp.asarray(fx["t"])
    factor = 0.5 if kind.startswith("ve") else 1.0
    if kind.startswith("ve"):
        x = 2.0 * x - 1.0
    for which, params in (("model", imported.params), ("ema", imported.ema)):
        out = np.asarray(method.net.apply(params, x, t)).transpose(0, 3, 1, 2)
        assert rel_err(out, factor * fx[f"out_{which}"]) < 1e-5, which
        score = np.asarray(method.score_fn(params)(x, t)).transpose(0, 3, 1, 2)
        assert rel_err(score, factor * fx[f"score_{which}"]) < 1e-5, which
    # the trained weights and their EMA differ, so the comparison above tells them apart
    assert rel_err(fx["out_model"], fx["out_ema"]) > 0.1


def test_discrete_ve_model_matches_the_official_network():
    """score_sde's discrete-time VE NCSN++ (``ve/cifar10_ncsnpp``): the integer label
    ``round((1 - t) 999)`` (t = 0.3004 rounds 698.8 up), its positional embedding and the output
    divided by ``sigmas[label]`` give the official ``model(x, labels)`` and discrete
    ``get_score_fn`` to 1e-5, on x = 2x' - 1 where both are half the official ones."""
    method, net = small_method("configs.ve.cifar10_ncsnpp_discrete", nf=4, num_res_blocks=1)
    imported = importers.import_score_sde(str(FIX / "score_sde_ve_ncsnpp_discrete.pth"), net)
    fx = np.load(FIX / "score_sde_ve_ncsnpp_discrete.npz")
    x = 2.0 * jnp.asarray(fx["x"]).transpose(0, 2, 3, 1) - 1.0
    t = jnp.asarray(fx["t"])
    for which, params in (("model", imported.params), ("ema", imported.ema)):
        out = np.asarray(method.net.apply(params, x, t)).transpose(0, 3, 1, 2)
        assert rel_err(out, 0.5 * fx[f"out_{which}"]) < 1e-5, which
        score = np.asarray(method.score_fn(params)(x, t)).transpose(0, 3, 1, 2)
        assert rel_err(score, 0.5 * fx[f"score_{which}"]) < 1e-5, which
    # the grid's sigma is piecewise constant in t: a time within the same label gives the same
    tt = jnp.asarray([0.3004 + 2e-4, 0.8 - 3e-4])
    np.testing.assert_allclose(net.used_sigma(tt), net.used_sigma(t), rtol=1e-6)
    _, other = small_method(
        "configs.ve.cifar10_ncsnpp_discrete", nf=4, num_res_blocks=1, num_scales=500
    )
    with pytest.raises(
        importers.CheckpointMismatch, match="checkpoint 1000, config num_scales 500"
    ):
        importers.import_score_sde(str(FIX / "score_sde_ve_ncsnpp_discrete.pth"), other)


def test_discrete_vp_model_gives_the_official_score(tmp_path):
    """score_sde's discrete-time VP DDPM++ (``vp/cifar10_ddpmpp``) is the continuous DDPM++
    network (label 999 t) with the score ``-model / sqrt(1 - alphabar_j)``, ``j = floor(999 t)``,
    on the chain ``beta = linspace(0.1, 20, 1000) / 1000``: jaxdiff's eps score through the VP
    process equals the official discrete ``get_score_fn`` to 1e-5, and its output is the raw
    network's times ``std(t) / sqrt(1 - alphabar_j)`` (closed form in float64 here)."""
    method, net = small_method("configs.vp.cifar10_ddpmpp_discrete")
    imported = importers.import_score_sde(str(FIX / "score_sde_vp_ddpmpp.pth"), net)
    fx = np.load(FIX / "score_sde_vp_ddpmpp.npz")
    x = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1)
    t = np.asarray(fx["t"], np.float64)
    alphabar = np.cumprod(1.0 - np.linspace(0.1, 20.0, 1000) / 1000)
    std = np.sqrt(1.0 - np.exp(-0.5 * t**2 * 19.9 - 0.1 * t))
    ratio = std / np.sqrt(1.0 - alphabar[np.floor(999 * t).astype(int)])
    for which, params in (("model", imported.params), ("ema", imported.ema)):
        out = np.asarray(method.net.apply(params, x, jnp.asarray(fx["t"])))
        expected = fx[f"out_{which}"] * ratio[:, None, None, None]
        assert rel_err(out.transpose(0, 3, 1, 2), expected) < 1e-5, which
        score = np.asarray(method.score_fn(params)(x, jnp.asarray(fx["t"])))
        assert rel_err(score.transpose(0, 3, 1, 2), fx[f"score_discrete_{which}"]) < 1e-5
    # the two stds differ here by 7e-5 and 3e-5: the comparison tells the scores apart
    assert rel_err(fx["score_model"], fx["score_discrete_model"]) > 3e-5
    from configs.vp.cifar10_ddpmpp_discrete import get_config
    from jaxdiff import api

    config = get_config()
    config.process.beta_max = 10.0  # the network's chain would not be the process's
    with pytest.raises(importers.CheckpointMismatch, match="VP betas differ"):
        api.import_checkpoint(config, str(FIX / "score_sde_vp_ddpmpp.pth"), str(tmp_path / "w"))
    assert not (tmp_path / "w" / "checkpoints").exists()


# released model -> (jaxdiff config, its entry in full_size_keys.json)
RELEASED_MORE = {
    "vp/cifar10_ddpmpp": ("configs.vp.cifar10_ddpmpp_discrete", "vp_ddpmpp"),
    "ve/cifar10_ncsnpp": ("configs.ve.cifar10_ncsnpp_discrete", "ve_ncsnpp_discrete"),
    "vp/cifar10_ddpmpp_deep_continuous": ("configs.vp.cifar10_ddpmpp_deep", "vp_ddpmpp_deep"),
    "subvp/cifar10_ddpmpp_deep_continuous": ("configs.subvp.cifar10_ddpmpp_deep", "vp_ddpmpp_deep"),
    "ve/cifar10_ncsnpp_deep_continuous": ("configs.ve.cifar10_ncsnpp_deep", "ve_ncsnpp_deep"),
    "ve/celebahq_256_ncsnpp_continuous": ("configs.ve.celebahq256_ncsnpp", "ve_ncsnpp_celebahq256"),
    # church's network is CelebA-HQ 256's (only the sigmas buffer's values differ)
    "ve/church_ncsnpp_continuous": ("configs.ve.church256_ncsnpp", "ve_ncsnpp_celebahq256"),
    "ve/bedroom_ncsnpp_continuous": ("configs.ve.bedroom256_ncsnpp", "ve_ncsnpp_celebahq256"),
    "ve/ffhq_256_ncsnpp_continuous": ("configs.ve.ffhq256_ncsnpp", "ve_ncsnpp_celebahq256"),
    "vp/cifar10_ddpm": ("configs.vp.cifar10_ddpm", "ddpm"),
    "vp/cifar10_ddpm_continuous": ("configs.vp.cifar10_ddpm_continuous", "ddpm"),
    "subvp/cifar10_ddpm_continuous": ("configs.subvp.cifar10_ddpm_continuous", "ddpm"),
}


@pytest.mark.parametrize("name", sorted(RELEASED_MORE))
def test_full_size_discrete_deep_and_256_networks_map_completely(name):
    """The discrete-time, deep and CelebA-HQ 256 released models: the network of each config
    maps onto the full-size official state dict both ways, with the official parameter and EMA
    counts."""
    import importlib

    module, entry = RELEASED_MORE[name]
    model = importlib.import_module(module).get_config().model
    record = json.loads((FIX / "full_size_keys.json").read_text())["score_sde"][entry]
    shapes = importers.strip_prefix({k: tuple(s) for k, s in record["model"]})
    net = zoo.build_net_abstract(model)
    abstract = nnx.to_pure_dict(nnx.state(net))
    entries = importers.ncsnpp_map(net)
    assert importers.map_problems(entries, shapes, abstract, importers.SCORE_SDE_BUFFERS) == []
    assert (
        len([k for k in shapes if not importers._score_sde_frozen(k)])
        == record["ema_shadow_params"]
    )
    assert zoo.count_params_abstract(model) == record["num_params"]


def seeded_state_dict(shapes: list, seed: int) -> dict[str, np.ndarray]:
    """tools/make_import_fixtures.py's ``seeded_state_dict``: the DDPM fixture's official
    weights, drawn again from its parameter list ([key, shape], ``named_parameters`` order)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes:
        z = rng.standard_normal(shape)
        if len(shape) == 1:
            base = 1.0 if "GroupNorm" in key and key.endswith("weight") else 0.0
            out[key] = (base + 0.2 * z).astype(np.float32)
        else:
            fan_in = int(np.prod(shape)) // (shape[1] if key.endswith(".W") else shape[0])
            out[key] = (z / np.sqrt(fan_in)).astype(np.float32)
    return out


DDPM_SMALL = dict(nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), image_size=16)
DDPM_SCORES = {  # jaxdiff config -> the official score of the fixture it gives
    "configs.vp.cifar10_ddpm_continuous": "score_vp",
    "configs.vp.cifar10_ddpm": "score_vp_discrete",
    "configs.subvp.cifar10_ddpm_continuous": "score_subvp",
}


@pytest.mark.parametrize("module", sorted(DDPM_SCORES))
def test_ddpm_matches_the_official_network(module):
    """score_sde's DDPM U-Net (``models/ddpm.py``: 32-group GroupNorms, DDPM blocks, no skip
    rescaling) at width 32: jaxdiff's ``ddpm`` network through the NCSN++ map gives the official
    ``model(x, 999 t)`` (continuous configs) and each config's score equals the official
    ``get_score_fn`` of its SDE (VP, VP discrete, sub-VP) to 1e-5 relative."""
    method, net = small_method(module, **DDPM_SMALL)
    fx = np.load(FIX / "score_sde_ddpm.npz")
    sd = seeded_state_dict(json.loads(str(fx["shapes"])), seed=1)
    abstract = nnx.to_pure_dict(nnx.state(net))
    params = importers.apply_map(importers.ncsnpp_map(net), sd, abstract)
    x = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1)
    t = jnp.asarray(fx["t"])
    if not net.cfg["num_scales"]:
        out = np.asarray(method.net.apply(params, x, t)).transpose(0, 3, 1, 2)
        assert rel_err(out, fx["out"]) < 1e-5
    score = np.asarray(method.score_fn(params)(x, t)).transpose(0, 3, 1, 2)
    assert rel_err(score, fx[DDPM_SCORES[module]]) < 1e-5
    # the three official scores differ (VP vs sub-VP std, the chain's std at j = floor(999 t))
    others = [fx[k] for k in DDPM_SCORES.values() if k != DDPM_SCORES[module]]
    assert min(rel_err(o, fx[DDPM_SCORES[module]]) for o in others) > 1e-5


def test_full_size_ffhq1024_network_maps_completely():
    """score_sde's VE NCSN++ for FFHQ 1024 (``ve/ffhq_1024_ncsnpp_continuous``, configs/ve/
    ffhq_ncsnpp_continuous.py: nf 16, eight levels, one block each) maps onto the full-size
    official state dict both ways, with the official parameter and EMA counts."""
    model = importlib.import_module("configs.ve.ffhq1024_ncsnpp").get_config().model
    record = json.loads((FIX / "full_size_keys.json").read_text())["score_sde"][
        "ve_ncsnpp_ffhq1024"
    ]
    shapes = importers.strip_prefix({k: tuple(s) for k, s in record["model"]})
    net = zoo.build_net_abstract(model)
    abstract = nnx.to_pure_dict(nnx.state(net))
    entries = importers.ncsnpp_map(net)
    assert importers.map_problems(entries, shapes, abstract, importers.SCORE_SDE_BUFFERS) == []
    frozen = [k for k in shapes if importers._score_sde_frozen(k)]
    assert len(shapes) - len(frozen) == record["ema_shadow_params"]
    assert zoo.count_params_abstract(model) == record["num_params"]


OPTIONS = {
    "a": dict(resblock_type="ddpm", resamp_with_conv=False, progressive="output_skip",
              progressive_input="input_skip", progressive_combine="cat"),
    "b": dict(fir=False),
}  # fmt: skip


@pytest.mark.parametrize("which", sorted(OPTIONS))
def test_ncsnpp_options_match_the_official_network(which):
    """Options no released model uses: (a) DDPM blocks with FIR resampling, the output-skip
    pyramid, the concatenated input-skip pyramid; (b) the non-FIR residual input pyramid, whose
    strided conv pads one row / column at the bottom / right as the official one does."""
    cfg = zoo.with_overrides(zoo.ncsnpp_cifar10_vp_continuous(), image_size=16,
                             **dict(SMALL, num_res_blocks=1), **OPTIONS[which])  # fmt: skip
    net = zoo.build_net_abstract(cfg)
    imported = importers.import_score_sde(str(FIX / f"score_sde_options_{which}.pth"), net)
    fx = np.load(FIX / f"score_sde_options_{which}.npz")
    x = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1)
    out = functional(net)[0].apply(imported.ema, x, jnp.asarray(fx["t"]))
    assert rel_err(np.asarray(out).transpose(0, 3, 1, 2), fx["out_ema"]) < 1e-5


@pytest.mark.parametrize("kind", sorted(RELEASED))
def test_full_size_released_networks_map_completely(kind):
    """Every tensor of the released full-size state dict has one jaxdiff parameter of the same
    shape and vice versa (the ``sigmas`` buffer is checked against the config instead), and the
    EMA list has one tensor per trainable parameter."""
    record = json.loads((FIX / "full_size_keys.json").read_text())["score_sde"][kind]
    shapes = {k: tuple(s) for k, s in record["model"]}
    shapes = importers.strip_prefix(shapes)
    net = zoo.build_net_abstract(RELEASED[kind][1]())
    abstract = nnx.to_pure_dict(nnx.state(net))
    entries = importers.ncsnpp_map(net)
    assert importers.map_problems(entries, shapes, abstract, importers.SCORE_SDE_BUFFERS) == []
    trainable = [k for k in shapes if not importers._score_sde_frozen(k)]
    assert len(trainable) == record["ema_shadow_params"]
    # model.parameters() counts the Fourier frequencies, not the buffer; so does jaxdiff
    assert zoo.count_params_abstract(RELEASED[kind][1]()) == record["num_params"]


def test_cld_outputs_match_the_official_network():
    """CLD-SGM's NCSN++ on (x, v) concatenated: jaxdiff's network with the imported trained and
    EMA weights gives the official ``model(u, t)`` to 1e-5 relative."""
    import importlib

    config = importlib.import_module("configs.cld.cifar10").get_config()
    config.model.update(SMALL)
    method = build.build_method(config, data_shape=(16, 16, 3))
    net = nnx.eval_shape(lambda: method._make(rngs=ShapeOnlyRngs()))
    imported = importers.import_score_sde(str(FIX / "cld_ncsnpp.pth"), net)
    fx = np.load(FIX / "cld_ncsnpp.npz")
    u = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1)
    for which, params in (("model", imported.params), ("ema", imported.ema)):
        out = np.asarray(method.net.apply(params, u, jnp.asarray(fx["t"])))
        assert rel_err(out.transpose(0, 3, 1, 2), fx[f"out_{which}"]) < 1e-5, which


def _cld_net(name: str) -> dict:
    """The CLD network of a released checkpoint: CIFAR-10, or CelebA-HQ-256's post-paper config
    (configs/cld/celebahq256.py) and the paper's (the same with n_resblocks 2)."""
    if name == "cifar10":
        return zoo.ncsnpp_cifar10_cld()
    model = importlib.import_module("configs.cld.celebahq256").get_config().model
    over = {"num_res_blocks": 2} if name.endswith("_paper") else {}
    return zoo.with_overrides(model, image_size=256, in_ch=6, out_ch=3, **over)


@pytest.mark.parametrize("name", ["cifar10", "celebahq256", "celebahq256_paper"])
def test_full_size_cld_network_maps_completely(name):
    record = json.loads((FIX / "full_size_keys.json").read_text())["cld"][name]
    shapes = importers.strip_prefix({k: tuple(s) for k, s in record["model"]})
    net = zoo.build_net_abstract(_cld_net(name))
    abstract = nnx.to_pure_dict(nnx.state(net))
    assert importers.map_problems(importers.ncsnpp_map(net), shapes, abstract) == []
    trainable = [k for k in shapes if not importers._score_sde_frozen(k)]
    assert len(trainable) == record["ema_shadow_params"]
    assert zoo.count_params_abstract(_cld_net(name)) == record["num_params"]


DDGAN_G_SMALL = dict(image_size=16, nf=8, ch_mult=(1, 2), attn_resolutions=(8,), nz=8,
                     z_emb_dim=16, n_mlp=2)  # fmt: skip
DDGAN_FULL = {
    "cifar10_G": zoo.ddgan_cifar10_generator,
    "cifar10_D": zoo.ddgan_cifar10_discriminator,
    "celebahq256_G": zoo.ddgan_celebahq256_generator,
    "celebahq256_D": zoo.ddgan_celebahq256_discriminator,
}


def test_ddgan_generator_matches_the_official_network():
    """DDGAN's AdaGN NCSN++ generator G(x_t, t, z) (z mapping network, adaptive GroupNorms,
    tanh head) with the imported ``netG`` weights gives the official output to 1e-5."""
    net = zoo.build_net_abstract(zoo.with_overrides(zoo.ddgan_cifar10_generator(), **DDGAN_G_SMALL))
    params = importers.import_state_dict(
        str(FIX / "ddgan_netG.pth"), importers.ncsnpp_map(net), net
    )
    fx = np.load(FIX / "ddgan_netG.npz")
    x = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1)
    out = functional(net)[0].apply(params, x, jnp.asarray(fx["t"]), jnp.asarray(fx["z"]))
    out = np.asarray(out).transpose(0, 3, 1, 2)
    assert rel_err(out, fx["out"]) < 1e-5


@pytest.mark.parametrize("size", ["small", "large"])
def test_ddgan_discriminators_match_the_official_networks(size):
    """``Discriminator_small`` (16x16 here, batch 8: two minibatch-stddev groups of 4) and
    ``Discriminator_large`` (64x64, six FIR downsamplings) give the official logits to 1e-5."""
    base = (
        zoo.ddgan_cifar10_discriminator if size == "small" else zoo.ddgan_celebahq256_discriminator
    )
    net = zoo.build_net_abstract(zoo.with_overrides(base(), ngf=2, t_emb_dim=16))
    params = importers.import_state_dict(
        str(FIX / f"ddgan_netD_{size}.pth"), importers.ddgan_discriminator_map(net), net
    )
    fx = np.load(FIX / f"ddgan_netD_{size}.npz")
    x_prev, x_t = (jnp.asarray(fx[k]).transpose(0, 2, 3, 1) for k in ("x_prev", "x_t"))
    out = np.asarray(functional(net)[0].apply(params, x_prev, x_t, jnp.asarray(fx["t"])))
    assert rel_err(out, fx["out"]) < 1e-5


@pytest.mark.parametrize("name", sorted(DDGAN_FULL))
def test_full_size_ddgan_networks_map_completely(name):
    record = json.loads((FIX / "full_size_keys.json").read_text())["ddgan"][name]
    shapes = importers.strip_prefix({k: tuple(s) for k, s in record["model"]})
    net = zoo.build_net_abstract(DDGAN_FULL[name]())
    abstract = nnx.to_pure_dict(nnx.state(net))
    mapper = importers.ncsnpp_map if name.endswith("G") else importers.ddgan_discriminator_map
    assert importers.map_problems(mapper(net), shapes, abstract) == []
    assert zoo.count_params_abstract(DDGAN_FULL[name]()) == record["num_params"]


def test_mismatches_are_listed():
    """A checkpoint of another network, wrong VE noise levels and a file of another kind fail
    with the differences named."""
    _, ncsnpp_net = small_method("vp_ncsnpp")
    with pytest.raises(importers.CheckpointMismatch) as e:
        importers.import_score_sde(str(FIX / "score_sde_vp_ddpmpp.pth"), ncsnpp_net)
    msg = str(e.value)
    assert "missing in the checkpoint: all_modules.6.Conv2d_0.weight (for pyr_down.0.conv" in msg
    _, wide = small_method("vp_ddpmpp", nf=16)
    with pytest.raises(importers.CheckpointMismatch, match="shape of all_modules.0.weight"):
        importers.import_score_sde(str(FIX / "score_sde_vp_ddpmpp.pth"), wide)
    _, ve = small_method("ve_ncsnpp", ve_sigma_max=80.0)
    with pytest.raises(
        importers.CheckpointMismatch, match="sigma_max: checkpoint 50, config label 40"
    ):
        importers.import_score_sde(str(FIX / "score_sde_ve_ncsnpp.pth"), ve)
    other = ROOT / "tests" / "fixtures" / "torch_zip" / "checkpoint.pt"
    with pytest.raises(importers.CheckpointMismatch, match="not a score_sde_pytorch"):
        importers.import_score_sde(str(other), ve)


@pytest.mark.slow
def test_cli_imports_an_official_checkpoint_and_samples(tmp_path):
    """``jaxdiff import`` writes a workdir that ``restore`` reads back with the official EMA and
    trained weights at the official step, and ``jaxdiff sample`` samples from it."""
    from jaxdiff import api
    from tests.test_runner import jaxdiff

    work = tmp_path / "run"
    ckpt = str(FIX / "score_sde_digits.pth")
    res = jaxdiff(["import", "--from", ckpt, "--config", "configs/vp/digits.py",
                   "--config.model.nf=8", "--workdir", str(work)])  # fmt: skip
    assert "step 1234" in res.stdout
    run = api.restore(str(work))
    assert int(run.state.step) == 1234
    net = nnx.eval_shape(lambda: run.method._make(rngs=ShapeOnlyRngs()))
    direct = importers.import_score_sde(ckpt, net)
    fx = np.load(FIX / "score_sde_digits.npz")
    x = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1)
    for which, params in (("model", run.state.params["score"]), ("ema", run.state.ema["score"])):
        out = np.asarray(run.method.net.apply(params, x, jnp.asarray(fx["t"])))
        assert rel_err(out.transpose(0, 3, 1, 2), fx[f"out_{which}"]) < 1e-5
    np.testing.assert_array_equal(
        np.asarray(run.state.ema["score"]["conv_in"]["kernel"]), direct.ema["conv_in"]["kernel"]
    )
    out = tmp_path / "s.npz"
    jaxdiff(["sample", "--workdir", str(work), "--solver", "em", "--steps", "5", "--num", "4",
             "--out", str(out), "--noprogress"])  # fmt: skip
    with np.load(out) as f:
        samples = f[f.files[0]]
    assert samples.shape == (4, 16, 16, 1) and np.all(np.isfinite(samples))
    with pytest.raises(api.WorkdirError, match="already holds checkpoints"):
        api.import_checkpoint(run.config, ckpt, str(work))


@pytest.mark.slow
def test_api_imports_a_ddgan_generator_and_samples(tmp_path):
    """``api.import_checkpoint`` puts a ``netG`` file into G and its EMA (D fresh), ``restore``
    reads it back, the restored G computes the official output, and the chain samples."""
    from configs.ddgan.digits16 import get_config
    from jaxdiff import api

    config = get_config()
    config.model.nf = 8
    work = str(tmp_path / "run")
    meta = api.import_checkpoint(config, str(FIX / "ddgan_netG_digits.pth"), work)
    assert meta["step"] == 0
    run = api.restore(work)
    fx = np.load(FIX / "ddgan_netG_digits.npz")
    x = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1)
    for params in (run.state.params["G"], run.state.ema["G"]):
        out = run.method.G.apply(params, x, jnp.asarray(fx["t"]), jnp.asarray(fx["z"]))
        assert rel_err(np.asarray(out).transpose(0, 3, 1, 2), fx["out"]) < 1e-5
    samples, _ = api.sample(run, num=4)
    samples = np.asarray(samples)
    assert samples.shape == (4, 16, 16, 1) and np.all(np.abs(samples) <= 1.0)


@pytest.mark.slow
def test_api_imports_ddgan_content_with_ema_and_discriminator(tmp_path):
    """DDGAN's resume file ``content.pth`` (its pickle holds the argparse namespace): G trained
    and its EMA (from the optimizer state) and D, at the stored step, compute the official
    outputs after ``restore``; a config whose T differs from the stored one is refused."""
    from configs.ddgan.digits16 import get_config
    from jaxdiff import api

    config = get_config()
    config.model.nf = 8
    config.ddgan.disc.ngf, config.ddgan.disc.t_emb_dim = 2, 16
    ckpt = str(FIX / "ddgan_content.pth")
    content = importers.read_ddgan_content(ckpt)
    assert content.args["num_channels_dae"] == 8 and content.netG_ema is not None
    assert importers.read_ddgan_content(str(FIX / "ddgan_netG_digits.pth")) is None
    work = str(tmp_path / "run")
    assert api.import_checkpoint(config, ckpt, work)["step"] == 321
    run = api.restore(work)
    assert int(run.state.step) == 321
    fx = np.load(FIX / "ddgan_content.npz")
    x, t = jnp.asarray(fx["x"]).transpose(0, 2, 3, 1), jnp.asarray(fx["t"])
    for which in ("model", "ema"):
        params = run.state.params["G"] if which == "model" else run.state.ema["G"]
        out = run.method.G.apply(params, x, t, jnp.asarray(fx["z"]))
        assert rel_err(np.asarray(out).transpose(0, 3, 1, 2), fx[f"out_{which}"]) < 1e-5
    assert rel_err(fx["out_model"], fx["out_ema"]) > 1e-2  # the two weights differ
    x_prev = jnp.asarray(fx["x_prev"]).transpose(0, 2, 3, 1)
    out_d = run.method.D.apply(run.state.params["D"], x_prev, x, t)
    assert rel_err(np.asarray(out_d), fx["out_d"]) < 1e-5
    config.ddgan.num_timesteps = 8
    with pytest.raises(importers.CheckpointMismatch, match="num_timesteps: checkpoint 4"):
        api.import_checkpoint(config, ckpt, str(tmp_path / "bad"))
