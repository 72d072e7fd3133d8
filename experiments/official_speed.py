"""The official PyTorch training steps of DDPM++, CLD and DDGAN on this CPU, against jaxdiff's.

Run with the separate torch venv (``/work/torchenv/bin/python``); jaxdiff never imports this file
and this file never imports jaxdiff. The venv (CPU torch; the default wheel needs CUDA)::

    python3 -m venv /work/torchenv && /work/torchenv/bin/pip install "torch==2.13.0+cpu" --no-deps
    /work/torchenv/bin/pip install numpy scipy filelock typing_extensions sympy networkx jinja2 \
        fsspec mpmath markupsafe "setuptools>=77" ml-collections

(CLD-SGM's ``util/utils.py`` imports scipy.) It needs the three official repositories exported
as plain trees under ``--src`` (``/tmp/official`` by default), e.g. from the fetch tool's bare
git dirs::

    mkdir -p /tmp/official/NAME && git --git-dir=D archive HEAD | tar -x -C /tmp/official/NAME

(``git archive`` stops at blobs missing from a partial snapshot: exporting just the ``*.py`` and
``*.txt`` files with ``git show HEAD:path`` is enough.) NAME: ``score_sde_pytorch`` (yang-song),
``CLD-SGM`` (nv-tlabs), ``denoising-diffusion-gan`` (NVlabs).

What is timed, batch 8 of random images in [-1, 1], float32, ``--threads`` torch threads:

* ``ddpmpp``: score_sde_pytorch ``configs/vp/cifar10_ddpmpp_continuous.py``; the official
  ``losses.get_step_fn`` (continuous VP loss, backward, warm-up lr, grad clip 1, Adam) and the
  EMA update ``run_lib.train`` does after every step.
* ``cld``: CLD-SGM ``configs/default_cifar10.txt`` + ``specific_cifar10.txt`` (NCSN++, 8 res
  blocks per level, HSM); the official ``losses.get_step_fn`` (it updates the EMA itself).
  ``autocast_train`` is set False: the config's CUDA autocast and GradScaler are no-ops on the CPU.
* ``ddgan``: denoising-diffusion-gan ``train_ddgan.py``'s inner loop body, the README's CIFAR-10
  flags (nf 128, ch_mult 1 2 2 2, n_mlp 4, z_emb 256, T 4, r1_gamma 0.02, use_ema): the D step
  with R1 on every step (``lazy_reg`` None), then the G step; the coefficient helpers are the
  official ones (``q_sample_pairs``, ``sample_posterior``).

The CUDA-only ops (``op/upfirdn2d``, ``op/fused_act``: JIT-compiled C++/CUDA extensions) are
loaded through ``torch.utils.cpp_extension.load``, which is replaced by a function returning None
before the import: both files already take their own pure-PyTorch path when the input is on the
CPU (``upfirdn2d_native``, ``F.leaky_relu``), so the extension is never called. torchvision,
matplotlib and the data-set modules that ``train_ddgan.py`` / CLD-SGM's ``util/utils.py`` import
for data loading and image saving are stubbed (not used by a training step).

Each configuration runs in its own subprocess (the three repositories share module names);
``--warmup`` steps, then the median of ``--reps`` timed steps::

    /work/torchenv/bin/python experiments/official_speed.py [--configs ddpmpp cld ddgan]
        [--reps 3] [--warmup 5] [--threads 2] [--json out.json]

``--compare``: per configuration, the official step, then jaxdiff's
``experiments/train_throughput.py`` for the same configuration (bare step and trainer steps,
``--jitted``), then the official step again, so both sides see the same machine load; prints
the ratio table (official seconds: the mean of the two runs around jaxdiff's; ``--no-bracket``:
only the run before)::

    /work/torchenv/bin/python experiments/official_speed.py --compare
        [--jax-python .venv/bin/python] [--jitted 1 5] [--jax-reps 2] [--no-bracket]
        [--json out.json]

``--lockstep ROUNDS``: the same comparison with both sides warm at once, for a machine whose
speed drifts between runs (a shared VM: the same step moved 30% within minutes). Per config,
jaxdiff's bare step is compiled in one server process and kept; the official step, then the
trainer's step at each ``--jitted`` n, are brought up in turn in a second process; the two then
alternate one step each for ROUNDS rounds (the order reversed every other round; the idle one
waits on its stdin, so only one computes at a time). The table gives each side's median and the
median of the per-round ratios. A trainer server is skipped, with a line saying so, when the
machine has not the memory for a second jaxdiff process of the bare one's size (CLD at batch 8
needs about 13 GB each with the kept heap)::

    /work/torchenv/bin/python experiments/official_speed.py --lockstep 5
        [--configs ddpmpp ddgan cld] [--jitted 1 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPOS = {"ddpmpp": "score_sde_pytorch", "cld": "CLD-SGM", "ddgan": "denoising-diffusion-gan"}
BATCH_DEFAULT = 8


class _Stub(types.ModuleType):
    """A module whose every attribute is a do-nothing callable (for unused imports)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *a, **k: None


