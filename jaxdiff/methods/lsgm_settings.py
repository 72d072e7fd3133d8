"""LSGM's training options (the ``lsgm`` config section), read by ``methods/lsgm.py``."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LSGMSettings:
    """LSGM's training options (the ``lsgm`` config section; defaults in configs/toy/lsgm.py).

    likelihood: decoder p(x | z_0): gaussian | bernoulli | logistic | dml.
    num_mix: components of the ``dml`` decoder (LSGM's 10).
    num_x_bits: bit depth the images are quantised to (``objectives.decoders.quantise``) and the
      discrete decoders' grid (LSGM's ``--num_x_bits``; 5 for CelebA-HQ).
    stage1_steps, stage2_steps, stage3: the stages above.
    kl_min, kl_max_stage1, kl_anneal_portion: stage 1's linear KL warm-up.
    cont_kl_anneal, cont_kl_portion: stage 2's warm-up kl_max_stage1 -> 1.
    sr_vae, sr_prior: spectral-regularisation weights (0: off).
    sr_vae_stage1: the VAE's weight in stage 1 (``train_vae.py --weight_decay_norm``; None: sr_vae).
    sr_prior_conv: whether the prior's SR includes the kernels' spectral norms (False: only the
      normalisation layers' max|gamma|, as LSGM's ``--custom_conv_dae`` prior, whose SR finds no
      NVAE conv in NCSN++).
    kl_balance: stage 1's KL balancing while the KL coefficient is < 1 (``train_vae.py``: on).
    mixing_logit_init: initial logit of the mixed score's per-channel weight.
    update_q_ema: the encoder's objective uses the prior's EMA (separate objectives only).
    nll_t_min: the likelihood ODE's end time (``--ode_eps``; README: 1e-6 CIFAR-10, 1e-5 MNIST).
    num_iw_samples: importance samples of the evaluation's NLL bound (1: the plain bound).
    nll_prior: how the NLL bound gets log p(z_0) of the score prior: ``ode`` (the probability-flow
      ODE's likelihood, ``evaluate_vada.py --nll_ode_eval``) or ``discrete`` (the -ELBO of the
      ``diffusion_steps``-step DDPM chain on the SDE's betas, ``--elbo_eval``:
      ``jaxdiff.solvers.ancestral.nelbo``), with ``denoising_stddevs`` (``beta`` | ``beta_post``;
      LSGM's default ``beta``) its reverse variances.
    vae_checkpoint: a workdir whose newest checkpoint gives the VAE's parameters (and BN
      averages) at initialisation: stage 2 from a separately trained stage-1 VAE (LSGM's
      ``train_vada.py --vae_checkpoint``; set stage1_steps 0). '' : a fresh VAE.
    batch_size_stage1, batch_size_stage2, batch_size_stage3: examples of the batch each stage
      trains on, a prefix of the step's (micro-)batch (LSGM's per-stage ``--batch_size`` times
      GPUs, e.g. MNIST 200 then 128); 0: the whole batch.
    drop_inactive_var: at the first stage-2 step, the top latent's channels whose KL (LSGM's
      ``infer_active_variables``: VAE in evaluation mode, Monte-Carlo log q - log p summed over
      space, averaged over the batch) is <= 0.1 nats become inactive: the score network sees 0
      there and the mixed score keeps the Normal part (mixing logit -15) (``train_vada.py
      --drop_inactive_var``; measured on that step's batch, the official code on <= 1000).
    vae_train_mode: sampling runs the VAE's BatchNorm on batch statistics (LSGM's
      ``evaluate_vada.py --vae_train_mode``, the CelebA-HQ FID commands); otherwise on the
      running averages (``vae.eval()``). The NLL bound uses the averages (the README's NLL
      commands omit the flag); training always uses batch statistics.
    readjust_bn: before evaluation, re-estimate the decoder's BN running averages from
      ``readjust_bn_batches`` batches of ``readjust_bn_batch_size`` prior samples in training
      mode (NVAE's ``evaluate.py --readjust_bn``: ``set_bn(..., num_samples=2, iter=500)``; LSGM
      parses the flag but never uses it).
    """

    likelihood: str = "gaussian"
    num_mix: int = 10
    num_x_bits: int = 8
    stage1_steps: int = 0
    stage2_steps: int = 1
    stage3: bool = False
    kl_min: float = 1e-4
    kl_max_stage1: float = 0.7
    kl_anneal_portion: float = 1.0
    cont_kl_anneal: bool = True
    cont_kl_portion: float = 0.1
    sr_vae: float = 0.0
    sr_prior: float = 0.0
    sr_vae_stage1: float | None = None
    sr_prior_conv: bool = True
    kl_balance: bool = True
    mixing_logit_init: float = -3.0
    update_q_ema: bool = False
    nll_t_min: float = 1e-5
    num_iw_samples: int = 1
    nll_prior: str = "ode"
    diffusion_steps: int = 1000
    denoising_stddevs: str = "beta"
    vae_checkpoint: str = ""
    batch_size_stage1: int = 0
    batch_size_stage2: int = 0
    batch_size_stage3: int = 0
    drop_inactive_var: bool = False
    vae_train_mode: bool = False
    readjust_bn: bool = False
    readjust_bn_batches: int = 500
    readjust_bn_batch_size: int = 2
