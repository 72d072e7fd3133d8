"""Every network of the zoo at tiny widths on CPU: shapes, float32 outputs under bf16 compute,
determinism with a fixed key, jit and grad, and the network-specific behaviour.

Cost control (the whole suite runs on two CPU cores): parameters are never initialised eagerly
(``_fast_init``), and each network is compiled once, in a single jitted function that returns the
float32 outputs, the bf16 output and the bf16 gradient (``_check_pure``); further checks call that
function again with other inputs. Widths and resolutions are the smallest that still reach every
code path; the NCSN++ options are spread over the networks (see ``test_ncsnpp_options``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff.nets import zoo
from jaxdiff.nets.functional import PureNet, functional

# XLA's CPU backend at LLVM -O0 and without the new fusion emitters: compiles ~6x faster (3 s
# instead of 19 s of CPU for the tiny CLD NCSN++'s gradient), same results to ~1 ulp.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def _tiny_ncsnpp(cfg, **kw):
    """Two levels (8x8, 4x4), one residual block per level, attention at 8x8 and in the middle."""
    small = dict(nf=16, num_res_blocks=1, ch_mult=(1, 2), image_size=8, attn_resolutions=(8,))
    small.update(kw)
    return zoo.with_overrides(cfg, **small)


def _arr(values, dtype=np.float32):
    """A device array without a compile (``jnp.asarray`` of numpy compiles once per shape)."""
    return jax.device_put(np.asarray(values, dtype))


def _normal(seed, shape):
    """Test inputs from numpy (``jax.random.normal`` also compiles once per shape)."""
    return _arr(np.random.default_rng(seed).normal(size=shape))


def _fast_init(cfg, **kw):
    """(PureNet, params) without running the initialisers: the structure comes from
    ``zoo.build_net_abstract`` and the values from numpy (eager init compiles every op on the
    CPU, which dominates test time). Kernels ~ N(0, 1/fan_in), norm scales 1, other leaves
    N(0, 0.1^2); so no output is ~0 because of a zero-initialised last layer."""
    graphdef, state = nnx.split(zoo.build_net_abstract(cfg, **kw))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = str(path[-1])
        shape = leaf.shape
        if "kernel" in name and len(shape) >= 2:
            v = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif "scale" in name:
            v = np.ones(shape)
        else:
            v = 0.1 * rng.normal(size=shape)
        return _arr(v, leaf.dtype)  # the network's own parameter dtype

    params = jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state))
    return PureNet(graphdef), params


def _apply(pure, p, *args):
    return pure.apply(p, *args)


def _apply_keyed(pure, p, *args):
    """The last argument is the dropout key."""
    *args, key = args
    return pure.apply(p, *args, key=key)


def _identity(out):
    return out


def _check_pure(cfg, args, main=_apply, extra=None, out_of=_identity, no_grad=(), **build_kw):
    """Compiles, once, ``run(params, *args) -> {'out', 'out16', 'grad', **extra}``: the float32
    network's ``main(pure, params, *args)``, the bf16-compute network's output (same float32
    params) and the gradient of ``mean(out_of(out16)^2)``; ``extra(pure, params, out, *args)``
    adds float32 outputs for the caller's own checks. Checks float32 outputs, determinism (a
    second call is bit-identical), bf16 within 10% of float32, and a finite gradient that is
    non-zero for every parameter except the paths in ``no_grad`` (which must get exactly zero):
    a parameter without gradient is a layer that is built but not used.

    Returns ``(pure, params, run, res)``; ``run`` may be called again without recompiling."""
    pure, params = _fast_init(cfg, **build_kw)
    pure16, params16 = _fast_init(cfg, dtype="bfloat16", **build_kw)
    assert jax.tree.structure(params16) == jax.tree.structure(params)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((params, params16)))

    @jax.jit(compiler_options=FAST_COMPILE)
    def run(p, *a):
        def loss16(q):
            o16 = main(pure16, q, *a)
            return jnp.mean(jnp.square(out_of(o16))), o16

        (_, out16), grad = jax.value_and_grad(loss16, has_aux=True)(p)
        out = main(pure, p, *a)
        res = {"out": out, "out16": out16, "grad": grad}
        if extra is not None:
            res.update(extra(pure, p, out, *a))
        return res

    # checks in numpy: an eager jnp op on a new shape is one more XLA compile
    res = jax.tree.map(np.asarray, run(params, *args))
    again = jax.tree.map(np.asarray, run(params, *args))
    for key in ("out", "out16"):
        assert all(x.dtype == np.float32 for x in jax.tree.leaves(res[key])), key
        for a, b in zip(jax.tree.leaves(res[key]), jax.tree.leaves(again[key]), strict=True):
            np.testing.assert_array_equal(a, b)  # fixed inputs and key: deterministic
    o32, o16 = out_of(res["out"]), out_of(res["out16"])
    scale = float(np.max(np.abs(o32))) + 1e-6
    assert float(np.max(np.abs(o16 - o32))) < 0.1 * scale
    dead = []
    for path, g in jax.tree_util.tree_flatten_with_path(res["grad"])[0]:
        name = jax.tree_util.keystr(path)
        assert np.all(np.isfinite(g)), name
        if name in no_grad:
            assert not np.any(g), name
        elif not np.any(g):
            dead.append(name)
    assert not dead, f"parameters without gradient: {dead}"
    return pure, params, run, res


# ----------------------------------------------------------------------------------------------
# NCSN++ family. Options across this section: resblock biggan (CLD, DDGAN, LSGM, two option
# sets) and ddpm (two option sets, one z-conditioned: AdaGN in DDPM blocks); progressive none /
# residual / output_skip; progressive_input none / residual / input_skip (sum and cat); FIR on
# and off; Fourier and positional time embeddings; dropout; z-conditioning; tanh head; mixing
# logit. Each network costs ~4-8 s of CPU (one XLA compile of f32 + bf16 forward + bf16 grad).


@pytest.mark.slow
def test_ncsnpp_cld_reduced():
    """CLD: 6 input channels (x, v), 3 outputs, Fourier features of log t, dropout by key."""
    cfg = _tiny_ncsnpp(zoo.ncsnpp_cifar10_cld())
    x = _normal(0, (2, 8, 8, 6))
    t = _arr([0.1, 0.9])

    def no_key(pure, p, out, x, t, key):
        return {"no_key": pure.apply(p, x, t)}

    _, params, run, r1 = _check_pure(
        cfg, (x, t, jax.random.key(1)), _apply_keyed, no_key, no_grad=("['fourier']['W']",)
    )
    assert r1["out"].shape == (2, 8, 8, 3)
    # dropout active iff a key is given; different keys give different outputs
    r2 = run(params, x, t, jax.random.key(2))
    assert not np.allclose(r1["out"], r2["out"]) and not np.allclose(r1["out"], r1["no_key"])
    np.testing.assert_array_equal(r1["no_key"], r2["no_key"])


@pytest.mark.slow
def test_ddgan_generator_reduced_uses_z_and_tanh():
    """DDGAN: z through the mapping network into AdaGN, integer step labels, tanh head."""
    cfg = _tiny_ncsnpp(zoo.ddgan_cifar10_generator(), nz=10, z_emb_dim=16, n_mlp=2)
    x = _normal(0, (2, 8, 8, 3))
    t = _arr([0, 3], np.int32)
    z = _normal(1, (2, 10))

    def shifted_z(pure, p, out, x, t, z):
        return {"z_plus_1": pure.apply(p, x, t, z + 1.0)}

    *_, res = _check_pure(cfg, (x, t, z), extra=shifted_z)
    out = res["out"]
    assert out.shape == (2, 8, 8, 3) and float(np.max(np.abs(out))) <= 1.0
    assert not np.allclose(out, res["z_plus_1"])


@pytest.mark.slow
def test_lsgm_score_reduced_mixing_logit():
    """LSGM's latent NCSN++ (8x8 and 4x4 levels, attention only in the middle), dropout by key."""
    cfg = zoo.with_overrides(zoo.lsgm_mnist_small_score(), nf=16, num_res_blocks=1)
    z = _normal(0, (2, 8, 8, 40))
    t = _arr([0.01, 0.5])
    # the mixing logit is read by the objective, not by the network
    _, params, _, res = _check_pure(
        cfg, (z, t, jax.random.key(7)), _apply_keyed, no_grad=("['mixing_logit']",)
    )
    assert res["out"].shape == (2, 8, 8, 40)
    assert params["mixing_logit"].shape == (40,)  # LSGM's per-channel mixing logit
    assert zoo.lsgm_mnist_score().mixing_logit_init == -6.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "resblock,progressive,progressive_input,combine,fir,nz",
    [
        ("ddpm", "output_skip", "input_skip", "cat", False, 4),  # + AdaGN in DDPM blocks
        ("biggan", "residual", "residual", "sum", True, 0),
        ("ddpm", "residual", "none", "sum", True, 0),
        ("biggan", "output_skip", "input_skip", "sum", True, 0),
    ],
)
def test_ncsnpp_options(resblock, progressive, progressive_input, combine, fir, nz):
    """The option sets the paper networks above do not use, with the full set of checks."""
    cfg = _tiny_ncsnpp(
        zoo.ddpmpp_cifar10_continuous(),
        resblock_type=resblock,
        progressive=progressive,
        progressive_input=progressive_input,
        progressive_combine=combine,
        fir=fir,
        init_scale=1.0,
        nz=nz,
        z_emb_dim=8,
        n_mlp=1,
    )
    x = _normal(0, (2, 8, 8, 3))
    args = (x, _arr([0.2, 0.5]))
    if nz:
        args += (_normal(1, (2, nz)),)
    *_, res = _check_pure(cfg, args)
    assert res["out"].shape == (2, 8, 8, 3)


