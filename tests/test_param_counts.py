"""Parameter counts of the full paper configs (abstract construction: nothing is allocated or
compiled; ``zoo.count_params_abstract`` takes about a second for the largest network).

Two independent references per network: a count written down by hand from the official PyTorch
code's module list (``_official_*`` below; it shares no code with the zoo), which the zoo must
match exactly, and the published figure where one exists, which is rounded (within 1%).
"""

import jax
import pytest
from flax import nnx

from jaxdiff.nets import zoo


def _conv(cin, cout, k=3, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def _lin(a, b):
    return a * b + b


def _official_ncsnpp(
    in_ch, out_ch, nf, ch_mult, nres, attn_levels, temb_in, temb, prog_in, zdim=0, nz=0, n_mlp=0
):
    """Module list of score_sde_pytorch / CLD-SGM / DDGAN ``NCSNpp.__init__`` with
    resblock_type=biggan, progressive=none, progressive_input in {none, residual}."""
    # AdaGN has no affine, only the style Dense(zdim -> 2c); plain GroupNorm has 2c
    gn = (lambda c: zdim * 2 * c + 2 * c) if zdim else (lambda c: 2 * c)

    def res(cin, cout=None, resample=False):
        cout = cout or cin
        n = gn(cin) + _conv(cin, cout) + _lin(temb, cout) + gn(cout) + _conv(cout, cout)
        return n + (_conv(cin, cout, 1) if (cin != cout or resample) else 0)

    def attn(c):
        return 2 * c + 4 * (c * c + c)

    n = _lin(temb_in, temb) + _lin(temb, temb)
    n += _conv(in_ch, nf)
    hs, c, pc = [nf], nf, in_ch
    for lvl, m in enumerate(ch_mult):
        for _ in range(nres):
            n += res(c, nf * m) + (attn(nf * m) if lvl in attn_levels else 0)
            c = nf * m
            hs.append(c)
        if lvl != len(ch_mult) - 1:
            n += res(c, resample=True)
            if prog_in == "residual":
                n += _conv(pc, c)
                pc = c
            hs.append(c)
    n += res(c) + attn(c) + res(c)
    for lvl in reversed(range(len(ch_mult))):
        for _ in range(nres + 1):
            n += res(c + hs.pop(), nf * ch_mult[lvl])
            c = nf * ch_mult[lvl]
        n += attn(c) if lvl in attn_levels else 0
        if lvl != 0:
            n += res(c, resample=True)
    n += 2 * c + _conv(c, out_ch)
    if nz:
        n += _lin(nz, zdim) + n_mlp * _lin(zdim, zdim)
    return n


def _official_ddgan_d(nc, ngf, temb, widths):
    n = 2 * _lin(temb, temb) + _conv(nc, 2 * ngf, 1)
    c = 2 * ngf
    for w in widths:
        o = ngf * w
        n += _conv(c, o) + _conv(o, o) + _lin(temb, o) + _conv(c, o, 1, bias=False)
        c = o
    return n + _conv(c + 1, c) + _lin(c, 1)


def _official_nvae(
    img_ch, c, mult, pre_blocks, pre_cells, scales, groups, latent, enc_cells, dec_cells, arch, out
):
    """Module list of LSGM ``nvae.py`` ``NVAE.__init__`` (num_nf 0, progressive_input none, input
    32x32, num_channels_enc = num_channels_dec = c). ``Conv2D`` is weight-normalised unless told
    otherwise: one trainable ``log_weight_norm`` per output channel; BN layers count their affine
    weight and bias (running statistics are buffers)."""

    def wn(cin, cout, k, bias=True):  # Conv2D(..., weight_norm=True)
        return _conv(cin, cout, k, bias) + cout

    def bn(n):
        return 2 * n

    def se(n):
        h = max(n // 16, 4)
        return _lin(n, h) + _lin(h, n)

    def branch(op, cin, cout):
        if op == "res_bnswish":  # BNSwishConv(Cin, Cout), BNSwishConv(Cout, Cout)
            return bn(cin) + wn(cin, cout, 3) + bn(cout) + wn(cout, cout, 3)
        hid = cin * {"mconv_e6k5g0": 6, "mconv_e3k5g0": 3}[op]  # InvertedResidual, k 5, g 0
        return bn(cin) + cin * hid + bn(hid) + 25 * hid + bn(hid) + hid * cout + bn(cout)

    def skip(stride, cin, cout):
        if stride == 2:  # FactorizedReduce: four 1x1 Conv2D(bias=True), C_out split in 4
            return sum(wn(cin, o, 1) for o in (cout // 4,) * 3 + (cout - 3 * (cout // 4),))
        return wn(cin, cout, 1, bias=False) if stride == -1 else 0  # UpSample + Conv2D 1x1

    def cell(op, cin, cout, stride=1):
        return skip(stride, cin, cout) + branch(op, cin, cout) + se(cout)

    enc_op, dec_op, post_op = {
        "res_bnswish": ("res_bnswish",) * 3,
        "res_mbconv": ("res_bnswish", "mconv_e6k5g0", "mconv_e3k5g0"),
    }[arch]
    ch = [c * m for m in mult]
    n = wn(img_ch, c, 3)  # stem
    i = 0
    for _ in range(pre_blocks):  # pre_process: normal_pre ..., down_pre
        n += (pre_cells - 1) * cell(enc_op, ch[i], ch[i]) + cell(enc_op, ch[i], ch[i + 1], 2)
        i += 1
    for s in range(scales):  # enc_tower: cells per group, EncCombinerCell but for the last group
        n += groups * enc_cells * cell(enc_op, ch[i], ch[i])
        n += (groups - (s == scales - 1)) * wn(ch[i], ch[i], 1)
        if s < scales - 1:
            n += cell(enc_op, ch[i], ch[i + 1], 2)
            i += 1
    for _ in range(scales):  # enc_sampler (ELU, Conv2D 3x3) and eps_conv per group
        n += groups * (wn(ch[i], 2 * latent, 3) + wn(latent, latent, 3))
        i -= 1
    i += scales
    for s in range(scales):  # dec_tower: DecCombinerCell + normal_dec cells, up_dec
        n += groups * (wn(ch[i] + latent, ch[i], 1) + dec_cells * cell(dec_op, ch[i], ch[i]))
        if s < scales - 1:
            n += cell(dec_op, ch[i], ch[i - 1], -1)
            i -= 1
    for _ in range(pre_blocks):  # post_process: up_post, normal_post ...
        n += cell(post_op, ch[i], ch[i - 1], -1) + (pre_cells - 1) * cell(
            post_op, ch[i - 1], ch[i - 1]
        )
        i -= 1
    top = 32 // 2 ** (pre_blocks + scales - 1)
    return n + ch[-1] * top * top + wn(ch[0], out, 3)  # prior_ftr0, image_conditional


# name: (published figure or None, hand count from the official code, source of the figure)
OFFICIAL = {
    "ncsnpp_cifar10_cld": (
        108e6,
        _official_ncsnpp(6, 3, 128, (1, 2, 2, 2), 8, {1}, 256, 512, "residual") + 128,  # + W
        "PSLD Tables 1-2 ('CLD 108M'), cld.md 4.1",
    ),
    "ddpmpp_cifar10_continuous": (
        None,
        _official_ncsnpp(3, 3, 128, (1, 2, 2, 2), 4, {1}, 128, 512, "none"),
        "hand count of score_sde ncsnpp.py",
    ),
    "ddgan_cifar10_generator": (
        None,
        _official_ncsnpp(3, 3, 128, (1, 2, 2, 2), 2, {1}, 128, 512, "residual", 256, 100, 4),
        "hand count of ncsnpp_generator_adagn.py",
    ),
    "ddgan_celebahq256_generator": (
        None,
        _official_ncsnpp(3, 3, 64, (1, 1, 2, 2, 4, 4), 2, {4}, 64, 256, "residual", 256, 100, 3),
        "hand count of ncsnpp_generator_adagn.py",
    ),
    "ddgan_cifar10_discriminator": (
        None,
        _official_ddgan_d(6, 64, 256, (2, 4, 8, 8)),
        "hand count of discriminator.py",
    ),
    "ddgan_celebahq256_discriminator": (
        None,
        _official_ddgan_d(6, 64, 256, (4, 8, 8, 8, 8, 8)),
        "hand count of discriminator.py",
    ),
    "lsgm_cifar10_score": (
        None,
        _official_ncsnpp(180, 180, 512, (1, 1, 1), 8, {0}, 128, 512, "none") + 180,  # + logit
        "hand count of LSGM score_sde/ncsnpp.py",
    ),
    "lsgm_cifar10_vae": (
        None,
        _official_nvae(3, 128, (1, 2), 1, 2, 1, 20, 9, 2, 2, "res_bnswish", 100),
        "hand count of LSGM nvae.py, README 'vae2' flags",
    ),
    "lsgm_mnist_vae": (
        None,
        _official_nvae(1, 64, (1, 2, 2), 2, 3, 1, 2, 20, 1, 1, "res_mbconv", 1),
        "hand count of LSGM nvae.py, README MNIST flags",
    ),
    "lsgm_mnist_score": (
        None,
        _official_ncsnpp(40, 40, 256, (1, 1), 8, set(), 128, 512, "none") + 40,
        "hand count of LSGM score_sde/ncsnpp.py",
    ),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_paper_config_param_counts(name):
    ours = zoo.count_params_abstract(zoo.PAPER_CONFIGS[name]())
    published, hand, _ = OFFICIAL[name]
    assert ours == hand, (ours, hand, ours - hand)
    if published is not None:
        assert abs(ours - published) <= 0.01 * published, (ours, published)


@pytest.mark.parametrize(
    "cfg",
    [
        zoo.with_overrides(
            zoo.ddgan_cifar10_generator(), nf=16, ch_mult=(1, 2), num_res_blocks=1, z_emb_dim=8
        ),
        zoo.with_overrides(zoo.ncsnpp_cifar10_cld(), nf=16, ch_mult=(1, 2), num_res_blocks=1),
        zoo.with_overrides(
            zoo.lsgm_mnist_vae(), num_channels=8, num_latent_scales=2, channel_mult=(1, 2, 2, 2)
        ),
        zoo.with_overrides(zoo.ddgan_cifar10_discriminator(), ngf=4),
    ],
    ids=["ddgan_g", "cld", "nvae", "ddgan_d"],
)
def test_abstract_build_is_build_net(cfg):
    """``build_net_abstract`` (one fixed key for every layer: fast under ``eval_shape``) gives
    ``build_net``'s graph and parameter shapes and dtypes."""
    fast = nnx.split(zoo.build_net_abstract(cfg))
    real = nnx.split(nnx.eval_shape(lambda: zoo.build_net(cfg)))
    assert fast[0] == real[0]
    assert jax.tree.map(lambda v: (v.shape, v.dtype), nnx.to_pure_dict(fast[1])) == jax.tree.map(
        lambda v: (v.shape, v.dtype), nnx.to_pure_dict(real[1])
    )
