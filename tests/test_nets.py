"""Every network of the zoo (reduced widths on CPU): shapes, bf16, determinism, jit and grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff.nets import zoo
from jaxdiff.nets.functional import PureNet, functional


def _tiny_ncsnpp(cfg, **kw):
    small = dict(nf=16, num_res_blocks=1, ch_mult=(1, 2), image_size=8, attn_resolutions=(8,))
    small.update(kw)
    return zoo.with_overrides(cfg, **small)


def _fast_init(cfg, **kw):
    """(PureNet, params) without running the initialisers: the structure comes from
    ``nnx.eval_shape`` and the values from numpy (eager init compiles every op on the CPU, which
    dominates test time). Kernels ~ N(0, 1/fan_in), norm scales 1, other leaves N(0, 0.1^2)."""
    abstract = nnx.eval_shape(lambda: zoo.build_net(cfg, **kw))
    graphdef, state = nnx.split(abstract)
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
        return jnp.asarray(v, jnp.float32)

    params = jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state))
    return PureNet(graphdef), params


def _check_pure(net_cfg, args, loss_out=lambda o: o, key=True, **build_kw):
    """Builds f32 and bf16 variants, checks jit == eager structure, determinism, grads."""
    pure, params = _fast_init(net_cfg, **build_kw)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    kw = {"key": jax.random.key(7)} if key else {}
    f = jax.jit(lambda p, *a, **k: pure.apply(p, *a, **k))
    out = f(params, *args, **kw)
    out2 = f(params, *args, **kw)
    np.testing.assert_array_equal(loss_out(out), loss_out(out2))  # fixed key: deterministic

    def loss(p):
        return jnp.mean(jnp.square(loss_out(pure.apply(p, *args, **kw))))

    g = jax.jit(jax.grad(loss))(params)
    leaves = jax.tree.leaves(g)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert sum(float(jnp.sum(jnp.abs(x))) for x in leaves) > 0
    # bf16 compute: same params, float32 outputs close to the float32 network
    pure16, _ = _fast_init(net_cfg, dtype="bfloat16", **build_kw)
    out16 = jax.jit(lambda p, *a, **k: pure16.apply(p, *a, **k))(params, *args, **kw)
    o32, o16 = loss_out(out), loss_out(out16)
    assert o16.dtype == jnp.float32 and o32.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(o32))) + 1e-6
    assert float(jnp.max(jnp.abs(o16 - o32))) < 0.1 * scale
    return pure, params, out


@pytest.mark.slow
def test_ncsnpp_cld_reduced():
    """CLD: 6 input channels (x, v), 3 outputs, Fourier features of log t, dropout by key."""
    cfg = _tiny_ncsnpp(zoo.ncsnpp_cifar10_cld())
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 6))
    t = jnp.array([0.1, 0.9])
    pure, params, out = _check_pure(cfg, (x, t))
    assert out.shape == (2, 8, 8, 3) and out.dtype == jnp.float32
    # dropout active iff a key is given; different keys give different outputs
    a = pure.apply(params, x, t, key=jax.random.key(1))
    b = pure.apply(params, x, t, key=jax.random.key(2))
    c = pure.apply(params, x, t)
    assert not np.allclose(a, b) and not np.allclose(a, c)
    np.testing.assert_array_equal(c, pure.apply(params, x, t))


@pytest.mark.slow
def test_ddgan_generator_reduced_uses_z_and_tanh():
    cfg = _tiny_ncsnpp(zoo.ddgan_cifar10_generator(), nz=10, z_emb_dim=16, n_mlp=2)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    t = jnp.array([0, 3])
    z = jax.random.normal(jax.random.key(1), (2, 10))
    pure, params, out = _check_pure(cfg, (x, t, z), key=False)
    assert out.shape == (2, 8, 8, 3) and float(jnp.max(jnp.abs(out))) <= 1.0
    # non-zero-init output so that the dependence on z is visible
    params["conv_out"]["kernel"] = jax.random.normal(
        jax.random.key(3), params["conv_out"]["kernel"].shape
    )
    o1 = pure.apply(params, x, t, z)
    o2 = pure.apply(params, x, t, z + 1.0)
    assert not np.allclose(o1, o2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "resblock,progressive,progressive_input,combine,fir",
    [
        ("ddpm", "output_skip", "input_skip", "cat", False),
        ("biggan", "residual", "residual", "sum", True),
        ("ddpm", "residual", "none", "sum", True),
        ("biggan", "output_skip", "input_skip", "sum", True),
    ],
)
def test_ncsnpp_options(resblock, progressive, progressive_input, combine, fir):
    cfg = _tiny_ncsnpp(
        zoo.ddpmpp_cifar10_continuous(),
        resblock_type=resblock,
        progressive=progressive,
        progressive_input=progressive_input,
        progressive_combine=combine,
        fir=fir,
        init_scale=1.0,
    )
    pure, params = _fast_init(cfg)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    out = jax.jit(pure.apply)(params, x, jnp.array([0.2, 0.5]))
    assert out.shape == (2, 8, 8, 3) and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.slow
def test_lsgm_score_reduced_mixing_logit():
    cfg = zoo.with_overrides(zoo.lsgm_mnist_small_score(), nf=16, num_res_blocks=1)
    z = jax.random.normal(jax.random.key(0), (2, 8, 8, 40))
    pure, params, out = _check_pure(cfg, (z, jnp.array([0.01, 0.5])))
    assert out.shape == (2, 8, 8, 40)
    assert params["mixing_logit"].shape == (40,)  # LSGM's per-channel mixing logit
    assert zoo.lsgm_mnist_score().mixing_logit_init == -6.0


@pytest.mark.slow
@pytest.mark.parametrize("large", [False, True])
def test_ddgan_discriminators_reduced(large):
    if large:
        cfg, size = zoo.with_overrides(zoo.ddgan_celebahq256_discriminator(), ngf=2), 256
    else:
        cfg, size = zoo.with_overrides(zoo.ddgan_cifar10_discriminator(), ngf=8), 32
    cfg = zoo.with_overrides(cfg, t_emb_dim=16)
    k0, k1 = jax.random.split(jax.random.key(0))
    xp = jax.random.normal(k0, (4, size, size, 3))
    xt = jax.random.normal(k1, (4, size, size, 3))
    pure, params, out = _check_pure(cfg, (xp, xt, jnp.array([0, 1, 2, 3])), key=False)
    assert out.shape == (4, 1)
    # the step label conditions the logits
    assert not np.allclose(out, pure.apply(params, xp, xt, jnp.array([3, 2, 1, 0])))


@pytest.mark.slow
def test_nvae_reduced_hierarchy():
    cfg = zoo.with_overrides(
        zoo.lsgm_mnist_vae(),
        num_channels=8,
        num_preprocess_cells=1,
        num_postprocess_cells=1,
        num_latent_scales=2,
        num_groups_per_scale=2,
        num_latent_per_group=4,
    )
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 1))
    pure, params = _fast_init(cfg)
    module = nnx.merge(pure.graphdef, params)
    out = jax.jit(pure.apply)(params, x, jax.random.key(1))
    # top scale 32 / 2^(2 + 2 - 1) = 4, then 8; groups listed top first
    assert [z.shape for z in out["z"]] == [(2, 4, 4, 4)] * 2 + [(2, 8, 8, 4)] * 2
    assert out["logits"].shape == (2, 32, 32, 1)
    assert float(jnp.max(jnp.abs(out["mu"][0]))) <= 5.0  # soft clamp
    # decoding the sampled groups reproduces the reconstruction path exactly
    dec = jax.jit(lambda p, zs: nnx.merge(pure.graphdef, p).decode(zs))
    np.testing.assert_allclose(dec(params, out["z"]), out["logits"], atol=1e-5)
    # z = mu + sigma eps with the same key: deterministic; different key: different latents
    out2 = jax.jit(pure.apply)(params, x, jax.random.key(1))
    np.testing.assert_array_equal(out2["z"][0], out["z"][0])
    top = module.top_latent(out["z"])
    assert top.shape == (2, 4, 4, 8)
    np.testing.assert_array_equal(module.split_top(top)[1], out["z"][1])


def test_nvae_latent_shapes_of_paper_configs():
    """LSGM's SGM latents (lsgm.md 1.4): CIFAR-10 180x16x16, MNIST 40x8x8."""
    for cfg, shape in ((zoo.lsgm_cifar10_vae(), (16, 16, 180)), (zoo.lsgm_mnist_vae(), (8, 8, 40))):
        s = cfg.image_size // 2 ** (cfg.num_preprocess_blocks + cfg.num_latent_scales - 1)
        assert (s, s, cfg.num_groups_per_scale * cfg.num_latent_per_group) == shape
    assert zoo.lsgm_cifar10_score().in_ch == 180 and zoo.lsgm_cifar10_score().image_size == 16
    assert zoo.lsgm_mnist_score().in_ch == 40 and zoo.lsgm_mnist_score().image_size == 8