# ----------------------------------------------------------------------------------------------
# DDGAN discriminators.


@pytest.mark.parametrize("large", [False, True])
def test_ddgan_discriminators_reduced(large):
    """Small D: 16 -> 2 (the first block keeps the size); large D: six halvings, 128 -> 2."""
    if large:
        cfg, size = zoo.with_overrides(zoo.ddgan_celebahq256_discriminator(), ngf=2), 128
    else:
        cfg, size = zoo.with_overrides(zoo.ddgan_cifar10_discriminator(), ngf=4), 16
    cfg = zoo.with_overrides(cfg, t_emb_dim=16)
    xp, xt = _normal(0, (4, size, size, 3)), _normal(1, (4, size, size, 3))

    def reversed_t(pure, p, out, xp, xt, t):
        return {"t_reversed": pure.apply(p, xp, xt, t[::-1])}

    *_, res = _check_pure(cfg, (xp, xt, _arr([0, 1, 2, 3], np.int32)), extra=reversed_t)
    assert res["out"].shape == (4, 1)
    # the step label conditions the logits
    assert not np.allclose(res["out"], res["t_reversed"])


# ----------------------------------------------------------------------------------------------
# LSGM's autoencoders.


def _logits(out):
    return out["logits"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, progressive", [("res_mbconv", "none"), ("res_bnswish", "input_skip")]
)
def test_nvae_reduced_hierarchy(arch, progressive):
    """Two latent scales reach every cell kind: down (pre, encoder), up (decoder, post), the
    mbconv and BN-Swish branches, the input-skip pyramid; every parameter gets a gradient."""
    cfg = zoo.with_overrides(
        zoo.lsgm_mnist_vae(),
        num_channels=8,
        channel_mult=(1, 2, 2, 2),
        num_preprocess_cells=1,
        num_postprocess_cells=1,
        num_latent_scales=2,
        num_groups_per_scale=2,
        num_latent_per_group=4,
        arch_instance=arch,
        progressive_input=progressive,
    )
    x = _normal(0, (2, 32, 32, 1))

    def decode(pure, p, out, x, key):
        module = nnx.merge(pure.graphdef, p)
        top = module.top_latent(out["z"])
        return {"decoded": module.decode(out["z"]), "top": top, "split": module.split_top(top)}

    _, params, run, res = _check_pure(cfg, (x, jax.random.key(1)), extra=decode, out_of=_logits)
    out = res["out"]
    # top scale 32 / 2^(2 + 2 - 1) = 4, then 8; groups listed top first
    assert [z.shape for z in out["z"]] == [(2, 4, 4, 4)] * 2 + [(2, 8, 8, 4)] * 2
    assert out["logits"].shape == (2, 32, 32, 1)
    assert float(np.max(np.abs(out["mu"][0]))) <= 5.0  # soft clamp
    # decoding the sampled groups reproduces the reconstruction path exactly
    np.testing.assert_allclose(res["decoded"], out["logits"], atol=1e-5)
    # the score model's view: the top scale's groups along channels, and back
    assert res["top"].shape == (2, 4, 4, 8)
    for a, b in zip(res["split"], out["z"][:2], strict=True):
        np.testing.assert_array_equal(a, b)
    # z = mu + sigma eps: same key, same latents (checked above); another key, other latents
    other = run(params, x, jax.random.key(2))["out"]
    np.testing.assert_array_equal(other["mu"][0], out["mu"][0])
    assert not np.allclose(other["z"][0], out["z"][0])


