"""LSGM on the 2-D 25-Gaussians mixture: a small MLP VAE with a 2-D latent and an MLP score prior.

Not in the paper (lsgm.md: "the repo contains no toy or CPU config"); it exercises the whole
pipeline on 2 CPU cores in a few minutes. Sources: [paper]/[code]/[README] as in lsgm.md
(Vahdat et al. 2021, NVlabs/LSGM); [ours] a CPU-scale choice. Measured results: docs/lsgm.md.
"""

import ml_collections

from configs.base import drop, lsgm_config


def lsgm_section() -> ml_collections.ConfigDict:
    """The ``lsgm`` section with LSGM's defaults (shared by the image configs)."""
    c = ml_collections.ConfigDict()
    c.likelihood = "gaussian"  # gaussian | bernoulli | logistic (decoder p(x|z))
    c.stage1_steps = 2000  # VAE with N(0, I) prior [code: train_vae.py]
    c.stage2_steps = 4000  # end to end [code: train_vada.py --train_vae]
    c.stage3 = False  # new score model on the frozen VAE (CelebA-HQ qualitative only) [README]
    c.q_sampling = "iw"  # [code] iw_sample_q = ll_iw (MNIST/OMNIGLOT) / ll_uniform (CIFAR NLL)
    c.p_weighting = "ll"  # ll | un | re: w_ll, w_un (drop_all), w_re (drop_sigma2t) [code]
    c.p_sampling = "iw"  # iw | uniform [code] iw_sample_p
    c.t_min = 0.0  # [code] time_eps: 0 for the geometric VPSDE, 0.01 for the linear VPSDE
    c.mixing_logit_init = -3.0  # [code] --mixing_logit_init default -3 (MNIST/CelebA: -6)
    c.kl_min = 1e-4  # [code] train_vae.py --kl_const_coeff 0.0001
    c.kl_max_stage1 = 0.7  # [README] --kl_max_coeff 0.7 (MNIST, CIFAR FID/NLL VAEs)
    c.kl_anneal_portion = 1.0  # [README] --kl_anneal_portion 1.0
    c.cont_kl_anneal = True  # [README] --cont_kl_anneal: 0.7 -> 1 over the first 10 % of stage 2
    c.cont_kl_portion = 0.1  # [code]
    c.sr_vae = 0.0  # spectral regularisation lambda, VAE [README: 1e-2]; off for the toy MLPs
    c.sr_prior = 0.0  # SGM [README: 1e-2 / 0 / 1e-3 per dataset]
    c.update_q_ema = False  # [README] only the CelebA-HQ disjoint recipe
    return c


def lsgm_optim() -> ml_collections.ConfigDict:
    """LSGM's two optimisers (``optim.vae``, ``optim.prior``) with LSGM's defaults."""
    o = ml_collections.ConfigDict()
    o.vae = ml_collections.ConfigDict()
    o.vae.lr_stage1 = 2e-3  # [ours] (paper stage 1: Adamax 1e-2 -> 1e-4, here Adam)
    o.vae.min_lr_stage1 = 1e-4  # [code] --learning_rate_min 1e-4
    o.vae.warmup_stage1 = 100  # [ours] (paper: 5 epochs)
    o.vae.lr = 5e-4  # [ours] (paper stage 2: --learning_rate_vae 1e-4)
    o.vae.min_lr = 1e-5  # [code] --learning_rate_min_vae 1e-5
    o.vae.eps = 1e-3  # [code] Adam eps 1e-3 for the VAE
    o.vae.weight_decay = 0.0  # [ours] (paper: 3e-4 L2)
    o.prior = ml_collections.ConfigDict()
    o.prior.lr = 1e-3  # [ours] (paper: --learning_rate_dae 3e-4 MNIST, 1e-4 CIFAR)
    o.prior.eps = 1e-4  # [code] Adam eps 1e-4 for the SGM
    o.prior.warmup = 100  # [ours] (paper: 20 epochs MNIST)
    o.prior.weight_decay = 0.0  # [ours] (paper: 3e-4 L2)

    return o


def get_config():
    c = lsgm_config()
    c.data.kind = "toy"
    c.data.name = "25gaussians"
    c.process.name = "vp"
    c.process.schedule = "geometric"  # [paper] App. B geometric VPSDE
    drop(c, "process.beta_min", "process.beta_max")  # not the geometric schedule's
    c.process.sigma2_min = 3e-5  # [code] --sigma2_min 3e-5
    c.process.sigma2_max = 0.999  # [code] --sigma2_max 0.999

    c.lsgm = lsgm_section()
    c.optim = lsgm_optim()
    c.lsgm.vae = ml_collections.ConfigDict()
    c.lsgm.vae.name = "toy_vae"  # [ours] nets/flat_vae.ToyVAE (MLP encoder / decoder)
    c.lsgm.vae.latent_dim = 2  # [ours]
    c.lsgm.vae.hidden = 256  # [ours]
    c.lsgm.vae.depth = 3  # [ours]
    # the toy latent is far from Normal: a larger initial alpha and prior lr than published
    c.lsgm.mixing_logit_init = -1.0  # [ours] (published -3 / -6: alpha stays ~0.05 here)
    c.optim.prior.lr = 2e-3  # [ours]
    # Stage 2 keeps sharpening the posterior (rate 3.6 -> 4.9 nats, recon -0.2 -> -4.5 nats over
    # 10k steps); samples are decoder means, smeared by posterior noise x decoder slope until
    # then (docs/lsgm.md, "Why the samples were smeared"): a long stage 2 at the stage-1 lr.
    c.lsgm.stage2_steps = 10000  # [ours] (4000: 44 % high-quality samples)
    c.optim.vae.lr = 2e-3  # [ours] (paper stage 2: 1e-4; 5e-4 here: 72 % after 8k steps)
    c.lsgm.score = ml_collections.ConfigDict()
    c.lsgm.score.name = "mlp_score"  # [ours] nets/mlp.MLPScoreNet
    c.lsgm.score.hidden = 256  # [ours]
    c.lsgm.score.depth = 3  # [ours]
    c.lsgm.score.embedding = "fourier"  # [ours]
    c.lsgm.score.embed_dim = 64  # [ours]
    c.lsgm.score.input_frequencies = 4  # [ours] Fourier features of z (nets/mlp.py)
    c.lsgm.score.input_scale = 4.0  # [ours]

    c.training.batch_size = 256  # [ours]
    c.training.num_steps = c.lsgm.stage1_steps + c.lsgm.stage2_steps
    c.training.n_jitted_steps = 50
    c.training.log_every = 500
    c.training.ckpt_every = 1000
    c.sampling.sampler = "ode_dopri5"  # [code] SciPy RK45 = Dormand-Prince 5(4)
    c.sampling.rtol = 1e-5  # [code] --ode_solver_tol 1e-5
    c.sampling.atol = 1e-5
    c.sampling.t_min = 1e-5  # [code] --ode_eps 1e-5
    c.sampling.denoise = False  # [code] the ODE ends at ode_eps; z is decoded as is
    c.sampling.num = 2000
    c.eval.num_samples = 5000
    c.eval.likelihood_examples = 500
    return c
