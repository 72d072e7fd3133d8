"""The shared base of every experiment config (``get_config()`` files build on it).

Each section mirrors one object the runner builds (``jaxdiff.build``); method-specific sections
(``cld`` keys in ``process``, ``ddgan``, ``lsgm``) are added by the experiment files. The CLI
locks the result, so a misspelled override fails at once.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.method = "score"  # score | ddgan | lsgm
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.kind = "toy"  # toy | image
    c.data.name = "25gaussians"
    c.data.data_dir = ""  # tfds data_dir, or the .npz file / image folder
    c.data.image_size = 0  # 0: the dataset's own size
    c.data.flip = False  # random horizontal flips (CIFAR-10, CelebA-HQ)

    c.process = ml_collections.ConfigDict()
    c.process.name = "vp"  # vp | subvp | ve | cld
    c.process.schedule = "linear"  # linear | cosine | geometric (VP and sub-VP)
    c.process.beta_min = 0.1  # Song et al. 2021, VP defaults
    c.process.beta_max = 20.0
    c.process.end_time = 1.0

    c.objective = ml_collections.ConfigDict()
    c.objective.name = "dsm"
    c.objective.parameterisation = "eps"  # eps | score | eps_skip
    c.objective.data_mean = 0.0  # eps_skip: the Gaussian N(data_mean, data_var I) it skips through
    c.objective.data_var = 1.0
    c.objective.weighting = "sigma2"  # sigma2 | likelihood | likelihood_is
    c.objective.t_min = 1e-5  # training times t ~ [t_min, T] (score_sde: 1e-5)
    c.objective.reduce = "sum"  # sum | mean over dimensions

    c.model = ml_collections.ConfigDict()
    c.model.name = "mlp_score"
    c.model.hidden = 128
    c.model.depth = 3
    c.model.embedding = "fourier"  # fourier | sinusoidal
    c.model.embed_dim = 64
    c.model.input_frequencies = 0  # Fourier features of the input (toy MLPs)
    c.model.input_scale = 4.0

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 2e-4  # score_sde CIFAR-10
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 1.0
    c.optim.warmup = 0
    c.optim.schedule = "constant"  # constant | cosine
    c.optim.min_lr = 0.0

    c.training = ml_collections.ConfigDict()
    c.training.batch_size = 128  # global batch over all devices and processes
    c.training.num_steps = 1000
    c.training.n_jitted_steps = 1  # optimisation steps per jit call (score_sde's option)
    c.training.grad_accum = 1  # micro-batches per optimiser update
    c.training.ema_decay = 0.999
    c.training.ema_warmup = False  # decay min(ema_decay, (1 + n) / (10 + n)) (score_sde, CLD)
    c.training.loop = "auto"  # steps of a call / micro-batches: auto | unroll | scan | dispatch
    c.training.log_every = 100
    c.training.ckpt_every = 1000
    c.training.keep = 2  # keep the last N checkpoints ...
    c.training.keep_every = 0  # ... plus every K-th step (0: none)
    c.training.snapshot_every = 0  # sample picture every K steps (0: only at the end)
    c.training.eval_at_end = True
    c.training.eval_every = 0  # in-training evaluation (FID of images) every K steps (0: never)
    c.training.precision = "float32"  # float32 | bfloat16 (network compute only)

    c.sampling = ml_collections.ConfigDict()
    c.sampling.sampler = "em"
    c.sampling.steps = 1000
    c.sampling.grid = "uniform"  # a time grid of jaxdiff.solvers.grids
    c.sampling.t_min = 1e-3  # score_sde's sampling eps for VP
    c.sampling.denoise = True
    c.sampling.rtol = 1e-5
    c.sampling.atol = 1e-5
    c.sampling.snr = 0.16
    c.sampling.n_corrector = 1
    c.sampling.num = 2000  # samples drawn by `jaxdiff sample` and for the end-of-run picture
    c.sampling.batch_size = 0  # samples per jitted call, over all devices (0: all at once)

    c.eval = ml_collections.ConfigDict()
    c.eval.num_samples = 5000
    c.eval.likelihood = True
    c.eval.likelihood_examples = 1000
    c.eval.divergence = "exact"  # exact | hutchinson_gaussian | hutchinson_rademacher
    c.eval.split = ""  # held-out images for bits/dim: 'test' (tfds, offline sets), a path
    c.eval.fid_num = 0  # samples for the FID during and after training (0: none)
    c.eval.fid_stats = ""  # reference statistics ('': made from the training data, cached)
    return c


def drop(c: ml_collections.ConfigDict, *paths: str) -> ml_collections.ConfigDict:
    """Removes sections or keys (``'objective'``, ``'sampling.rtol'``) that a method does not
    read: every key left in a config is read by ``jaxdiff.build`` (tests/test_build.py)."""
    for path in paths:
        *parents, last = path.split(".")
        node = c
        for p in parents:
            node = node[p]
        del node[last]
    return c


def ddgan_config() -> ml_collections.ConfigDict:
    """The base for DDGAN: G is ``model``, D is ``ddgan.disc``; the optimiser section is shared
    by G (``lr``) and D (``lr_d``); sampling is the T-step chain (``num``, ``batch_size``)."""
    c = base_config()
    c.method = "ddgan"
    drop(c, "process", "objective", "sampling", "eval")
    drop(c, *(f"model.{k}" for k in list(c.model.keys()) if k != "name"))
    c.optim.lr_d = c.optim.lr
    c.sampling = ml_collections.ConfigDict({"num": 2000, "batch_size": 0})
    c.eval = ml_collections.ConfigDict({"num_samples": 5000, "fid_num": 0, "fid_stats": ""})
    return c


def lsgm_config() -> ml_collections.ConfigDict:
    """The base for LSGM: networks in ``lsgm.vae`` / ``lsgm.score``, optimisers in
    ``optim.vae`` / ``optim.prior`` (set by the experiment files), the prior's EMA decay in
    ``training.ema_decay``; ``sampling.temp`` scales the Normal groups outside the prior."""
    c = base_config()
    c.method = "lsgm"
    drop(c, "objective", "model", "optim", "sampling.snr", "sampling.n_corrector")
    c.sampling.temp = 1.0
    c.eval.divergence = "auto"  # exact for latents of <= 16 dimensions, else Hutchinson
    return c


def cld_config() -> ml_collections.ConfigDict:
    """The base for CLD score models: the ``process`` and ``objective`` sections hold CLD's keys
    (set by the experiment files), none of the scalar-SDE ones."""
    c = base_config()
    drop(c, "process.schedule", "process.beta_min", "process.beta_max", "process.end_time")
    drop(c, "objective.parameterisation", "objective.data_mean", "objective.data_var")
    return c