def test_nvae_cells_math():
    """NVAE's layers against their definitions: weight normalisation (per-output-channel norm
    exp(g)), training-mode BatchNorm (zero mean, unit variance over b, h, w), aligned-corner
    bilinear upsampling (corners kept, linear in between), FactorizedReduce's pixel shifts."""
    from jaxdiff.nets import nvae_cells as C

    rngs = nnx.Rngs(0)
    wn = C.WNConv(3, 5, 3, rngs=rngs)
    g = np.asarray(wn.log_weight_norm[...])
    w = np.asarray(wn.weight())
    np.testing.assert_allclose(np.sqrt((w**2).sum(axis=(0, 1, 2))), np.exp(g), rtol=1e-4)
    v = np.asarray(wn.kernel[...])  # init: g = log(||v|| + 0.01)
    np.testing.assert_allclose(np.exp(g), np.sqrt((v**2).sum(axis=(0, 1, 2))) + 1e-2, rtol=1e-5)

    bn = C.BatchNorm(4)
    x = 3.0 + 2.0 * _normal(3, (5, 3, 3, 4))
    y = np.asarray(bn(x))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)

    img = _normal(4, (1, 3, 3, 1))
    up = np.asarray(C.upsample_bilinear_aligned(img))[0, :, :, 0]
    src = np.asarray(img)[0, :, :, 0]
    assert up.shape == (6, 6)
    np.testing.assert_allclose(
        up[[0, 0, -1, -1], [0, -1, 0, -1]], src[[0, 0, -1, -1], [0, -1, 0, -1]], rtol=1e-5
    )
    t = 1 * 2 / 5  # output row 1 samples input row 2/5
    np.testing.assert_allclose(up[1, 0], (1 - t) * src[0, 0] + t * src[1, 0], rtol=1e-5)

    fr = C.FactorizedReduce(2, 6, rngs=rngs, dtype=jnp.float32)
    xi = _normal(5, (1, 4, 4, 2))
    out = np.asarray(fr(xi))
    assert out.shape == (1, 2, 2, 6)  # channels 1, 1, 1, 3
    a = np.asarray(jax.nn.silu(xi))
    k = np.asarray(fr.convs[1].weight())[0, 0]  # (2, 1): the (1, 1)-shifted conv
    want = a[0, 1, 1] @ k + np.asarray(fr.convs[1].bias[...])
    np.testing.assert_allclose(out[0, 0, 0, 1], want[0], rtol=1e-4)