@pytest.mark.slow
def test_conv_vae_reduced():
    cfg = zoo.with_overrides(zoo.lsgm_cifar10_conv_vae(), num_channels=8, latent_ch=6)
    pure, params = _fast_init(cfg)
    out = jax.jit(pure.apply)(params, jnp.zeros((2, 32, 32, 3)), jax.random.key(0))
    assert out["z"][0].shape == (2, 16, 16, 6) and out["logits"].shape == (2, 32, 32, 100)


def test_toy_nets():
    gen = zoo.build_net({"name": "mlp_generator", "dim": 2, "nz": 2, "hidden": 32})
    pure, params = functional(gen)
    x, z = jnp.ones((5, 2)), jnp.ones((5, 2))
    out = jax.jit(pure.apply)(params, x, jnp.arange(5), z)
    assert out.shape == (5, 2)
    assert not np.allclose(out, pure.apply(params, x, jnp.arange(5), -z))
    d = zoo.build_net({"name": "mlp_discriminator", "dim": 2, "hidden": 32})
    pd, prm = functional(d)
    assert jax.jit(pd.apply)(prm, x, x, jnp.arange(5)).shape == (5, 1)
    g = jax.grad(lambda p: pd.apply(p, x, x, jnp.arange(5)).sum())(prm)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))
    vae = zoo.build_net({"name": "mlp_vae", "dim": 2, "latent_dim": 3, "hidden": 16})
    pv, pp = functional(vae)
    fv = jax.jit(pv.apply)
    xm, zz, mu, ls = fv(pp, x, jax.random.key(0))
    assert xm.shape == (5, 2) and zz.shape == mu.shape == ls.shape == (5, 3)
    np.testing.assert_array_equal(zz, fv(pp, x, jax.random.key(0))[1])
    score = zoo.build_net({"name": "mlp_score", "dim": 2, "hidden": 16, "depth": 1})
    ps, pr = functional(score)
    assert ps.apply(pr, x, jnp.full((5,), 0.5)).shape == (5, 2)


def test_build_net_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown network"):
        zoo.build_net({"name": "unet_of_dreams"})
