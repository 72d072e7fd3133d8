"""Makes tests/fixtures/import/: official networks at reduced width with seeded random weights,
saved as the official code saves them, with fixed inputs and the official outputs, plus the
key/shape lists of the full-size released networks. tests/test_import.py reads them (no torch).
LSGM's fixtures come from tools/make_lsgm_fixtures.py.

Run with CPU torch and a work tree of the official repository (jaxdiff never imports torch):

    git --git-dir=<mirror of yang-song/score_sde_pytorch> archive HEAD models op sde_lib.py \
        | tar -x -C /tmp/score_sde_pytorch
    (the same for nv-tlabs/CLD-SGM: models op util sde_lib.py -> /tmp/CLD-SGM, and for
    NVlabs/denoising-diffusion-gan: score_sde EMA.py -> /tmp/denoising-diffusion-gan)
    /work/torchenv/bin/python tools/make_import_fixtures.py --score_sde /tmp/score_sde_pytorch \
        --cld /tmp/CLD-SGM --ddgan /tmp/denoising-diffusion-gan
    (``--only_score_sde``: score_sde's fixtures and key lists only, the others' entries kept)

The official networks run unmodified. Glue only: ``torch.utils.cpp_extension.load`` is replaced
by a no-op before ``op/`` is imported (it would compile the CUDA kernels at import; on the CPU
``op.upfirdn2d`` runs its own pure-torch ``upfirdn2d_native``), and the config is a small
attribute namespace with the keys the networks read.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

# ----------------------------------------------------------------------------------------------
# score_sde_pytorch configs (configs/default_cifar10_configs.py and the released model files).


class NS(dict):
    """Attribute namespace: the subset of an ml_collections config the official models read."""

    __getattr__ = dict.__getitem__


def score_sde_config(
    kind: str, data: dict | None = None, continuous: bool = True, **model_overrides
) -> NS:
    """The released CIFAR-10 configs: ``vp_ddpmpp``, ``vp_ncsnpp``, ``ve_ncsnpp`` (continuous or,
    ``continuous=False``, discrete time: vp/cifar10_ddpmpp.py and ve/cifar10_ncsnpp.py, whose VE
    model embeds its integer label with the positional embedding); the ``_deep`` files are these
    with ``num_res_blocks=8``."""
    model = NS(
        name="ncsnpp",
        sigma_min=0.01,
        sigma_max=50.0,
        num_scales=1000,
        beta_min=0.1,
        beta_max=20.0,
        dropout=0.1,
        normalization="GroupNorm",
        nonlinearity="swish",
        nf=128,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks=4,
        attn_resolutions=(16,),
        resamp_with_conv=True,
        conditional=True,
        fir=kind != "vp_ddpmpp",
        fir_kernel=[1, 3, 3, 1],
        skip_rescale=True,
        resblock_type="biggan",
        progressive="none",
        progressive_input="none" if kind == "vp_ddpmpp" else "residual",
        progressive_combine="sum",
        attention_type="ddpm",
        init_scale=0.0,
        embedding_type="fourier" if kind == "ve_ncsnpp" and continuous else "positional",
        fourier_scale=16,
        conv_size=3,
        scale_by_sigma=kind == "ve_ncsnpp",
        ema_rate=0.999 if kind == "ve_ncsnpp" else 0.9999,
    )
    model.update(model_overrides)
    data_cfg = NS(image_size=32, num_channels=3, centered=kind != "ve_ncsnpp")
    data_cfg.update(data or {})
    return NS(model=model, data=data_cfg, training=NS(continuous=continuous, sde=kind[:2] + "sde"))


def use_repo(repo: str):
    """Makes ``repo``'s top-level packages (``models``, ``op``, ``sde_lib``, ``util``: the same
    names in each official repository) the importable ones, and returns torch."""
    import torch
    import torch.utils.cpp_extension

    torch.utils.cpp_extension.load = lambda *a, **k: None  # no CUDA build at import
    for name in list(sys.modules):
        if name.split(".")[0] in ("models", "op", "sde_lib", "util", "score_sde"):
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path if p not in USED_REPOS]
    sys.path.insert(0, repo)
    USED_REPOS.add(repo)
    return torch


USED_REPOS: set[str] = set()


def import_score_sde(repo: str):
    torch = use_repo(repo)
    import sde_lib  # noqa: F401  (models.utils imports it)
    from models import ddpm, ncsnpp  # noqa: F401  (register 'ddpm' and 'ncsnpp')
    from models import utils as mutils
    from models.ema import ExponentialMovingAverage

    return torch, sde_lib, mutils, ExponentialMovingAverage


# ----------------------------------------------------------------------------------------------
# Seeded random weights (every path of the network matters, unlike the zero-init last convs).


def randomize(torch, model, seed: int, jitter: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:  # Fourier frequencies keep their N(0, scale^2) draw
                continue
            if p.dim() == 1:
                base = 1.0 if "GroupNorm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.numel() // (p.shape[1] if name.endswith(".W") else p.shape[0])
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
            if jitter:
                p.add_(jitter * torch.randn(p.shape, generator=g))


def data_parallel_keys(sd) -> collections.OrderedDict:
    """run_lib wraps the model in ``torch.nn.DataParallel``: its keys gain ``module.``."""
    return collections.OrderedDict(("module." + k, v) for k, v in sd.items())


def score_sde_fixture(
    out_dir: str, repo: str, name: str, kind: str, continuous: bool = True, **overrides
) -> None:
    """``continuous=False``: the labels and scores of ``get_score_fn(..., continuous=False)``.
    The VP DDPM++ fixture also records the discrete-time scores (``score_discrete_*``): the
    released ``vp/cifar10_ddpmpp`` is the same network with the discrete chain's std."""
    torch, sde_lib, mutils, EMA = import_score_sde(repo)
    torch.manual_seed(0)
    config = score_sde_config(kind, continuous=continuous, **overrides)
    model = mutils.get_model(config.model.name)(config)  # create_model without DataParallel
    randomize(torch, model, seed=1)
    ema = EMA(model.parameters(), decay=config.model.ema_rate)
    randomize(torch, model, seed=2)  # the trained weights differ from their EMA
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    state = {
        "optimizer": optimizer.state_dict(),
        "model": data_parallel_keys(model.state_dict()),
        "ema": ema.state_dict(),
        "step": 1234,
    }
    torch.save(state, os.path.join(out_dir, f"{name}.pth"))

    c, s = config.data.num_channels, config.data.image_size
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, c, s, s, generator=g) * 0.5 + (0.5 if kind == "ve_ncsnpp" else 0.0)
    # (1 - 0.3004) * 999 = 698.8: the VE label rounds up, 999 * 0.3004 = 300.1 floors
    t = torch.tensor([0.3, 0.8] if continuous else [0.3004, 0.8])
    if kind == "ve_ncsnpp":
        sde = sde_lib.VESDE(config.model.sigma_min, config.model.sigma_max, 1000)
    else:
        sde = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max, 1000)
    record = {"x": x.numpy(), "t": t.numpy()}
    with torch.no_grad():
        for which in ("model", "ema"):
            if which == "ema":
                ema.copy_to(model.parameters())
            model.eval()
            if kind != "ve_ncsnpp":
                labels = 999 * t
            elif continuous:
                labels = sde.marginal_prob(torch.zeros_like(x), t)[1]
            else:
                labels = torch.round((1 - t) * 999).long()
            record[f"out_{which}"] = model(x, labels).float().numpy()
            score_fn = mutils.get_score_fn(sde, model, train=False, continuous=continuous)
            record[f"score_{which}"] = score_fn(x, t).float().numpy()
            if kind == "vp_ddpmpp" and continuous:
                discrete = mutils.get_score_fn(sde, model, train=False, continuous=False)
                record[f"score_discrete_{which}"] = discrete(x, t).numpy()
    np.savez(os.path.join(out_dir, f"{name}.npz"), **record)
    n = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n} parameters, |out| {np.abs(record['out_ema']).mean():.3g}")


