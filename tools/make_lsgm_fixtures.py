"""Makes the LSGM part of tests/fixtures/import/: official NVAEs and latent NCSN++ score models
(NVlabs/LSGM) at reduced width with seeded random weights, saved as ``train_vada.py`` saves them
(``vae_state_dict``, ``dae_state_dict``, ``args``, and ``dae_optimizer`` holding the EMA), with
fixed inputs and the official outputs, plus the key/shape lists of the released configurations.
tests/test_import_lsgm.py reads them (no torch).

Run with CPU torch and a work tree of the official repository (jaxdiff never imports torch):

    git --git-dir=<mirror of NVlabs/LSGM> archive HEAD | tar -x -C /tmp/LSGM
    /work/torchenv/bin/python tools/make_lsgm_fixtures.py --lsgm /tmp/LSGM
    (``--only_fourier``: only the score model with ``--embedding_type fourier``)

The official networks run unmodified. Shims for the CUDA-only spots (none changes a result):

* ``torch.utils.cpp_extension.load`` is a no-op (``score_sde/op`` would compile its CUDA kernels
  at import; on the CPU ``upfirdn2d`` runs its pure-torch path);
* ``tensorboardX`` and ``torchdiffeq`` (imported by ``util/utils.py`` and
  ``diffusion_continuous.py``, unused here) are empty modules;
* ``torch.Tensor.cuda`` returns the tensor, and the SDE's ``torch.tensor(..., device='cuda')``
  constants are made on the CPU;
* the fused ``SyncBatchNormSwish`` (it refuses CPU tensors) runs its own world-size-1 path:
  framework batch norm (running statistics updated in training mode), then Swish;
* the posterior's ``sample_normal_jit`` draws from a seeded generator and records the noise, so
  the tests can feed jaxdiff the same noise;
* ``util/ema.py``'s wrapper lacks the hook tables of newer torch optimisers: its state dict (the
  wrapped optimizer's state and groups) is taken from the wrapped optimizer;
* the full-size key lists are built on the meta device (score_sde's initialiser names 'cpu' as a
  default argument, set to 'meta'; the IAF cells' masks need a real CPU build).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

import numpy as np

# ----------------------------------------------------------------------------------------------
# Arguments: train_vae.py / train_vada.py defaults, the architecture flags of the README commands.


def lsgm_args(**kw) -> argparse.Namespace:
    """An argparse.Namespace as the official scripts store it (the fields the networks read, the
    SDE and a few training flags, as a real checkpoint carries them)."""
    args = dict(
        dataset="cifar10",
        num_x_bits=8,
        decoder_dist="dml",
        log_sig_q_scale=5.0,
        num_channels_enc=128,
        num_channels_dec=128,
        channel_mult=[1, 2],
        num_preprocess_blocks=1,
        num_preprocess_cells=2,
        num_postprocess_blocks=1,
        num_postprocess_cells=2,
        num_latent_scales=1,
        num_groups_per_scale=20,
        num_latent_per_group=9,
        num_cell_per_cond_enc=2,
        num_cell_per_cond_dec=2,
        arch_instance="res_bnswish",
        use_se=True,
        progressive_input_vae="none",
        num_nf=0,
        # the latent score model (train_vada.py)
        dae_arch="ncsnpp",
        num_channels_dae=512,
        num_scales_dae=3,
        num_cell_per_scale_dae=8,
        embedding_dim=128,
        embedding_type="positional",
        embedding_scale=1000.0,
        mixing_logit_init=-3.0,
        mixed_prediction=True,
        dropout=0.2,
        fir=True,
        progressive="none",
        progressive_input="none",
        progressive_combine="sum",
        sde_type="vpsde",
        beta_start=0.1,
        beta_end=20.0,
        sigma2_0=0.0,
        time_eps=0.01,
        ema_decay=0.9999,
        learning_rate_dae=3e-4,
        weight_decay=3e-4,
        train_vae=True,
        seed=1,
    )
    args.update(kw)
    return argparse.Namespace(**args)


# Released configurations (README commands; CIFAR-10 vae2 + the best-FID score model, MNIST,
# CelebA-HQ-256 quantitative, CIFAR-10 vae3 + the best-NLL score model).
RELEASED = {
    "cifar10": dict(),
    "mnist": dict(
        dataset="mnist", decoder_dist="bin", num_channels_enc=64, num_channels_dec=64,
        channel_mult=[1, 2, 2], num_preprocess_blocks=2, num_preprocess_cells=3,
        num_postprocess_blocks=2, num_postprocess_cells=3, num_groups_per_scale=2,
        num_latent_per_group=20, num_cell_per_cond_enc=1, num_cell_per_cond_dec=1,
        arch_instance="res_mbconv", num_channels_dae=256, num_scales_dae=2, fir=False,
        mixing_logit_init=-6.0,
    ),
    "celebahq256": dict(
        dataset="celeba_256", num_x_bits=5, num_channels_enc=64, num_channels_dec=64,
        channel_mult=[1, 1, 2, 4], num_preprocess_blocks=1, num_preprocess_cells=2,
        num_postprocess_blocks=1, num_postprocess_cells=2, num_latent_scales=3,
        num_groups_per_scale=8, num_latent_per_group=20, num_cell_per_cond_enc=2,
        num_cell_per_cond_dec=2, arch_instance="res_mbconv", num_nf=2,
        progressive_input_vae="input_skip", num_channels_dae=256, num_scales_dae=4,
        num_cell_per_scale_dae=8, mixing_logit_init=-6.0,
    ),
    "cifar10_nll": dict(  # vae3 + lsgm3 (best NLL): 4 groups x 45, IAF cells, geometric VPSDE
        num_channels_enc=256, num_channels_dec=256, num_preprocess_cells=3,
        num_postprocess_cells=3, num_groups_per_scale=4, num_latent_per_group=45,
        num_cell_per_cond_enc=3, num_cell_per_cond_dec=3, num_nf=2, sde_type="geometric_sde",
        sigma2_min=3e-5, sigma2_max=0.999, sigma2_0=3e-5, time_eps=0.0,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The official code on the CPU.

NOISE: list = []  # the posterior's standard-normal draws of the last forward pass, in order


def use_lsgm(repo: str):
    """Imports LSGM's ``nvae``, ``util`` and ``score_sde`` from ``repo`` with the shims above."""
    import torch
    import torch.nn.functional as F
    import torch.utils.cpp_extension

    for mod, attr in (("tensorboardX", "SummaryWriter"), ("torchdiffeq", "odeint")):
        sys.modules.setdefault(mod, types.ModuleType(mod))
        setattr(sys.modules[mod], attr, None)
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.utils.cpp_extension.load = lambda *a, **k: None  # no CUDA build at import
    sys.path.insert(0, repo)
    from util import utils  # noqa: I001  (before util.distributions: a circular import)
    from thirdparty import inplaced_sync_batchnorm
    from util import distributions

    def bn_swish(self, x):  # SyncBatchNormSwish's world-size-1 path without the CUDA check
        if self.training and self.track_running_stats:
            self.num_batches_tracked = self.num_batches_tracked + 1
        out = F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            self.training or not self.track_running_stats, self.momentum, self.eps,
        )  # fmt: skip
        return out * torch.sigmoid(out)

    inplaced_sync_batchnorm.SyncBatchNormSwish.forward = bn_swish
    gen = torch.Generator().manual_seed(11)

    def sample_normal(mu, sigma):
        rho = torch.randn(mu.shape, generator=gen)
        NOISE.append(rho.numpy().copy())
        return rho * sigma + mu, rho

    distributions.sample_normal_jit = sample_normal
    import nvae
    from score_sde.ncsnpp import NCSNpp

    return torch, nvae.NVAE, NCSNpp, utils


