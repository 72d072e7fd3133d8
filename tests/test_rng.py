"""The counter-based dropout masks (``jaxdiff.rng.dropout_keep``) and their Threefry hash.

The hash must be Threefry-2x32 itself (JAX's primitive, word for word); the masks must drop at
the (quantised) rate, independently between the elements that share a hash block and between
blocks, elementwise in the leading axes, and the same when the batch is sharded.
"""

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry2x32_p

from jaxdiff import rng

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def _jit(f):
    return jax.jit(f, compiler_options=FAST_COMPILE)


def test_threefry2x32_equals_jax_primitive():
    """Random keys and counters, and the edge words 0 and 2**32 - 1."""
    r = np.random.default_rng(0)
    for k in (r.integers(0, 2**32, 2, dtype=np.uint32), np.array([0, 0], np.uint32),
              np.array([2**32 - 1, 2**32 - 1], np.uint32)):  # fmt: skip
        x = r.integers(0, 2**32, (2, 257), dtype=np.uint32)
        x[:, 0], x[:, 1] = 0, 2**32 - 1
        k1, k2 = jnp.uint32(k[0]), jnp.uint32(k[1])
        ref = threefry2x32_p.bind(k1, k2, jnp.asarray(x[0]), jnp.asarray(x[1]))
        got = _jit(rng.threefry2x32)((k1, k2), (jnp.asarray(x[0]), jnp.asarray(x[1])))
        for a, b in zip(ref, got, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "key,counter,expected",
    [
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ],
)
def test_threefry2x32_known_answers(key, counter, expected):
    """Random123's known-answer vectors for Threefry-2x32 with 20 rounds."""
    k = tuple(jnp.uint32(v) for v in key)
    a, b = rng.threefry2x32(k, tuple(jnp.uint32(v) for v in counter))
    assert (int(a), int(b)) == expected


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_keep_rate_and_pairwise_independence(rate):
    """The drop frequency is the quantised rate, and elements that share a Threefry block (the
    four 16-bit halves of its two words) or sit in neighbouring blocks drop independently:
    P(both dropped) = rate^2 within 5 binomial standard deviations."""
    drop = ~np.asarray(
        _jit(lambda k: rng.dropout_keep(k, rate, (8, 16, 16, 64)))(jax.random.key(3))
    )
    n = drop.size
    q = round(rate * 65536) / 65536  # the quantised rate
    assert abs(drop.mean() - q) < 5 * math.sqrt(q * (1 - q) / n)
    flat = drop.reshape(-1).astype(np.float64)
    # lags 16, 32, 48: the same block's other halves (c = 64: quarters of 16); 1: the next
    # block; 64: the next row
    for lag in (1, 16, 32, 48, 64):
        both = flat[:-lag] * flat[lag:]
        p2 = q * q
        assert abs(both.mean() - p2) < 5 * math.sqrt(p2 * (1 - p2) / both.size), lag


def test_dropout_keep_is_elementwise_in_the_leading_axes():
    """A batch's first rows get the same mask at any batch size; odd last axes, scalars and raw
    uint32 keys work; a different key gives a different mask."""
    keep = _jit(lambda k: rng.dropout_keep(k, 0.3, (4, 3, 5, 7)))
    small = _jit(lambda k: rng.dropout_keep(k, 0.3, (2, 3, 5, 7)))
    k = jax.random.key(11)
    a = np.asarray(keep(k))
    np.testing.assert_array_equal(a[:2], np.asarray(small(k)))
    np.testing.assert_array_equal(a, np.asarray(keep(jax.random.key_data(k))))
    assert (a != np.asarray(keep(jax.random.key(12)))).any()
    assert 0.15 < 1 - a.mean() < 0.45
    assert np.asarray(_jit(lambda k: rng.dropout_keep(k, 0.3, ()))(k)).shape == ()
    with pytest.raises(ValueError, match="dropout rate"):
        rng.dropout_keep(k, 1.0, (4,))


def test_dropout_keep_sharded_over_the_batch_equals_unsharded():
    """The mask drawn inside a program whose batch is sharded over 4 devices is the mask drawn
    on one device (the counter is elementwise: nothing crosses the shards)."""
    code = """
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxdiff.nets import layers
mesh = jax.make_mesh((4,), ("data",))
x = np.ones((8, 4, 4, 12), np.float32)
f = lambda x, k: layers.dropout(x, 0.25, k)
k = jax.random.key(5)
one = np.asarray(jax.jit(f)(x, k))
xs = jax.device_put(x, NamedSharding(mesh, P("data")))
sharded = jax.jit(f, out_shardings=NamedSharding(mesh, P("data")))(xs, k)
assert len(sharded.sharding.device_set) == 4
np.testing.assert_array_equal(np.asarray(sharded), one)
print("ok", (one == 0).mean())
"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr[-2000:]