def _stub_modules(*names: str) -> None:
    for name in names:
        sys.modules.setdefault(name, _Stub(name))


def _no_cuda_extensions() -> None:
    """The official ``op`` packages JIT-build CUDA kernels at import; on the CPU they are unused."""
    import torch.utils.cpp_extension as ext

    ext.load = lambda *a, **k: None


def _n_params(*modules) -> float:
    return sum(p.numel() for m in modules for p in m.parameters()) / 1e6


def _timed(step, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def build_ddpmpp(src: str, batch: int):
    """score_sde_pytorch: (step function, parameter count in millions)."""
    import torch

    sys.path.insert(0, src)
    _no_cuda_extensions()
    import losses
    import sde_lib
    from configs.vp.cifar10_ddpmpp_continuous import get_config
    from models import ncsnpp  # noqa: F401  (registers the model)
    from models import utils as mutils
    from models.ema import ExponentialMovingAverage

    config = get_config()
    config.device = torch.device("cpu")
    config.training.batch_size = batch
    model = mutils.create_model(config)
    ema = ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
    optimizer = losses.get_optimizer(config, model.parameters())
    state = dict(optimizer=optimizer, model=model, ema=ema, step=0)
    sde = sde_lib.VPSDE(config.model.beta_min, config.model.beta_max, config.model.num_scales)
    step_fn = losses.get_step_fn(
        sde, train=True, optimize_fn=losses.optimization_manager(config),
        reduce_mean=config.training.reduce_mean, continuous=config.training.continuous,
        likelihood_weighting=config.training.likelihood_weighting,
    )  # fmt: skip
    x = torch.rand(batch, 3, 32, 32) * 2 - 1

    def step():
        step_fn(state, x)
        state["ema"].update(model.parameters())  # run_lib.train: after every step

    return step, _n_params(model)


def _read_cld_config(src: str, *names: str) -> dict:
    """CLD-SGM's ``key = value`` config files, typed as its ``main.py`` parser types them."""
    import re

    types_ = {}  # main.py: p.add('--key', type=int) / action='store_true' / untyped: str
    for m in re.finditer(r"p\.add\('--(\w+)'([^)]*)\)", open(os.path.join(src, "main.py")).read()):
        rest = m.group(2)
        types_[m.group(1)] = (
            int if "type=int" in rest else float if "type=float" in rest
            else bool if "store_" in rest else str
        )  # fmt: skip
    out = {}
    for name in names:
        for line in open(os.path.join(src, "configs", name)):
            line = line.split("#")[0].strip()
            if "=" not in line:
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            cast = types_.get(key, str)
            out[key] = value == "true" if cast is bool else cast(value)
    return out


def build_cld(src: str, batch: int):
    """CLD-SGM: (step function, parameter count in millions)."""
    import torch

    sys.path.insert(0, src)
    _no_cuda_extensions()
    _stub_modules("torchvision", "torchvision.utils", "matplotlib", "matplotlib.pyplot")
    import losses
    import sde_lib
    from models import ncsnpp  # noqa: F401  (registers the model)
    from models import utils as mutils
    from models.ema import ExponentialMovingAverage
    from util.utils import build_beta_fn, build_beta_int_fn, get_optimizer, optimization_manager

    cfg = _read_cld_config(src, "default_cifar10.txt", "specific_cifar10.txt")
    cfg.update(device=torch.device("cpu"), training_batch_size=batch, autocast_train=False)
    config = argparse.Namespace(**cfg)
    sde = sde_lib.CLD(config, build_beta_fn(config), build_beta_int_fn(config))
    model = mutils.create_model(config)
    ema = ExponentialMovingAverage(model.parameters(), decay=config.ema_rate)
    optimizer = get_optimizer(config, model.parameters())
    state = dict(optimizer=optimizer, model=model, ema=ema, step=0)
    step_fn = losses.get_step_fn(True, optimization_manager(config), sde, config)
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    return (lambda: step_fn(state, x)), _n_params(model)


def build_ddgan(src: str, batch: int):
    """denoising-diffusion-gan: (step function, parameter count in millions)."""
    import torch
    import torch.nn.functional as F
    from torch import nn, optim

    sys.path.insert(0, src)
    _no_cuda_extensions()
    _stub_modules(
        "torchvision", "torchvision.transforms", "torchvision.datasets", "torchvision.utils",
        "datasets_prep", "datasets_prep.lsun", "datasets_prep.stackmnist_data",
        "datasets_prep.lmdb_datasets",
    )  # fmt: skip
    import train_ddgan as official
    from EMA import EMA
    from score_sde.models.discriminator import Discriminator_small
    from score_sde.models.ncsnpp_generator_adagn import NCSNpp

    # train_ddgan.py's argument defaults with the README's CIFAR-10 flags
    args = argparse.Namespace(
        image_size=32, num_channels=3, centered=True, use_geometric=False, beta_min=0.1,
        beta_max=20.0, num_channels_dae=128, n_mlp=4, ch_mult=[1, 2, 2, 2], num_res_blocks=2,
        attn_resolutions=(16,), dropout=0.0, resamp_with_conv=True, conditional=True, fir=True,
        fir_kernel=[1, 3, 3, 1], skip_rescale=True, resblock_type="biggan", progressive="none",
        progressive_input="residual", progressive_combine="sum", embedding_type="positional",
        fourier_scale=16.0, not_use_tanh=False, nz=100, num_timesteps=4, z_emb_dim=256,
        t_emb_dim=256, ngf=64, lr_g=1.6e-4, lr_d=1.25e-4, beta1=0.5, beta2=0.9, use_ema=True,
        ema_decay=0.9999, r1_gamma=0.02, lazy_reg=None,
    )  # fmt: skip
    device = torch.device("cpu")
    net_g = NCSNpp(args).to(device)
    net_d = Discriminator_small(
        nc=2 * args.num_channels, ngf=args.ngf, t_emb_dim=args.t_emb_dim, act=nn.LeakyReLU(0.2)
    ).to(device)
    opt_d = optim.Adam(net_d.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2))
    opt_g = optim.Adam(net_g.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2))
    opt_g = EMA(opt_g, ema_decay=args.ema_decay)
    coeff = official.Diffusion_Coefficients(args, device)
    pos_coeff = official.Posterior_Coefficients(args, device)
    real = torch.rand(batch, 3, 32, 32) * 2 - 1

    def step():  # train_ddgan.train's loop body, lazy_reg None
        for p in net_d.parameters():
            p.requires_grad = True
        net_d.zero_grad()
        t = torch.randint(0, args.num_timesteps, (batch,))
        x_t, x_tp1 = official.q_sample_pairs(coeff, real, t)
        x_t.requires_grad = True
        d_real = net_d(x_t, t, x_tp1.detach()).view(-1)
        F.softplus(-d_real).mean().backward(retain_graph=True)
        grad_real = torch.autograd.grad(outputs=d_real.sum(), inputs=x_t, create_graph=True)[0]
        r1 = grad_real.view(grad_real.size(0), -1).norm(2, dim=1) ** 2
        (args.r1_gamma / 2 * r1.mean()).backward()
        z = torch.randn(batch, args.nz)
        x_0 = net_g(x_tp1.detach(), t, z)
        x_pos = official.sample_posterior(pos_coeff, x_0, x_tp1, t)
        F.softplus(net_d(x_pos, t, x_tp1.detach()).view(-1)).mean().backward()
        opt_d.step()
        for p in net_d.parameters():
            p.requires_grad = False
        net_g.zero_grad()
        t = torch.randint(0, args.num_timesteps, (batch,))
        x_t, x_tp1 = official.q_sample_pairs(coeff, real, t)
        z = torch.randn(batch, args.nz)
        x_0 = net_g(x_tp1.detach(), t, z)
        x_pos = official.sample_posterior(pos_coeff, x_0, x_tp1, t)
        F.softplus(-net_d(x_pos, t, x_tp1.detach()).view(-1)).mean().backward()
        opt_g.step()

    return step, _n_params(net_g) + _n_params(net_d)


