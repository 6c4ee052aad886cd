"""VGG: parameter counts of the paper-sized models, the forward pass against plain lax, adaptive pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import tolerances
from jaxlab.nn import VGG
from jaxlab.nn._vgg import adaptive_avg_pool

from ..timeseries.zoo_helpers import quick_jit


def _count(model, shape):
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(shape), train=False), jax.random.key(0))
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))


def test_timm_vgg16_has_the_paper_parameter_count():
    # AB-training's VGG16 (timm, 10 classes): 134.3M parameters, 102.8M of them in fc1.
    n = _count(VGG.vgg16(10, head="timm", batch_norm=False), (1, 32, 32, 3))
    assert n == 14_714_688 + 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10
    assert abs(n / 1e6 - 134.3) < 0.05


def test_cifar_vgg11_parameter_count():
    # conv weights (no bias with BN) + BN scale/bias per channel + the 512 -> 10 classifier.
    chans = [3, 64, 128, 256, 256, 512, 512, 512, 512]
    conv = sum(9 * a * b + 2 * b for a, b in zip(chans[:-1], chans[1:]))
    assert _count(VGG.vgg11(10), (1, 32, 32, 3)) == conv + 512 * 10 + 10


def _vgg_reference(params, layers, x):
    """Plain lax VGG without BatchNorm (cifar head, no hidden layers)."""
    i = 0
    for item in layers:
        if item == "M":
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            continue
        p = params[f"conv_{i}"]
        x = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]
        x = jnp.maximum(x, 0)
        i += 1
    x = x.reshape(x.shape[0], -1)
    return x @ params["classifier"]["kernel"] + params["classifier"]["bias"]


def test_forward_matches_plain_lax(draw):
    model = VGG(10, layers=(8, "M", 16, 16, "M"), batch_norm=False)
    x = draw((3, 8, 8, 2))

    @quick_jit  # init, model and reference in one program
    def both(key, x):
        params = model.init(key, x)["params"]
        return model.apply({"params": params}, x), _vgg_reference(params, model.layers, x)

    got, want = both(jax.random.key(1), x)
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


def test_timm_head_and_batchnorm_train_mode(getkey, draw):
    model = VGG.vgg11(5, width=1 / 16, head="timm", fc_width=32, dropout=0.5)
    x = draw((2, 32, 32, 3))
    variables = jax.eval_shape(lambda k: model.init(k, x, train=False), getkey())
    y, updates = jax.eval_shape(lambda v, k: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                         rngs={"dropout": k}), variables, getkey())
    assert y.shape == (2, 5) and "batch_stats" in updates
    assert variables["params"]["fc1"]["kernel"].shape == (7 * 7 * 32, 32)


def _adaptive_reference(x, size):
    n, h, w, c = x.shape
    out = np.zeros((n, size[0], size[1], c))
    for i in range(size[0]):
        for j in range(size[1]):
            a, b = int(np.floor(i * h / size[0])), int(np.ceil((i + 1) * h / size[0]))
            p, q = int(np.floor(j * w / size[1])), int(np.ceil((j + 1) * w / size[1]))
            out[:, i, j] = x[:, a:b, p:q].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (7, 7), (9, 14)])
def test_adaptive_avg_pool_matches_loop(hw):
    x = np.random.default_rng(0).normal(size=(2, *hw, 3))  # float64
    got = quick_jit(adaptive_avg_pool, static_argnums=1)(x, (7, 7))
    np.testing.assert_allclose(got, _adaptive_reference(x, (7, 7)), rtol=1e-12)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="head"):
        jax.eval_shape(VGG(10, head="bogus").init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="too small"):
        jax.eval_shape(VGG.vgg16(10).init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
