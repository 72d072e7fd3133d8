"""CLD score model on the 2-D 25-Gaussians mixture, sampled with SSCS (Dockhorn et al. 2022).

Sources: [paper] Dockhorn, Vahdat & Kreis, ICLR 2022; [code] nv-tlabs/CLD-SGM
``configs/default_toy_data.txt``; [ours] sized so the run trains in a few minutes on 2 CPU cores
(the official toy run is 800k iterations of batch 512).
"""

from configs.base import cld_config


def get_config():
    c = cld_config()
    c.data.name = "25gaussians"  # [ours] the mode-coverage benchmark (code: swissroll / diamond)

    c.process.name = "cld"
    c.process.m_inv = 4.0  # [paper][code] M^-1 = 4 (M = 0.25, Gamma = 1)
    c.process.gamma = 0.04  # [paper][code] v_0 ~ N(0, gamma M)
    c.process.beta0 = 4.0  # [paper][code] constant beta = 4 (beta_type linear, beta0 4, beta1 0)
    c.process.beta1 = 0.0  # [code]
    c.process.numerical_eps = 1e-6  # [code] toy numerical_eps

    c.objective.name = "hsm"
    c.objective.cld_objective = "hsm"  # [code] cld_objective hsm
    c.objective.weighting = "reweightedv2"  # [code] weighting reweightedv2
    c.objective.mixed_score = True  # [code] mixed_score true
    c.objective.t_min = 1e-5  # [code] loss_eps 1e-5
    c.objective.reduce = "sum"  # [code] summed over dimensions

    c.model.name = "mlp_score"  # [code] toy mlp gets raw t; here the runner's residual MLP
    c.model.hidden = 256  # [ours] (code: 4 x 128 SiLU)
    c.model.depth = 3  # [ours]
    c.model.embedding = "fourier"

    c.optim.lr = 2e-3  # [ours] (code: 1e-3 for 800k iterations)
    c.optim.warmup = 200  # [ours]
    c.optim.schedule = "cosine"  # [ours]
    c.optim.min_lr = 1e-4  # [ours]
    c.training.batch_size = 512  # [code] toy batch size 512
    c.training.num_steps = 6000  # [ours]
    c.training.n_jitted_steps = 50
    c.training.log_every = 500
    c.training.ckpt_every = 2000
    c.training.ema_decay = 0.999  # [code] toy EMA 0.999

    c.sampling.sampler = "sscs"  # [paper] Algorithm 1
    c.sampling.steps = 50  # [ours] 50 steps (+1 NFE for the final denoising step)
    c.sampling.grid = "quadratic"  # [paper] quadratic striding for low NFE
    c.sampling.t_min = 1e-3  # [code] sampling_eps 1e-3
    c.sampling.denoise = True  # [code] denoising true
    c.eval.likelihood_examples = 500
    return c