BUILDERS = {"ddpmpp": build_ddpmpp, "cld": build_cld, "ddgan": build_ddgan}


def _build(name: str, args):
    """(step, parameter count in millions) of one official configuration, in this process."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    src = os.path.join(args.src, REPOS[name])
    os.chdir(src)
    return BUILDERS[name](src, args.batch)


def worker(name: str, args) -> dict:
    """Times one official configuration in this process."""
    import torch

    step, params_m = _build(name, args)
    times = _timed(step, args.warmup, args.reps)
    return dict(
        config=name, s=statistics.median(times), times=times, params_m=params_m,
        threads=torch.get_num_threads(), torch=torch.__version__, batch=args.batch,
    )  # fmt: skip


def serve(name: str, args) -> None:
    """Lock-step server (``--lockstep``): build, ``--warmup`` steps, one JSON line; then per
    stdin line ``run`` one timed step, its seconds printed; exit at end of input."""
    import torch

    t0 = time.perf_counter()
    step, params_m = _build(name, args)
    for _ in range(max(args.warmup, 1)):
        step()
    print(json.dumps(dict(what="official", warm_s=time.perf_counter() - t0, params_m=params_m,
                          threads=torch.get_num_threads())), flush=True)  # fmt: skip
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        step()
        print(json.dumps(dict(s=time.perf_counter() - t0)), flush=True)


class _Server:
    """A warm lock-step server process: ``run()`` times one step (seconds per step)."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT)  # fmt: skip
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"lock-step server {self.proc.args} exited ({self.proc.wait()})")
        return json.loads(line)

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()["s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _rss_gb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 2**20


def _available_gb() -> float:
    with open("/proc/meminfo") as f:
        return int(f.read().split("MemAvailable:")[1].split()[0]) / 2**20


def _lockstep_rounds(servers: dict, rounds: int) -> dict[str, list[float]]:
    """``rounds`` rounds, one step of each server per round, the order reversed every other
    round (so a drifting machine load favours neither side); only one runs at a time."""
    times = {k: [] for k in servers}
    for r in range(rounds):
        for k in list(servers)[:: 1 if r % 2 == 0 else -1]:
            times[k].append(servers[k].run())
        print("#   round " + str(r + 1) + ": "
              + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)  # fmt: skip
    return times


def lockstep(args) -> list[dict]:
    """Per config: jaxdiff's bare step kept warm in one process, and in turn the official step
    and the trainer's step (each ``--jitted`` n) warm in a second process; the two alternate
    step by step for ``--lockstep`` rounds. Ratios are medians of the per-round ratios."""
    rows = []
    med = statistics.median
    print(f"# lock-step, batch {args.batch}, torch threads {args.threads}, "
          f"{args.lockstep} rounds, load average {_load()}", flush=True)  # fmt: skip
    jax_cmd = [args.jax_python, os.path.join(ROOT, "experiments", "train_throughput.py"),
               "--batch", str(args.batch), "--serve"]  # fmt: skip
    for name in args.configs:
        bare = _Server([*jax_cmd, name, "bare"])
        print(f"# {name}: jaxdiff bare step warm after {bare.info['warm_s']:.0f} s", flush=True)
        official_cmd = [sys.executable, os.path.abspath(__file__), "--serve", name,
                        "--src", args.src, "--warmup", str(args.warmup),
                        "--threads", str(args.threads), "--batch", str(args.batch)]  # fmt: skip
        others = [("official", official_cmd)]
        others += [(f"trainer{n}", [*jax_cmd, name, f"trainer{n}"]) for n in args.jitted]
        for key, cmd in others:
            need, free = _rss_gb(bare.proc.pid), _available_gb()
            if key != "official" and free < 1.1 * need:  # a second jaxdiff process of this size
                print(f"# {name}: {key} skipped: a second jaxdiff process needs about "
                      f"{need:.1f} GB, {free:.1f} GB available", flush=True)  # fmt: skip
                continue
            other = _Server(cmd)
            print(f"# {name}: {other.info['what']} warm after {other.info['warm_s']:.0f} s, "
                  f"load {_load()}", flush=True)  # fmt: skip
            t = _lockstep_rounds({"bare": bare, key: other}, args.lockstep)
            other.close()
            ratio = med([o / b for o, b in zip(t[key], t["bare"], strict=True)])
            rows.append(dict(config=name, what=other.info["what"], s=med(t[key]),
                             bare_s=med(t["bare"]), ratio=ratio, times=t[key],
                             bare_times=t["bare"]))  # fmt: skip
            if args.json:  # as they come: a later config may run out of memory
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
        bare.close()
    print(f"# load average at the end {_load()}")
    print("| config | against jaxdiff's bare step | its s/step | bare s/step (same rounds) "
          "| its time / bare's (median per round) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['what']} | {r['s']:.2f} | {r['bare_s']:.2f} "
              f"| {r['ratio']:.3f} |")  # fmt: skip
    return rows


def official(name: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--src", args.src,
           "--reps", str(args.reps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--batch", str(args.batch)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"official {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def jaxdiff(name: str, args) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [args.jax_python, os.path.join(ROOT, "experiments", "train_throughput.py"),
               "--configs", name, "--reps", str(args.jax_reps), "--batch", str(args.batch),
               "--no-fwd-bwd", "--json", f.name, "--jitted", *map(str, args.jitted)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            sys.exit(f"jaxdiff {name} failed:\n{out.stderr[-3000:]}")
        print(out.stdout.rstrip(), flush=True)
        return json.load(open(f.name))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def compare(args) -> list[dict]:
    rows = []
    print(f"# batch {args.batch}, torch threads {args.threads}, load average {_load()}")
    for name in args.configs:
        before = official(name, args)
        print(f"# official {name}: {before['s']:.3f} s ({before['params_m']:.1f}M), "
              f"load {_load()}", flush=True)  # fmt: skip
        jax_rows = jaxdiff(name, args)
        runs = [before["s"]]
        if args.bracket:
            runs.append(official(name, args)["s"])
            print(f"# official {name} again: {runs[-1]:.3f} s, load {_load()}", flush=True)
        off_s = statistics.mean(runs)
        for r in jax_rows:
            rows.append(dict(config=name, what=r["what"], s=r["s"], official_s=off_s,
                             official_runs=runs,
                             speed=off_s / r["s"], ratio_to_bare=r.get("ratio")))  # fmt: skip
    print(f"# load average at the end {_load()}")
    print("| config | jaxdiff | jaxdiff s/step | official s/step (runs) | official / jaxdiff |")
    print("|---|---|---|---|---|")
    for r in rows:
        runs = ", ".join(f"{s:.2f}" for s in r["official_runs"])
        print(f"| {r['config']} | {r['what']} | {r['s']:.2f} | {r['official_s']:.2f} ({runs}) "
              f"| {r['speed']:.2f}x |")  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=list(REPOS), choices=list(REPOS))
    ap.add_argument("--src", default="/tmp/official", help="the exported official repositories")
    ap.add_argument("--batch", type=int, default=BATCH_DEFAULT)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps (PyTorch settles in 3-4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="", help="write the rows here")
    ap.add_argument("--compare", action="store_true", help="interleave with jaxdiff's steps")
    ap.add_argument("--jax-python", default=os.path.join(ROOT, ".venv", "bin", "python"))
    ap.add_argument("--jax-reps", type=int, default=2, help="--compare: train_throughput --reps")
    ap.add_argument("--jitted", type=int, nargs="*", default=[1, 5], help="--compare: trainer n")
    ap.add_argument(
        "--no-bracket", dest="bracket", action="store_false",
        help="--compare: the official step only before jaxdiff's, not also after",
    )  # fmt: skip
    ap.add_argument(
        "--lockstep", type=int, default=0, metavar="ROUNDS",
        help="warm servers alternating step by step (official, trainer n) against jaxdiff's bare",
    )  # fmt: skip
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--serve", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    if args.serve:
        serve(args.serve, args)
        return
    if args.lockstep:
        rows = lockstep(args)
    elif args.compare:
        rows = compare(args)
    else:
        rows = []
        print("| config | official s/step | steps timed | parameters |")
        print("|---|---|---|---|")
        for name in args.configs:
            r = official(name, args)
            rows.append(r)
            print(f"| {name} | {r['s']:.3f} | {len(r['times'])} | {r['params_m']:.1f}M |",
                  flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