def test_nvae_latent_shapes_of_paper_configs():
    """LSGM's SGM latents (lsgm.md 1.4): CIFAR-10 180x16x16, MNIST 40x8x8."""
    for cfg, shape in ((zoo.lsgm_cifar10_vae(), (16, 16, 180)), (zoo.lsgm_mnist_vae(), (8, 8, 40))):
        s = cfg.image_size // 2 ** (cfg.num_preprocess_blocks + cfg.num_latent_scales - 1)
        assert (s, s, cfg.num_groups_per_scale * cfg.num_latent_per_group) == shape
        assert zoo.build_net_abstract(cfg).top_size == s
    assert zoo.lsgm_cifar10_score().in_ch == 180 and zoo.lsgm_cifar10_score().image_size == 16
    assert zoo.lsgm_mnist_score().in_ch == 40 and zoo.lsgm_mnist_score().image_size == 8


def test_conv_vae_reduced():
    cfg = zoo.with_overrides(
        zoo.lsgm_cifar10_conv_vae(), num_channels=8, num_res_blocks=1, latent_ch=6
    )
    x = _normal(1, (2, 32, 32, 3))
    *_, res = _check_pure(cfg, (x, jax.random.key(0)), out_of=_logits)
    assert res["out"]["z"][0].shape == (2, 16, 16, 6)
    assert res["out"]["logits"].shape == (2, 32, 32, 100)


