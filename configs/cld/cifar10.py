"""CLD-SGM on CIFAR-10 (Dockhorn, Vahdat & Kreis, ICLR 2022): the published configuration.

Sources: [code] nv-tlabs/CLD-SGM ``configs/default_cifar10.txt`` and
``configs/specific_cifar10.txt``; [README] the official two-node training command
(``--n_gpus_per_node 8 --training_batch_size 8``, 2 nodes: batch 128); [paper] the ICLR 2022
paper; [cld.md] the project's reference notes (../shared/reference/cld.md); [ours] jaxdiff
choices where the official code has no counterpart.
"""

import ml_collections

from configs.base import cld_config


def get_config():
    c = cld_config()
    c.data.kind = "image"
    c.data.name = "cifar10"  # [code] dataset cifar10
    c.data.flip = True  # [code] random horizontal flips; center_image: data in [-1, 1]

    c.process.name = "cld"
    c.process.m_inv = 4.0  # [code] m_inv 4.0 (M = 0.25)
    c.process.gamma = 0.04  # [code] gamma 0.04
    c.process.beta0 = 4.0  # [code] beta_type linear, beta0 4.0
    c.process.beta1 = 0.0  # [code] beta1 0.0: constant beta = 4
    c.process.numerical_eps = 1e-9  # [code] numerical_eps 1e-9 (the paper's eps_num)

    c.objective.name = "hsm"
    c.objective.cld_objective = "hsm"  # [code] cld_objective hsm
    c.objective.weighting = "reweightedv2"  # [code] weighting reweightedv2
    c.objective.mixed_score = True  # [code] mixed_score true
    c.objective.t_min = 1e-5  # [code] loss_eps 1e-5
    c.objective.reduce = "sum"  # [code] losses.py sums over pixels

    c.model = ml_collections.ConfigDict()
    c.model.name = "ncsnpp"  # [code] name ncsnpp (input 6 channels (x, v), output 3 (eps_v))
    c.model.nf = 128  # [code] n_channels 128
    c.model.ch_mult = (1, 2, 2, 2)  # [code] ch_mult 1,2,2,2
    c.model.num_res_blocks = 8  # [code] n_resblocks 8
    c.model.attn_resolutions = (16,)  # [code] attn_resolutions 16
    c.model.dropout = 0.1  # [code] dropout 0.1
    c.model.resblock_type = "biggan"  # [code] resblock_type biggan
    c.model.resamp_with_conv = True  # [code] resamp_with_conv true
    c.model.fir = True  # [code] use_fir true
    c.model.fir_kernel = (1, 3, 3, 1)  # [code] fir_kernel 1,3,3,1
    c.model.skip_rescale = True  # [code] skip_rescale true
    c.model.progressive = "none"  # [code] progressive none
    c.model.progressive_input = "residual"  # [code] progressive_input residual
    c.model.progressive_combine = "sum"  # [code] progressive_combine sum
    # model.attention_type = "ddpm": [code] attention_type ddpm (the only choice here)
    c.model.embedding_type = "fourier"  # [code] embedding_type fourier (of log t) [cld.md 2.4]
    c.model.fourier_scale = 16.0  # [code] fourier_scale 16
    c.model.init_scale = 0.0  # [code] init_scale 0.0
    # model.normalization = "GroupNorm": [code] normalization GroupNorm (the only choice here)
    # model.nonlinearity = "swish": [code] nonlinearity swish (the only choice here)
    # model.conv_size = 3: [code] conv_size 3 (the only choice here)
    c.model.centered = True  # [code] center_image true
    # Parameter count: ~108M [cld.md 4.1, unverified: PSLD Tables 1-2].

    c.optim.lr = 2e-4  # [code] learning_rate 2e-4, optimizer Adam
    c.optim.b1 = 0.9  # [code] torch Adam defaults
    c.optim.b2 = 0.999  # [code]
    c.optim.eps = 1e-8  # [code]
    c.optim.weight_decay = 0.0  # [code] weight_decay 0.0
    c.optim.grad_clip = 1.0  # [code] grad_clip 1.0
    c.optim.warmup = 100_000  # [code] n_warmup_iters 100000 (linear warm-up)
    c.optim.schedule = "constant"  # [code] constant after the warm-up

    c.training.batch_size = 128  # [README] 2 nodes x 8 GPUs x 8 (paper Table 6 [unverified])
    c.training.num_steps = 800_000  # [code] n_train_iters 800000 (checkpoint_800000.pth)
    c.training.ema_decay = 0.9999  # [code] ema_rate 0.9999
    c.training.ema_warmup = True  # [code] EMA decay min(ema_rate, (1 + n) / (10 + n))
    c.training.log_every = 5000  # [code] log_freq 5000
    c.training.ckpt_every = 10_000  # [code] snapshot_freq 10000
    c.training.keep_every = 50_000  # [code] save_freq 50000
    c.training.precision = "float32"  # [ours] the official fp16 autocast hit inf (issue #3)

    c.sampling.sampler = "ode_dopri5"  # [code] sampling_method ode (RK45 via scipy) [cld.md 3.4]
    c.sampling.rtol = 1e-5  # [code] sampling_rtol 1e-5
    c.sampling.atol = 1e-5  # [code] sampling_atol 1e-5
    c.sampling.steps = 150  # [paper] SSCS-QS at 150 NFE when sampler = sscs [unverified]
    c.sampling.grid = "quadratic"  # [paper] quadratic striding for SSCS / EM
    c.sampling.t_min = 1e-3  # [code] sampling_eps 1e-3
    c.sampling.denoise = True  # [code] denoising true
    c.sampling.num = 50_000  # [paper] FID on 50k samples
    c.sampling.batch_size = 1000  # [ours] drawn 1000 at a time, straight to Inception features

    c.eval.num_samples = 50_000  # [paper] FID-50k
    c.eval.likelihood = True  # [code] eval_likelihood: the bits/dim bound (App. B.5)
    c.eval.split = "test"  # [paper] bits/dim on the CIFAR-10 test set, dequantised
    c.eval.divergence = "hutchinson_rademacher"  # [code] Rademacher probe, one per ODE solve
    return c
