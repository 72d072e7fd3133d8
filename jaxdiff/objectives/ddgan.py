"""DDGAN's adversarial objectives: non-saturating softplus GAN losses and the (lazy) R1 penalty.

Xiao, Kreis & Vahdat (2022), Sec. 3.2 and App. (training details); official ``train_ddgan.py``.
With D's logit ``l = D(x_{t-1}, x_t, t)`` and ``D = sigmoid(l)``:

* discriminator, Eq. (5): ``E_real softplus(-l) + E_fake softplus(l)``
  (``-log D`` on real pairs, ``-log(1 - D)`` on fake pairs);
* generator, non-saturating: ``E_fake softplus(-l)`` (``-log D`` on fake pairs);
* R1 (Mescheder et al. 2018) on the *real* x_{t-1} only: ``gamma / 2 E ||grad_x sum D||^2``,
  where the condition x_t is held fixed. The lazy version is applied when ``step % interval == 0``
  and is *not* multiplied by the interval (unlike StyleGAN2).

Everything here is a pure function of logits or of a ``d_fn``; nothing knows about networks.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxdiff.processes.base import batch_sum


def _flat(logits: Float[Array, "b ..."]) -> Float[Array, " b"]:
    return logits.reshape(logits.shape[0], -1)[:, 0] if logits.ndim > 1 else logits


def d_loss(
    real_logits: Float[Array, "b ..."], fake_logits: Float[Array, "b ..."]
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Eq. (5): ``mean softplus(-D(real)) + mean softplus(D(fake))``; returns (loss, parts)."""
    real = jnp.mean(jax.nn.softplus(-_flat(real_logits).astype(jnp.float32)))
    fake = jnp.mean(jax.nn.softplus(_flat(fake_logits).astype(jnp.float32)))
    return real + fake, {"d_loss_real": real, "d_loss_fake": fake}


def g_loss(fake_logits: Float[Array, "b ..."]) -> Float[Array, ""]:
    """Non-saturating generator loss ``mean softplus(-D(fake))`` (Sec. 3.2, -log D form)."""
    return jnp.mean(jax.nn.softplus(-_flat(fake_logits).astype(jnp.float32)))


def r1_penalty(
    d_fn: Callable[[Float[Array, "b ..."]], Float[Array, "b ..."]],
    x_real: Float[Array, "b ..."],
    gamma: float,
) -> Float[Array, ""]:
    """R1: ``gamma / 2 * mean_b ||grad_x sum_b' d_fn(x)_b'||^2`` at the real samples.

    Args:
      d_fn: the discriminator as a function of its *real* input x_{t-1} only, logits (b,) or
        (b, 1); bind the condition x_t (stop-gradient) and the labels before calling.
      x_real: real x_{t-1}, (b, ...).
      gamma: R1 weight (CIFAR-10 README: 0.02).
    """
    grad = jax.grad(lambda x: jnp.sum(d_fn(x).astype(jnp.float32)))(x_real)
    return 0.5 * gamma * jnp.mean(batch_sum(jnp.square(grad)))


def r1_due(step: Int[Array, ""], interval: int | None) -> jax.Array:
    """Whether R1 is applied at optimisation step ``step`` (0-based; official ``global_step``).

    ``interval`` None or <= 1: every step; else when ``step % interval == 0`` (steps 0, N, 2N...).
    """
    if interval is None or interval <= 1:
        return jnp.asarray(True)
    return jnp.asarray(step) % interval == 0


def lazy_r1_penalty(
    d_fn: Callable[[Float[Array, "b ..."]], Float[Array, "b ..."]],
    x_real: Float[Array, "b ..."],
    gamma: float,
    step: Int[Array, ""],
    interval: int | None,
) -> Float[Array, ""]:
    """:func:`r1_penalty` on steps where :func:`r1_due`, else 0 (``lax.cond``: one branch runs).

    Not rescaled by the interval (the official DDGAN code does not).
    """
    if gamma == 0:
        return jnp.zeros((), jnp.float32)
    if interval is None or interval <= 1:
        return r1_penalty(d_fn, x_real, gamma)
    return jax.lax.cond(
        r1_due(step, interval),
        lambda x: r1_penalty(d_fn, x, gamma),
        lambda x: jnp.zeros((), jnp.float32),
        x_real,
    )
