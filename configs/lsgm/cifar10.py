"""LSGM on CIFAR-10, the "best FID" recipe (FID 2.10 [project page], ~138 NFE [project page]).

Sources: [README] official NVlabs/LSGM README commands (CIFAR-10 vae2 + "best FID" stage 2);
[code] defaults of train_vae.py / train_vada.py; [lsgm.md] the project's notes (section numbers).
Deviations: no fp16; BatchNorm without running statistics (docs/lsgm.md). Needs tfds CIFAR-10
prepared (data.data_dir).
"""

from configs.base import lsgm_config
from configs.lsgm.binarized_mnist import _sampling
from configs.toy.lsgm import lsgm_optim, lsgm_section
from jaxdiff.nets import zoo


def get_config():
    c = lsgm_config()
    c.data.kind = "image"
    c.data.name = "cifar10"
    c.data.flip = True  # [lsgm.md 7.9] random horizontal flips only
    c.process.name = "vp"
    c.process.schedule = "linear"  # [README] best FID: --sde_type vpsde
    c.process.beta_min = 0.1  # [lsgm.md 2.2]
    c.process.beta_max = 20.0  # [lsgm.md 2.2]

    c.lsgm = lsgm_section()
    c.optim = lsgm_optim()
    c.lsgm.likelihood = "dml"  # [code] train_vae.py --decoder_dist default dml
    c.lsgm.num_mix = 10  # [code] nvae.py: DiscMixLogistic's num_mix 10 (100 outputs)
    c.lsgm.num_x_bits = 8  # [code] --num_x_bits default 8
    c.lsgm.t_min = 0.01  # [code] time_eps 0.01 for the VPSDE
    c.lsgm.q_sampling = "reweight_p"  # [README] --iw_sample_q reweight_p_samples
    c.lsgm.p_weighting = "un"  # [README] --iw_sample_p drop_all_iw (w_un)
    c.lsgm.p_sampling = "iw"  # [README] drop_all_iw
    c.lsgm.mixing_logit_init = -3.0  # [lsgm.md 2.3] default -3 (CIFAR commands do not set it)
    c.lsgm.kl_max_stage1 = 0.7  # [README] vae2: --kl_max_coeff 0.7
    c.lsgm.kl_anneal_portion = 1.0  # [README] vae2: --kl_anneal_portion 1.0
    c.lsgm.cont_kl_anneal = True  # [README] best FID: --cont_kl_anneal
    c.lsgm.sr_vae = 1e-2  # [README] --weight_decay_norm_vae 1e-2
    c.lsgm.sr_prior = 1e-2  # [README] --weight_decay_norm_dae 1e-2
    c.lsgm.sr_prior_conv = False  # [README] --custom_conv_dae: GroupNorm term only
    c.lsgm.sr_vae_stage1 = 1e-2  # [README] vae2: --weight_decay_norm 1e-2
    c.lsgm.kl_balance = True  # [code] train_vae.py: kl_balancer(kl_balance=True) while kl_coeff < 1
    c.training.ema_decay = 0.9999  # [code]
    c.optim.vae.optimizer_stage1 = "adamax"  # [code] train_vae.py Adamax(eps=1e-3)
    c.optim.vae.lr_stage1 = 1e-2  # [code] train_vae.py --learning_rate_vae default 1e-2
    c.optim.vae.min_lr_stage1 = 1e-4  # [code]
    c.optim.vae.warmup_stage1 = 5 * 195  # [code] 5 epochs at 195 it/epoch
    c.optim.vae.lr = 1e-4  # [code] --learning_rate_vae 1e-4
    c.optim.vae.min_lr = 1e-5  # [code]
    c.optim.vae.warmup = 5 * 195  # [code] train_vada.py update_lr: the VAE's lr warms up too
    c.optim.vae.eps = 1e-3  # [code]
    c.optim.vae.weight_decay = 3e-4  # [code]
    c.optim.prior.lr = 1e-4  # [README] --learning_rate_dae 1e-4
    c.optim.prior.eps = 1e-4  # [code]
    c.optim.prior.warmup = 5 * 195  # [code] --warmup_epochs 5
    c.optim.prior.weight_decay = 3e-4  # [code]
    c.lsgm.stage1_steps = 400 * 195  # [README] vae2: 400 epochs at batch 256
    c.lsgm.stage2_steps = 1875 * 195  # [README] 1875 epochs at batch 256 [lsgm.md 5.3: ~366k]
    c.lsgm.vae = zoo.lsgm_cifar10_vae()  # [README] NVAE 128 ch, 20 groups x 9 at 16x16
    c.lsgm.score = zoo.lsgm_cifar10_score()  # [README] NCSN++ 512 ch, 8 blocks, FIR
    c.lsgm.score.dropout = 0.2  # [README]

    c.training.batch_size = 256  # [README] 16 per GPU x 16 GPUs (stage 1: 32 x 8, the same)
    c.lsgm.vae_checkpoint = ""  # [README] train_vada.py --vae_checkpoint ('': stage 1 here)
    c.training.num_steps = c.lsgm.stage1_steps + c.lsgm.stage2_steps
    c.training.ckpt_every = 10000
    c.training.log_every = 500
    c.training.precision = "bfloat16"  # [lsgm.md 7.1] reference: fp16 autocast
    c.sampling = _sampling(c.sampling)
    c.sampling.t_min = 1e-6  # [README] CIFAR: --ode_eps 1e-6
    c.lsgm.nll_t_min = 1e-6  # [README] evaluate_vada.py --ode_eps 1e-6
    c.lsgm.nll_prior = "ode"  # [README] evaluate_vada.py --nll_ode_eval ('discrete': --elbo_eval)
    c.lsgm.diffusion_steps = 1000  # [code] train_vada.py --diffusion_steps default 1000
    c.lsgm.denoising_stddevs = "beta"  # [code] train_vada.py --denoising_stddevs default beta
    c.eval.likelihood_examples = 256
    c.eval.divergence = "hutchinson_gaussian"  # [code]
    return c