def randomize(torch, model, seed: int) -> None:
    """Seeded weights that make every path matter (no zero-initialised output convs); norm and
    weight-norm scales near their usual values; BN running statistics away from (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
    scales = {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, norms)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("log_weight_norm") or name == "mixing_logit":
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                base = 1.0 if name in scales else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p[0].numel()))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
            elif name.endswith("num_batches_tracked"):
                b.fill_(1000)


def sd_list(sd) -> list:
    return [[k, list(v.shape)] for k, v in sd.items()]


def lsgm_fixture(out_dir: str, repo: str, name: str, **kw) -> None:
    """A ``checkpoint.pt`` of train_vada.py (VAE + score model + the score model's EMA inside
    ``dae_optimizer``) and the official outputs on fixed inputs."""
    torch, NVAE, NCSNpp, utils = use_lsgm(repo)
    from diffusion_continuous import make_diffusion
    from util.ema import EMA

    torch.manual_seed(0)
    args = lsgm_args(**kw)
    vae = NVAE(args, utils.get_arch_cells(args.arch_instance, args.use_se))
    randomize(torch, vae, seed=1)
    c_top = vae.latent_structure()[0]
    dae = NCSNpp(args, c_top)
    randomize(torch, dae, seed=2)
    # the EMA as util/ema.py keeps it: an 'ema' entry in the optimizer state of each parameter
    # (FusedAdam in train_vada.py; plain SGD here keeps the fixture small: no moments)
    opt = EMA(torch.optim.SGD(dae.parameters(), lr=args.learning_rate_dae), args.ema_decay)
    for p in dae.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # creates the EMA (= the current weights)
    randomize(torch, dae, seed=3)  # the trained weights now differ from their EMA
    content = {
        "epoch": 7, "global_step": 1234, "args": args, "best_score_fid": 1e10,
        "best_score_nll": 1e10, "vae_state_dict": vae.state_dict(),
        "dae_state_dict": dae.state_dict(),
        # EMA.state_dict() is Optimizer.state_dict over the wrapped optimizer's state and groups
        # (the wrapper lacks the hook tables newer torch expects; the content is the same)
        "dae_optimizer": opt.optimizer.state_dict(),
    }  # fmt: skip
    torch.save(content, os.path.join(out_dir, f"{name}.pt"))

    g = torch.Generator().manual_seed(5)
    c_in = 1 if args.dataset in ("mnist", "omniglot") else 3
    size = utils.get_input_size(args.dataset)
    x = torch.rand(2, c_in, size, size, generator=g) * 2 - 1
    if args.decoder_dist == "bin":
        x = torch.sign(x)
    elif args.num_x_bits == 8:
        x = torch.round((x + 1) / 2 * 255) / 255 * 2 - 1
    record = {"x": x.numpy()}
    with torch.no_grad():
        for mode in ("eval", "train"):  # eval first: training mode updates the running stats
            vae.train(mode == "train")
            NOISE.clear()
            logits, all_log_q, all_eps = vae(x)
            for k, (rho, z, log_q) in enumerate(zip(NOISE, all_eps, all_log_q, strict=True)):
                record[f"{mode}_noise_{k}"] = rho  # group k (top first): (b, l, h, w)
                record[f"{mode}_z_{k}"] = z.numpy()
                record[f"{mode}_log_q_{k}"] = log_q.numpy()
            record[f"{mode}_logits"] = logits[:, :, :8, :8].numpy()  # a corner: fixture size
            record[f"{mode}_log_p"] = vae.decoder_output(logits).log_p(x).numpy()
            record[f"{mode}_decoded"] = (
                vae.decoder_output(_decode(vae, all_eps)).log_p(x).numpy()
            )  # the decoder alone from the same latents
        top = vae.concat_eps_per_scale(list(all_eps))[0]  # training mode's latents
        tensor = torch.tensor  # the SDE puts its constants on 'cuda': on the CPU here
        torch.tensor = lambda *a, device=None, **k: tensor(*a, **k)
        try:
            diffusion = make_diffusion(args)
        finally:
            torch.tensor = tensor
        t = torch.tensor([0.05, 0.7])
        noise = torch.randn(top.shape, generator=g)
        var_t = diffusion.var(t).view(-1, 1, 1, 1)
        z_t = diffusion.sample_q(top, noise, var_t, diffusion.e2int_f(t).view(-1, 1, 1, 1))
        record.update(z_top=top.numpy(), t=t.numpy(), z_t=z_t.numpy())
        for which in ("model", "ema"):
            if which == "ema":
                opt.swap_parameters_with_ema(store_params_in_ema=True)
            dae.eval()
            out = dae(z_t, t)
            mix = diffusion.mixing_component(z_t, var_t, t, enabled=True)
            record[f"out_{which}"] = out.numpy()
            record[f"mixed_{which}"] = utils.get_mixed_prediction(
                True, out, dae.mixing_logit, mix
            ).numpy()
    np.savez_compressed(os.path.join(out_dir, f"{name}.npz"), **record)
    n_v = sum(p.numel() for p in vae.parameters())
    n_d = sum(p.numel() for p in dae.parameters())
    print(f"{name}: NVAE {n_v}, score model {n_d} parameters")


def lsgm_fourier_fixture(out_dir: str, repo: str, name: str, **kw) -> None:
    """The latent score model alone with ``--embedding_type fourier`` (``RandomFourierEmbedding``,
    its frequencies ``temb_fun.w`` kept as drawn: N(0, embedding_scale^2), never trained): the
    state dict and the network's output on fixed (z_t, t)."""
    torch, _, NCSNpp, _ = use_lsgm(repo)
    torch.manual_seed(0)
    args = lsgm_args(**kw)
    c_top = args.num_groups_per_scale * args.num_latent_per_group
    dae = NCSNpp(args, c_top)
    w = dae.temb_fun.w.detach().clone()
    randomize(torch, dae, seed=2)
    with torch.no_grad():
        dae.temb_fun.w.copy_(w)
    torch.save({"dae_state_dict": dae.state_dict(), "args": args},
               os.path.join(out_dir, f"{name}.pt"))  # fmt: skip
    g = torch.Generator().manual_seed(5)
    size = 8  # the top latent of the CIFAR-like fixture
    z_t = torch.randn(2, c_top, size, size, generator=g)
    t = torch.tensor([0.05, 0.7])
    dae.eval()
    with torch.no_grad():
        out = dae(z_t, t)
    np.savez_compressed(os.path.join(out_dir, f"{name}.npz"), z_t=z_t.numpy(), t=t.numpy(),
                        out=out.numpy())  # fmt: skip
    print(f"{name}: score model {sum(p.numel() for p in dae.parameters())} parameters")


