"""ResNet and AFNO: parameter counts, shapes, BatchNorm state, the AFNO mixer against a NumPy oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import nn as jnn
from jaxlab.core import tolerances

from ..timeseries.zoo_helpers import quick_jit


def _normal(shape, dtype, seed=0):
    # NumPy draws: no per-shape PRNG compilation (these tests are compile-bound on CPU).
    return jnp.asarray(np.random.default_rng([seed, *shape]).standard_normal(shape).astype(dtype))


def _count(tree):
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize("model, expected", [(jnn.ResNet50, 25_557_032), (jnn.ResNet18, 11_689_512)])
def test_resnet_parameter_counts_match_torchvision(model, expected):
    m = model(num_classes=1000)
    x = jnp.zeros((2, 64, 64, 3), jnp.float32)

    def init_apply():  # traced only (eval_shape): no compilation
        v = m.init(jax.random.key(0), x, train=False)
        return v, m.apply(v, x, train=False)

    variables, out = jax.eval_shape(init_apply)
    assert _count(variables["params"]) == expected  # 25.6M and 11.7M
    assert out.shape == (2, 1000)


def test_resnet_shapes_and_batch_stats():
    # One bottleneck stage with a projection shortcut (4 -> 16 channels).
    model = jnn.ResNet(stage_sizes=(1,), block_cls=jnn.BottleneckBlock, num_classes=7, num_filters=4,
                       small_inputs=True)
    x = _normal((3, 8, 8, 3), np.float32)

    def init_and_apply(k):  # one compilation for both
        v = model.init(k, x, train=False)
        return v, model.apply(v, x, train=True, mutable=["batch_stats"])

    # An "rbg" key: the init compiles ~3x faster than with threefry on CPU.
    variables, (logits, upd) = quick_jit(init_and_apply)(jax.random.key(0, impl="rbg"))
    assert set(variables) == {"params", "batch_stats"}
    assert "conv_proj" in variables["params"]["BottleneckBlock_0"]
    assert logits.shape == (3, 7) and logits.dtype == jnp.float32
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), variables["batch_stats"],
                           upd["batch_stats"])
    assert all(jax.tree.leaves(changed))


def test_zero_init_residual_sets_the_last_batchnorm_scale_of_every_block():
    """Default (flax's ImageNet example): every block's last BatchNorm starts with scale 0; False: 1 (torch)."""
    x = jnp.zeros((1, 8, 8, 3), jnp.float32)

    def last_scales(zero):
        model = jnn.ResNet(stage_sizes=(1, 1), block_cls=jnn.BasicBlock, num_classes=3, num_filters=2,
                           small_inputs=True, zero_init_residual=zero)
        v = quick_jit(lambda k: model.init(k, x, train=False))(jax.random.key(0, impl="rbg"))
        return [np.asarray(v["params"][b]["BatchNorm_1"]["scale"]) for b in ("BasicBlock_0", "BasicBlock_1")] + \
            [np.asarray(v["params"]["BasicBlock_0"]["BatchNorm_0"]["scale"])]

    *last, first = last_scales(True)
    assert all(np.all(s == 0) for s in last) and np.all(first == 1)
    *last, first = last_scales(False)
    assert all(np.all(s == 1) for s in last) and np.all(first == 1)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_afno_mixer_matches_numpy_oracle(fraction):
    b, h, w, c, nb, f = 2, 6, 8, 8, 4, 2
    x = _normal((b, h, w, c), np.float64)
    bs = c // nb
    w1 = 0.5 * _normal((2, nb, bs, bs * f), np.float64, seed=1)
    b1 = 0.1 * _normal((2, nb, bs * f), np.float64, seed=2)
    w2 = 0.5 * _normal((2, nb, bs * f, bs), np.float64, seed=3)
    b2 = 0.1 * _normal((2, nb, bs), np.float64, seed=4)
    kw = dict(sparsity_threshold=0.05, hard_thresholding_fraction=fraction)
    got = quick_jit(lambda *a: jnn.afno2d_mix(*a, **kw))(x, w1, b1, w2, b2)
    want = jnn.afno2d_mix_reference(x, w1, b1, w2, b2, **kw)
    atol, rtol = tolerances(jnp.float64)
    np.testing.assert_allclose(np.asarray(got), want, atol=atol, rtol=rtol)
    assert got.shape == x.shape and got.dtype == x.dtype


def test_afnonet_shapes_and_errors():
    net = jnn.AFNONet(out_channels=2, patch_size=4, embed_dim=16, depth=2, num_blocks=4)
    x = _normal((2, 8, 16, 3), np.float32)
    variables = jax.eval_shape(lambda: net.init(jax.random.key(0), x))
    y = jax.eval_shape(net.apply, variables, x)
    assert y.shape == (2, 8, 16, 2) and y.dtype == jnp.float32
    assert variables["params"]["pos_embed"].shape == (1, 2, 4, 16)
    assert variables["params"]["block_0"]["AFNO2D_0"]["w1"].shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match="patch_size"):
        jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, 9, 16, 3))))
    bad = jnn.AFNONet(out_channels=1, patch_size=4, embed_dim=10, depth=1, num_blocks=4)
    with pytest.raises(ValueError, match="num_blocks"):
        jax.eval_shape(lambda: bad.init(jax.random.key(0), x))


def test_afnonet_patch_locality_of_head():
    # With zero depth, pixels of one patch depend only on that patch's token: perturbing one
    # patch leaves the others unchanged (checks the un-patchify ordering).
    net = jnn.AFNONet(out_channels=1, patch_size=2, embed_dim=4, depth=0, num_blocks=1)
    x = _normal((1, 4, 6, 1), np.float32)
    v = quick_jit(net.init)(jax.random.key(0, impl="rbg"), x)
    apply = quick_jit(net.apply)
    y0 = apply(v, x)
    y1 = apply(v, x.at[0, 2:4, 0:2, 0].add(1.0))
    diff = np.asarray(jnp.abs(y1 - y0)[0, :, :, 0] > 0)
    expected = np.zeros((4, 6), bool)
    expected[2:4, 0:2] = True
    np.testing.assert_array_equal(diff, expected)


def test_afno_mix_runs_in_bfloat16():
    # XLA's FFT refuses bfloat16; the mixer transforms in float32 and returns bfloat16 (the energy study's bf16 runs).
    nb, bs, f = 2, 4, 1
    x = _normal((1, 4, 6, nb * bs), np.float32)
    w1, b1 = 0.5 * _normal((2, nb, bs, bs * f), np.float32, seed=1), 0.1 * _normal((2, nb, bs * f), np.float32, seed=2)
    w2, b2 = 0.5 * _normal((2, nb, bs * f, bs), np.float32, seed=3), 0.1 * _normal((2, nb, bs), np.float32, seed=4)
    got = quick_jit(jnn.afno2d_mix)(jnp.asarray(x, jnp.bfloat16), w1, b1, w2, b2)
    want = jnn.afno2d_mix_reference(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64), w1, b1, w2, b2)
    assert got.dtype == jnp.bfloat16
    atol, rtol = tolerances(jnp.bfloat16)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=atol, rtol=rtol)