# ----------------------------------------------------------------------------------------------
# Toy MLPs, with their real initialisation (one compile for all four).


def test_toy_nets():
    cfgs = [
        {"name": "mlp_generator", "dim": 2, "nz": 2, "hidden": 32},
        {"name": "mlp_discriminator", "dim": 2, "hidden": 32},
        {"name": "mlp_vae", "dim": 2, "latent_dim": 3, "hidden": 16},
        {"name": "mlp_score", "dim": 2, "hidden": 16, "depth": 1},
    ]
    # build_net inside one jit: eager initialisation compiles every random op separately
    init = jax.jit(
        lambda: [functional(zoo.build_net(c))[1] for c in cfgs], compiler_options=FAST_COMPILE
    )
    params = init()
    gen, disc, vae, score = (PureNet(nnx.split(zoo.build_net_abstract(c))[0]) for c in cfgs)

    @jax.jit(compiler_options=FAST_COMPILE)
    def run(params, x, z, key):
        pg, pd, pv, ps = params
        t = jnp.arange(5)
        return {
            "gen": gen.apply(pg, x, t, z),
            "gen_minus_z": gen.apply(pg, x, t, -z),
            "disc": disc.apply(pd, x, x, t),
            "disc_grad": jax.grad(lambda q: disc.apply(q, x, x, t).sum())(pd),
            "vae": vae.apply(pv, x, key),
            "score": score.apply(ps, x, jnp.full((5,), 0.5)),
        }

    x, z = _arr(np.ones((5, 2))), _arr(np.ones((5, 2)))
    res = run(params, x, z, jax.random.key(0))
    assert res["gen"].shape == (5, 2)
    assert not np.allclose(res["gen"], res["gen_minus_z"])
    assert res["disc"].shape == (5, 1)
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(res["disc_grad"]))
    xm, zz, mu, ls = res["vae"]
    assert xm.shape == (5, 2) and zz.shape == mu.shape == ls.shape == (5, 3)
    np.testing.assert_array_equal(zz, run(params, x, z, jax.random.key(0))["vae"][1])
    assert res["score"].shape == (5, 2)


def test_build_net_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown network"):
        zoo.build_net({"name": "unet_of_dreams"})
    with pytest.raises(ValueError, match="unknown network"):
        zoo.build_net_abstract({"name": "unet_of_dreams"})