def seeded_state_dict(shapes: list, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 weights in numpy for the official parameter list ``shapes`` ([key, shape]
    in ``named_parameters`` order), as ``randomize`` draws them; tests/test_import.py draws the
    same ones (the DDPM fixture stores its key list, not its weights: at the 32-group width the
    official network needs, a state dict would be ~2 MB)."""
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


def score_sde_ddpm_fixture(out_dir: str, repo: str, name: str, **overrides) -> None:
    """score_sde's ``DDPM`` (models/ddpm.py) at reduced width with ``seeded_state_dict`` weights:
    ``model(x, 999 t)`` and the scores of ``get_score_fn`` for the VP SDE in continuous and
    discrete time (vp/cifar10_ddpm_continuous, vp/cifar10_ddpm) and the sub-VP SDE
    (subvp/cifar10_ddpm_continuous), with the parameter list in the npz."""
    torch, sde_lib, mutils, _ = import_score_sde(repo)
    config = score_sde_config("vp_ddpmpp", name="ddpm", **overrides)
    model = mutils.get_model("ddpm")(config)
    shapes = [[k, list(p.shape)] for k, p in model.named_parameters()]
    weights = seeded_state_dict(shapes, seed=1)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(torch.from_numpy(weights[k]))
    model.eval()
    c, s = config.data.num_channels, config.data.image_size
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, c, s, s, generator=g) * 0.5
    t = torch.tensor([0.3004, 0.8])
    vp = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max, 1000)
    subvp = sde_lib.subVPSDE(config.model.beta_min, config.model.beta_max, 1000)
    record = {"x": x.numpy(), "t": t.numpy(), "shapes": np.array(json.dumps(shapes))}
    with torch.no_grad():
        record["out"] = model(x, 999 * t).numpy()
        for key, sde, continuous in (("vp", vp, True), ("vp_discrete", vp, False),
                                     ("subvp", subvp, True)):  # fmt: skip
            score_fn = mutils.get_score_fn(sde, model, train=False, continuous=continuous)
            record[f"score_{key}"] = score_fn(x, t).numpy()
    np.savez(os.path.join(out_dir, f"{name}.npz"), **record)
    n = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n} parameters, |out| {np.abs(record['out']).mean():.3g}")


def score_sde_full_keys(repo: str, kind: str, **overrides) -> dict:
    """Key/shape list of the full-size released network, as its checkpoint stores it."""
    torch, _, mutils, EMA = import_score_sde(repo)
    config = score_sde_config(kind, **overrides)
    model = mutils.get_model(config.model.name)(config)
    sd = data_parallel_keys(model.state_dict())
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    return {
        "model": [[k, list(v.shape)] for k, v in sd.items()],
        "ema_shadow_params": trainable,
        "num_params": sum(p.numel() for p in model.parameters()),
    }


# ----------------------------------------------------------------------------------------------
# CLD-SGM (nv-tlabs/CLD-SGM): configs/default_cifar10.txt + specific_cifar10.txt, read by argparse
# into a flat namespace; the checkpoint layout is score_sde's (util/checkpoint.py), DDP-wrapped.


def cld_config(**overrides) -> NS:
    config = NS(
        name="ncsnpp",
        normalization="GroupNorm",
        nonlinearity="swish",
        n_channels=128,
        ch_mult="1,2,2,2",
        attn_resolutions="16",
        resamp_with_conv=True,
        use_fir=True,
        fir_kernel="1,3,3,1",
        skip_rescale=True,
        resblock_type="biggan",
        progressive="none",
        progressive_input="residual",
        progressive_combine="sum",
        attention_type="ddpm",
        init_scale=0.0,
        fourier_scale=16,
        conv_size=3,
        embedding_type="fourier",
        mixed_score=True,
        n_resblocks=8,
        ema_rate=0.9999,
        dropout=0.1,
        sde="cld",
        image_size=32,
        image_channels=3,
    )
    config.update(overrides)
    return config


def import_cld(repo: str):
    torch = use_repo(repo)
    from models import ncsnpp  # noqa: F401  (registers 'ncsnpp')
    from models import utils as mutils
    from models.ema import ExponentialMovingAverage

    return torch, mutils, ExponentialMovingAverage


def cld_fixture(out_dir: str, repo: str, name: str, **overrides) -> None:
    torch, mutils, EMA = import_cld(repo)
    torch.manual_seed(0)
    config = cld_config(**overrides)
    model = mutils.create_model(config)
    randomize(torch, model, seed=1)
    ema = EMA(model.parameters(), decay=config.ema_rate)
    randomize(torch, model, seed=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    state = {
        "optimizer": optimizer.state_dict(),
        "model": data_parallel_keys(model.state_dict()),
        "ema": ema.state_dict(),
        "step": 1234,
    }
    torch.save(state, os.path.join(out_dir, f"{name}.pth"))
    c, s = 2 * config.image_channels, config.image_size
    g = torch.Generator().manual_seed(3)
    u = torch.randn(2, c, s, s, generator=g) * 0.5
    t = torch.tensor([0.3, 0.8])
    record = {"x": u.numpy(), "t": t.numpy()}
    with torch.no_grad():
        for which in ("model", "ema"):
            if which == "ema":
                ema.copy_to(model.parameters())
            model.eval()
            record[f"out_{which}"] = model(u, t).numpy()
    np.savez(os.path.join(out_dir, f"{name}.npz"), **record)
    n = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n} parameters, |out| {np.abs(record['out_ema']).mean():.3g}")


def cld_full_keys(repo: str, **overrides) -> dict:
    torch, mutils, _ = import_cld(repo)
    model = mutils.create_model(cld_config(**overrides))
    sd = data_parallel_keys(model.state_dict())
    return {
        "model": [[k, list(v.shape)] for k, v in sd.items()],
        "ema_shadow_params": sum(1 for p in model.parameters() if p.requires_grad),
        "num_params": sum(p.numel() for p in model.parameters()),
    }


# ----------------------------------------------------------------------------------------------
# DDGAN (NVlabs/denoising-diffusion-gan): train_ddgan.py's argparse defaults and README commands;
# netG_{epoch}.pth = netG.state_dict() of the DDP-wrapped generator, netD_dict likewise.


def ddgan_args(**overrides) -> NS:
    args = NS(
        image_size=32,
        num_channels=3,
        centered=True,
        num_channels_dae=128,
        n_mlp=4,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks=2,
        attn_resolutions=(16,),
        dropout=0.0,
        resamp_with_conv=True,
        conditional=True,
        fir=True,
        fir_kernel=[1, 3, 3, 1],
        skip_rescale=True,
        resblock_type="biggan",
        progressive="none",
        progressive_input="residual",
        progressive_combine="sum",
        embedding_type="positional",
        fourier_scale=16.0,
        not_use_tanh=False,
        nz=100,
        z_emb_dim=256,
    )
    args.update(overrides)
    return args


def import_ddgan(repo: str):
    torch = use_repo(repo)
    from score_sde.models.discriminator import Discriminator_large, Discriminator_small
    from score_sde.models.ncsnpp_generator_adagn import NCSNpp

    return torch, NCSNpp, Discriminator_small, Discriminator_large


def ddgan_fixtures(out_dir: str, repo: str) -> dict:
    torch, NCSNpp, DSmall, DLarge = import_ddgan(repo)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    args = ddgan_args(num_channels_dae=8, ch_mult=(1, 2), attn_resolutions=(8,), image_size=16,
                      nz=8, z_emb_dim=16, n_mlp=2)  # fmt: skip
    netG = NCSNpp(args)
    randomize(torch, netG, seed=1)
    torch.save(data_parallel_keys(netG.state_dict()), os.path.join(out_dir, "ddgan_netG.pth"))
    x = torch.randn(2, 3, 16, 16, generator=g)
    t = torch.tensor([1, 3])
    z = torch.randn(2, 8, generator=g)
    with torch.no_grad():
        netG.eval()
        out = netG(x, t, z)
    np.savez(os.path.join(out_dir, "ddgan_netG.npz"), x=x.numpy(), t=t.numpy(), z=z.numpy(),
             out=out.numpy())  # fmt: skip
    print(f"ddgan_netG: {sum(p.numel() for p in netG.parameters())} parameters")
    for name, cls, size, batch in (("small", DSmall, 16, 8), ("large", DLarge, 64, 4)):
        netD = cls(nc=6, ngf=2, t_emb_dim=16, act=torch.nn.LeakyReLU(0.2))
        randomize(torch, netD, seed=4)
        torch.save(data_parallel_keys(netD.state_dict()),
                   os.path.join(out_dir, f"ddgan_netD_{name}.pth"))  # fmt: skip
        x_prev = torch.randn(batch, 3, size, size, generator=g)
        x_t = torch.randn(batch, 3, size, size, generator=g)
        t = torch.arange(batch) % 4
        with torch.no_grad():
            out = netD(x_prev, t, x_t)
        np.savez(os.path.join(out_dir, f"ddgan_netD_{name}.npz"), x_prev=x_prev.numpy(),
                 x_t=x_t.numpy(), t=t.numpy(), out=out.numpy())  # fmt: skip
        print(f"ddgan_netD_{name}: {sum(p.numel() for p in netD.parameters())} parameters")
    # the generator of configs/ddgan/digits16.py at nf 8, for the API import test
    args = ddgan_args(num_channels_dae=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                      image_size=16, num_channels=1, nz=32, z_emb_dim=64, n_mlp=2)  # fmt: skip
    netG = NCSNpp(args)
    randomize(torch, netG, seed=5)
    torch.save(
        data_parallel_keys(netG.state_dict()), os.path.join(out_dir, "ddgan_netG_digits.pth")
    )
    x = torch.randn(2, 1, 16, 16, generator=g)
    t = torch.tensor([0, 2])
    z = torch.randn(2, 32, generator=g)
    with torch.no_grad():
        out = netG(x, t, z)
    np.savez(os.path.join(out_dir, "ddgan_netG_digits.npz"), x=x.numpy(), t=t.numpy(),
             z=z.numpy(), out=out.numpy())  # fmt: skip
    ddgan_content_fixture(out_dir, torch, NCSNpp, DSmall, args, netG.state_dict(), g)
    # full size: README commands (CIFAR-10; CelebA-HQ 256: --num_channels_dae 64
    # --ch_mult 1 1 2 2 4 4, n_mlp default 3)
    full = {}
    for name, kw in (
        ("cifar10", {}),
        (
            "celebahq256",
            dict(image_size=256, num_channels_dae=64, ch_mult=(1, 1, 2, 2, 4, 4), n_mlp=3),
        ),
    ):
        netG = NCSNpp(ddgan_args(**kw))
        netD = (DSmall if name == "cifar10" else DLarge)(nc=6, ngf=64, t_emb_dim=256)
        for role, net in (("G", netG), ("D", netD)):
            sd = data_parallel_keys(net.state_dict())
            full[f"{name}_{role}"] = {
                "model": [[k, list(v.shape)] for k, v in sd.items()],
                "num_params": sum(p.numel() for p in net.parameters()),
            }
    return full


def ddgan_content_fixture(out_dir, torch, NCSNpp, DSmall, args, trained_g, g) -> None:
    """``content.pth`` as train_ddgan.py saves it for resuming (``--save_content``): the trained
    generator (DDP keys), its EMA inside ``optimizerG`` (EMA.py: an ``'ema'`` entry per
    parameter), the discriminator, and the argparse namespace. Generator of configs/ddgan/
    digits16.py at nf 8, the small discriminator at ngf 2, t_emb 16."""
    from EMA import EMA

    netG = NCSNpp(args)
    netG.load_state_dict(trained_g)
    # (Adam in train_ddgan.py; SGD keeps the fixture small: no moments, the same 'ema' layout)
    opt = EMA(torch.optim.SGD(netG.parameters(), lr=1.5e-4), ema_decay=0.9999)
    for p in netG.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # the EMA starts as the current weights
    randomize(torch, netG, seed=6)  # the trained weights move on
    netD = DSmall(nc=2, ngf=2, t_emb_dim=16, act=torch.nn.LeakyReLU(0.2))
    randomize(torch, netD, seed=7)
    namespace = argparse.Namespace(
        **dict(args), num_timesteps=4, beta_min=0.1, beta_max=20.0, use_geometric=False,
        use_ema=True, ema_decay=0.9999, lr_g=1.5e-4, lr_d=1e-4, dataset="mnist", seed=1024,
    )  # fmt: skip
    optD = torch.optim.SGD(netD.parameters(), lr=1e-4)
    content = {
        "epoch": 3, "global_step": 321, "args": namespace,
        "netG_dict": data_parallel_keys(netG.state_dict()),
        # EMA.state_dict() is Optimizer.state_dict of the wrapped optimizer's state and groups
        "optimizerG": opt.optimizer.state_dict(), "schedulerG": {},
        "netD_dict": data_parallel_keys(netD.state_dict()), "optimizerD": optD.state_dict(),
        "schedulerD": {},
    }  # fmt: skip
    torch.save(content, os.path.join(out_dir, "ddgan_content.pth"))
    x = torch.randn(2, 1, 16, 16, generator=g)
    t = torch.tensor([1, 3])
    z = torch.randn(2, 32, generator=g)
    x_prev = torch.randn(2, 1, 16, 16, generator=g)
    record = {"x": x.numpy(), "t": t.numpy(), "z": z.numpy(), "x_prev": x_prev.numpy()}
    with torch.no_grad():
        record["out_model"] = netG(x, t, z).numpy()
        opt.swap_parameters_with_ema(store_params_in_ema=True)
        record["out_ema"] = netG(x, t, z).numpy()
        record["out_d"] = netD(x_prev, t, x).numpy()
    np.savez(os.path.join(out_dir, "ddgan_content.npz"), **record)
    print("ddgan_content: generator, its EMA and the discriminator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score_sde", required=True, help="work tree of score_sde_pytorch")
    parser.add_argument("--cld", help="work tree of CLD-SGM")
    parser.add_argument("--ddgan", help="work tree of denoising-diffusion-gan")
    parser.add_argument("--out", default="tests/fixtures/import")
    parser.add_argument(
        "--only_score_sde",
        action="store_true",
        help="remake score_sde's fixtures and key lists only (the others' entries are kept)",
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    keys = score_sde_all(args)
    path = os.path.join(args.out, "full_size_keys.json")
    if args.only_score_sde:
        with open(path) as f:
            full = json.load(f)
        full["score_sde"] = keys
    else:
        full = {"score_sde": keys, **others(args)}
    with open(path, "w") as f:
        json.dump(full, f)
    for kind, rec in keys.items():
        print(f"full-size {kind}: {len(rec['model'])} tensors, {rec['num_params']} parameters")


def score_sde_all(args) -> dict:
    """score_sde's fixtures; the key lists of its full-size released networks."""
    small = dict(nf=8, ch_mult=(1, 2), num_res_blocks=2, attn_resolutions=(8,),
                 data=dict(image_size=16))  # fmt: skip
    for kind in ("vp_ddpmpp", "vp_ncsnpp", "ve_ncsnpp"):
        score_sde_fixture(args.out, args.score_sde, f"score_sde_{kind}", kind, **small)
    # Options no released model uses (score_sde_pytorch's non-FIR nearest upsampling calls
    # F.interpolate(x, size, 'nearest'), an error in every torch, and its FIR upsampling conv
    # slices with a negative step, also an error: those paths never ran): DDPM resblocks with
    # FIR resampling, the output-skip pyramid, the input-skip pyramid concatenated; and the
    # non-FIR residual input pyramid (strided conv after padding bottom / right).
    opts = dict(small, num_res_blocks=1)
    a = dict(opts, resblock_type="ddpm", resamp_with_conv=False, progressive="output_skip",
             progressive_input="input_skip", progressive_combine="cat")  # fmt: skip
    score_sde_fixture(args.out, args.score_sde, "score_sde_options_a", "vp_ncsnpp", **a)
    b = dict(opts, fir=False)
    score_sde_fixture(args.out, args.score_sde, "score_sde_options_b", "vp_ncsnpp", **b)
    # The network of configs/vp/digits.py at nf 8, for the command-line import test.
    digits = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                  data=dict(image_size=16, num_channels=1))  # fmt: skip
    score_sde_fixture(args.out, args.score_sde, "score_sde_digits", "vp_ddpmpp", **digits)
    # ve/cifar10_ncsnpp (discrete time: integer labels, positional embedding, sigmas[label]),
    # width 4 and one residual block per level to keep the file small
    score_sde_fixture(args.out, args.score_sde, "score_sde_ve_ncsnpp_discrete", "ve_ncsnpp",
                      continuous=False, **dict(small, nf=4, num_res_blocks=1))  # fmt: skip
    keys = {kind: score_sde_full_keys(args.score_sde, kind)
            for kind in ("vp_ddpmpp", "vp_ncsnpp", "ve_ncsnpp")}  # fmt: skip
    # score_sde's DDPM (vp/cifar10_ddpm, vp/ and subvp/cifar10_ddpm_continuous: one network) at
    # width 32 (its GroupNorms have 32 groups), one block per level, 16 px
    ddpm_small = dict(nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                      data=dict(image_size=16))  # fmt: skip
    score_sde_ddpm_fixture(args.out, args.score_sde, "score_sde_ddpm", **ddpm_small)
    keys["ddpm"] = score_sde_full_keys(args.score_sde, "vp_ddpmpp", name="ddpm", num_res_blocks=2)
    # ve/ffhq_1024_ncsnpp_continuous (configs/ve/ffhq_ncsnpp_continuous.py); the LSUN bedroom /
    # church and FFHQ 256 networks are CelebA-HQ 256's (their sigma_max only sets the buffer)
    keys["ve_ncsnpp_ffhq1024"] = score_sde_full_keys(
        args.score_sde, "ve_ncsnpp", data=dict(image_size=1024), nf=16,
        ch_mult=(1, 2, 4, 8, 16, 32, 32, 32), num_res_blocks=1, dropout=0.0,
        progressive="output_skip", progressive_input="input_skip", sigma_max=1348.0,
        num_scales=2000, ema_rate=0.9999,
    )  # fmt: skip
    # vp/cifar10_ddpmpp (discrete) has vp_ddpmpp's keys; subvp's deep model vp's deep one's
    keys["ve_ncsnpp_discrete"] = score_sde_full_keys(args.score_sde, "ve_ncsnpp", continuous=False)
    for kind in ("vp_ddpmpp", "ve_ncsnpp"):
        keys[f"{kind}_deep"] = score_sde_full_keys(args.score_sde, kind, num_res_blocks=8)
    # ve/celebahq_256_ncsnpp_continuous (configs/ve/celebahq_256_ncsnpp_continuous.py)
    keys["ve_ncsnpp_celebahq256"] = score_sde_full_keys(
        args.score_sde, "ve_ncsnpp", data=dict(image_size=256), ch_mult=(1, 1, 2, 2, 2, 2, 2),
        num_res_blocks=2, dropout=0.0, progressive="output_skip", progressive_input="input_skip",
        sigma_max=348.0, num_scales=2000,
    )  # fmt: skip
    return keys