def _decode(vae, eps_list):
    """The official decoder from given latents (``NVAE.sample``'s loop without its no_grad and
    output mapping): prior_ftr0, the combiner / decoder cells, postprocessing, the output conv."""
    s = vae.prior_ftr0.unsqueeze(0).expand(eps_list[0].shape[0], -1, -1, -1)
    idx = 0
    for cell in vae.dec_tower:
        if cell.cell_type == "combiner_dec":
            s = cell(s, vae.eps_conv[idx](eps_list[idx]))
            idx += 1
        else:
            s = cell(s)
    for cell in vae.post_process:
        s = cell(s)
    return vae.image_conditional(s)


def full_keys(repo: str) -> dict:
    """Key/shape lists of the released configurations' state dicts (VAE and score model)."""
    torch, NVAE, NCSNpp, utils = use_lsgm(repo)
    from score_sde import layers

    # abstract (meta) tensors: score_sde's initialiser names its device, 'cpu', as a default
    *rest, _device = layers.variance_scaling.__defaults__
    layers.variance_scaling.__defaults__ = (*rest, "meta")
    out = {}
    for name, kw in RELEASED.items():
        args = lsgm_args(**kw)
        arch = utils.get_arch_cells(args.arch_instance, args.use_se)
        # the IAF cells' masks are CPU tensors: a VAE with them is built for real
        with torch.device("meta" if not args.num_nf else "cpu"):
            vae = NVAE(args, arch)
        with torch.device("meta"):
            dae = NCSNpp(args, vae.latent_structure()[0])
        out[name] = {
            "args": {k: v for k, v in vars(args).items()},
            "vae": sd_list(vae.state_dict()),
            "dae": sd_list(dae.state_dict()),
            "num_params_vae": sum(p.numel() for p in vae.parameters()),
            "num_params_dae": sum(p.numel() for p in dae.parameters()),
        }
        print(f"full-size {name}: VAE {len(out[name]['vae'])} tensors "
              f"({out[name]['num_params_vae']} parameters), score model "
              f"{len(out[name]['dae'])} ({out[name]['num_params_dae']})")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lsgm", required=True, help="work tree of NVlabs/LSGM")
    parser.add_argument("--out", default="tests/fixtures/import")
    parser.add_argument("--only_fourier", action="store_true", help="the Fourier fixture only")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # the CIFAR-like score model with LSGM's Fourier time embedding (no README command uses it)
    lsgm_fourier_fixture(
        args.out, args.lsgm, "lsgm_fourier_score", num_latent_scales=2, num_groups_per_scale=2,
        num_latent_per_group=3, num_channels_dae=8, num_scales_dae=3, num_cell_per_scale_dae=1,
        embedding_dim=8, embedding_type="fourier", embedding_scale=16.0,
    )  # fmt: skip
    if args.only_fourier:
        return
    # CIFAR-like: DML decoder, res_bnswish, two latent scales with the input-skip pyramid, FIR
    # score model at 8x8 (no attention level)
    lsgm_fixture(
        args.out, args.lsgm, "lsgm_cifar_small",
        num_channels_enc=8, num_channels_dec=8, channel_mult=[1, 2, 2], num_latent_scales=2,
        num_groups_per_scale=2, num_latent_per_group=3, num_cell_per_cond_enc=1,
        num_cell_per_cond_dec=1, progressive_input_vae="input_skip", num_channels_dae=8,
        num_scales_dae=3, num_cell_per_scale_dae=1, embedding_dim=8,
    )  # fmt: skip
    # MNIST-like: Bernoulli decoder, res_mbconv cells, two IAF cells per group, one scale of
    # 16x16 latents, the score model's attention at 16
    lsgm_fixture(
        args.out, args.lsgm, "lsgm_mnist_small",
        dataset="mnist", decoder_dist="bin", num_channels_enc=8, num_channels_dec=8,
        channel_mult=[1, 2], num_preprocess_cells=2, num_postprocess_cells=2,
        num_groups_per_scale=2, num_latent_per_group=4, num_cell_per_cond_enc=1,
        num_cell_per_cond_dec=1, arch_instance="res_mbconv", num_channels_dae=8,
        num_scales_dae=2, num_cell_per_scale_dae=1, embedding_dim=8, fir=False,
        mixing_logit_init=-6.0, num_nf=2,
    )  # fmt: skip
    keys = full_keys(args.lsgm)
    with open(os.path.join(args.out, "lsgm_full_size_keys.json"), "w") as f:
        json.dump(keys, f)


if __name__ == "__main__":
    main()
