"""LSGM on CelebA-HQ-256, the quantitative model (FID 7.22 at 23 NFE, ODE tol 1e-2 [project
page, README]).

Sources: [README] official NVlabs/LSGM README commands; [code] train_vae.py / train_vada.py
defaults; [lsgm.md] the project's notes. [unverified] marks values lsgm.md derives or recalls.
Deviations: no IAF flow cells (NF 2 upstream), BatchNorm without running statistics, no fp16
(docs/lsgm.md). Needs the tfds CelebA-HQ-256 copy (data.data_dir).
``stage3`` switches on the qualitative model's stage 3 (a new SGM on the frozen VAE).
"""

import ml_collections

from configs.base import lsgm_config
from configs.lsgm.binarized_mnist import _sampling
from configs.toy.lsgm import lsgm_optim, lsgm_section

# [code] the NVAE split: 27,000 training images; batch 64 (4 per GPU x 16) -> 422 it / epoch
IT_PER_EPOCH = -(-27_000 // 64)


def get_config():
    c = lsgm_config()
    c.data.kind = "image"
    c.data.name = "celeba_hq_256"
    c.data.split = "train[:27000]"  # [ddgan.md] the NVAE split: 27k train / 3k held out
    c.data.flip = True  # [code] random flips
    c.process.name = "vp"
    c.process.schedule = "linear"  # [README] quantitative: --sde_type vpsde
    c.process.beta_min = 0.1  # [lsgm.md 2.2]
    c.process.beta_max = 20.0  # [lsgm.md 2.2]

    c.lsgm = lsgm_section()
    c.optim = lsgm_optim()
    c.lsgm.likelihood = "dml"  # [README] train_vae.py --decoder_dist dml
    c.lsgm.num_mix = 10  # [code] nvae.py: DiscMixLogistic's num_mix 10
    c.lsgm.num_x_bits = 5  # [README] train_vae.py --num_x_bits 5
    c.lsgm.t_min = 0.01  # [code]
    c.lsgm.q_sampling = "iw"  # [README] --iw_sample_q ll_iw
    c.lsgm.p_weighting = "re"  # [README] --iw_sample_p drop_sigma2t_iw (w_re)
    c.lsgm.p_sampling = "iw"
    c.lsgm.update_q_ema = False  # [README] quantitative: --disjoint_training (no update_q_ema)
    c.lsgm.mixing_logit_init = -6.0  # [README] --mixing_logit_init -6
    c.lsgm.kl_max_stage1 = 1.0  # [README] --kl_max_coeff 1.0
    c.lsgm.kl_anneal_portion = 1.0  # [README]
    c.lsgm.cont_kl_anneal = False  # [lsgm.md 5.3] not set for CelebA
    c.lsgm.sr_vae = 1e-1  # [README] --weight_decay_norm_vae 1e-1
    c.lsgm.sr_prior = 1e-2  # [README] --weight_decay_norm_dae 1e-2
    c.lsgm.sr_vae_stage1 = 3e-2  # [README] train_vae.py --weight_decay_norm 3e-2
    c.lsgm.sr_prior_conv = True  # [README] no --custom_conv_dae for CelebA
    c.lsgm.kl_balance = True  # [code] train_vae.py: kl_balancer(kl_balance=True) while kl_coeff < 1
    c.training.ema_decay = 0.9999  # [code]
    c.optim.vae.optimizer_stage1 = "adamax"  # [code] train_vae.py Adamax(eps=1e-3)
    c.optim.vae.lr_stage1 = 1e-2  # [code] train_vae.py --learning_rate_vae default 1e-2
    c.optim.vae.min_lr_stage1 = 1e-4  # [code]
    c.optim.vae.warmup_stage1 = 5 * IT_PER_EPOCH  # [code] train_vae.py --warmup_epochs 5
    c.optim.vae.lr = 1e-4  # [code] --learning_rate_vae 1e-4 (qualitative: 8e-5)
    c.optim.vae.min_lr = 1e-5  # [code]
    c.optim.vae.warmup = 20 * IT_PER_EPOCH  # [code] train_vada.py update_lr warms the VAE up too
    c.optim.vae.eps = 1e-3  # [code]
    c.optim.vae.weight_decay = 3e-4  # [code]
    c.optim.prior.lr = 1e-4  # [README] --learning_rate_dae 1e-4
    c.optim.prior.eps = 1e-4  # [code]
    c.optim.prior.warmup = 20 * IT_PER_EPOCH  # [README] --warmup_epochs 20
    c.optim.prior.weight_decay = 3e-4  # [code]
    c.lsgm.stage1_steps = 200 * IT_PER_EPOCH  # [README] 200 epochs at batch 64
    c.lsgm.stage2_steps = 1000 * IT_PER_EPOCH  # [README] 1000 epochs [lsgm.md 5.5: ~420k it]
    c.lsgm.vae = ml_collections.ConfigDict()
    c.lsgm.vae.name = "nvae"
    c.lsgm.vae.num_channels = 64  # [README] --num_channels_enc/dec 64
    c.lsgm.vae.channel_mult = (1, 1, 2, 4)  # [lsgm.md 5.2] ch_mult 1 1 2 4
    c.lsgm.vae.num_preprocess_blocks = 1  # [lsgm.md 1.4, unverified] top latent 32x32
    c.lsgm.vae.num_preprocess_cells = 2  # [code] default
    c.lsgm.vae.num_postprocess_blocks = 1  # [lsgm.md 1.4, unverified]
    c.lsgm.vae.num_postprocess_cells = 2  # [code]
    c.lsgm.vae.num_latent_scales = 3  # [lsgm.md 1.4] 3 scales x 8 groups x 20
    c.lsgm.vae.num_groups_per_scale = 8  # [lsgm.md 1.4]
    c.lsgm.vae.num_latent_per_group = 20  # [lsgm.md 1.4]
    c.lsgm.vae.num_cell_per_cond_enc = 2  # [code] default
    c.lsgm.vae.num_cell_per_cond_dec = 2  # [code] default
    c.lsgm.vae.use_se = True  # [README] --use_se
    c.lsgm.vae.arch_instance = "res_mbconv"  # [README] --arch_instance res_mbconv
    c.lsgm.vae.progressive_input = "input_skip"  # [README] --progressive_input_vae input_skip
    c.lsgm.vae.num_nf = 2  # [README] train_vae.py --num_nf 2
    c.lsgm.vae_train_mode = True  # [README] FID: evaluate_vada.py --vae_train_mode (NLL: eval)
    c.lsgm.drop_inactive_var = True  # [README] train_vada.py --drop_inactive_var
    c.lsgm.nll_prior = "ode"  # [code] evaluate_vada.py --nll_ode_eval ('discrete': --elbo_eval)
    c.lsgm.diffusion_steps = 1000  # [code] train_vada.py --diffusion_steps default 1000
    c.lsgm.denoising_stddevs = "beta"  # [code] train_vada.py --denoising_stddevs default beta
    c.lsgm.vae_checkpoint = ""  # [README] train_vada.py --vae_checkpoint ('': stage 1 here)
    c.lsgm.score = ml_collections.ConfigDict()
    c.lsgm.score.name = "ncsnpp"
    c.lsgm.score.nf = 256  # [lsgm.md 1.5] 256 channels
    c.lsgm.score.ch_mult = (1, 2, 2, 2)  # [lsgm.md 1.5] 4 scales
    c.lsgm.score.num_res_blocks = 8  # [lsgm.md 1.5, unverified] as CIFAR/MNIST
    c.lsgm.score.attn_resolutions = (16,)  # [code] attention at 16x16
    c.lsgm.score.dropout = 0.2  # [README]
    c.lsgm.score.fir = True  # [README] --fir
    c.lsgm.score.embedding_type = "positional"  # [code]
    c.lsgm.score.time_scale = 1000.0  # [README] --embedding_scale 1000
    c.lsgm.score.embedding_dim = 128  # [code]

    c.training.batch_size = 64  # [README] 4 per GPU x 16 GPUs
    c.training.num_steps = c.lsgm.stage1_steps + c.lsgm.stage2_steps
    c.training.ckpt_every = 10000
    c.training.log_every = 500
    c.training.precision = "bfloat16"  # [lsgm.md 7.1]
    c.sampling = _sampling(c.sampling)
    c.sampling.rtol = 1e-2  # [README] FID at --ode_solver_tol 1e-2 (23 NFE)
    c.sampling.atol = 1e-2
    c.sampling.batch_size = 16
    c.eval.likelihood_examples = 64
    c.eval.divergence = "hutchinson_gaussian"
    return c