def others(args) -> dict:
    """CLD-SGM's and DDGAN's fixtures and key lists."""
    cld_small = dict(
        n_channels=8, ch_mult="1,2", n_resblocks=2, attn_resolutions="8", image_size=16
    )
    cld_fixture(args.out, args.cld, "cld_ncsnpp", **cld_small)
    cld_keys = cld_full_keys(args.cld)
    print(f"full-size CLD: {len(cld_keys['model'])} tensors, {cld_keys['num_params']} parameters")
    return {"cld": {"cifar10": cld_keys, **cld_celebahq_keys(args.cld)},
            "ddgan": ddgan_fixtures(args.out, args.ddgan)}  # fmt: skip


# configs/specific_celeba_post_paper.txt (the released CelebA-HQ-256 file is the post-paper or the
# paper model: specific_celeba_paper.txt differs only in n_resblocks 2)
CLD_CELEBAHQ = dict(
    image_size=256, ch_mult="1,1,2,2,2,2,2", attn_resolutions="16", use_fir=False,
    progressive="none", progressive_input="none", embedding_type="positional", n_resblocks=4,
)  # fmt: skip


def cld_celebahq_keys(repo: str) -> dict:
    return {
        "celebahq256": cld_full_keys(repo, **CLD_CELEBAHQ),
        "celebahq256_paper": cld_full_keys(repo, **{**CLD_CELEBAHQ, "n_resblocks": 2}),
    }


if __name__ == "__main__":
    main()
