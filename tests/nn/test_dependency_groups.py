"""The dependency groups that MLP, SmallCNN, VGG and ResNet declare: shrinking by them is exact.

A shrunk model (``prune.shrink``) must compute what the dense model computes with the removed units'
entries zeroed (``prune.structured_masks``), and its variables must have the shapes a fresh init of the
shrunk config gives. A group that missed an array axis, or declared a wrong one, fails one of the two.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import prune
from jaxlab.core import tolerances
from jaxlab.core._groups import Axis, unit_view
from jaxlab.nn import MLP, VGG, ResNet18, ResNet50, SmallCNN

from ..timeseries.zoo_helpers import quick_jit


def random_variables(config, x, kw, seed):
    """Random float32 NumPy variables of ``config`` (no init compilation; NumPy arrays take NumPy's fast paths):
    kernels N(0, 1/fan_in), scales about 1, biases and means N(0, 0.25), variances in [0.5, 1.5]."""
    shapes = jax.eval_shape(lambda k: config.init(k, x, **kw), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        shape = leaf.shape
        if name.endswith("['var']"):
            v = 0.5 + rng.random(shape)
        elif name.endswith("['kernel']"):
            v = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif name.endswith("['scale']"):
            v = 1.0 + 0.3 * rng.normal(size=shape)
        else:
            v = 0.5 * rng.normal(size=shape)
        return v.astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


CASES = {
    "mlp": (MLP(features=(6, 5, 3)), (3, 7), {}),
    "mlp_no_bias": (MLP(features=(6, 5, 3), use_bias=False), (3, 7), {}),
    "smallcnn": (SmallCNN(3, features=(3, 4), hidden=5), (3, 9, 9, 1), {}),
    "vgg_cifar": (VGG(3, layers=(4, "M", 5, "M"), hidden=(6,)), (3, 8, 8, 2), {"train": False}),
    "vgg_nobn": (VGG(3, layers=(4, "M", 5), batch_norm=False), (3, 6, 6, 2), {"train": False}),
    "vgg_timm": (VGG(3, layers=(4, "M", 5), head="timm", fc_width=6), (3, 6, 6, 2), {"train": False}),
    "resnet18": (ResNet18(num_classes=3, num_filters=2, small_inputs=True), (2, 8, 8, 3), {"train": False}),
}
SLOW = {"resnet50": (ResNet50(num_classes=3, num_filters=2, small_inputs=True), (2, 8, 8, 3), {"train": False})}


def _keep(config, rng):
    """Half of every group's units (a multiple of its share of num_filters for ResNets: all shrink by 2)."""
    keep = {}
    for g in config.dependency_groups():
        keep[g.name] = np.sort(rng.choice(g.size, g.size // 2 if g.size > 1 else 1, replace=False))
    return keep


@pytest.mark.parametrize("name", [*CASES, *(pytest.param(n, marks=pytest.mark.slow) for n in SLOW)])
def test_shrunk_model_is_the_masked_model(name):
    config, shape, kw = {**CASES, **SLOW}[name]
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    variables = random_variables(config, x, kw, seed=0)
    keep = _keep(config, np.random.default_rng(0))
    small_config, small = prune.shrink(config, variables, keep)
    masks = prune.structured_masks(config, variables, keep)
    masked = jax.tree.map(lambda v, m: v * m, variables, masks)
    atol, rtol = tolerances(jnp.float32)
    # jitted: one compilation per model instead of one per operation
    np.testing.assert_allclose(quick_jit(lambda v: small_config.apply(v, x, **kw))(small),
                               quick_jit(lambda v: config.apply(v, x, **kw))(masked), atol=10 * atol, rtol=10 * rtol)
    fresh = jax.eval_shape(lambda k: small_config.init(k, x, **kw), jax.random.key(0))
    assert jax.tree.map(jnp.shape, fresh) == jax.tree.map(jnp.shape, small)
    # every parameter and statistic of the model is spanned by some group, except the output layer's outputs
    spanned = {ax.path for g in config.dependency_groups() for ax in g.axes}
    flat = {tuple(k.key for k in p) for p, _ in jax.tree_util.tree_flatten_with_path(variables)[0]}
    assert flat - spanned <= {p for p in flat if p[-2] in ("dense_2", "Dense_1", "Dense_0", "classifier")}


def test_mlp_without_bias_has_no_bias_and_matches_plain_jnp(getkey, draw):
    model = MLP(features=(4, 3), use_bias=False)
    x = draw((2, 5))
    v = quick_jit(model.init)(getkey(), x)
    assert set(v["params"]["dense_0"]) == {"kernel"}
    p = v["params"]
    ref = quick_jit(lambda x: jax.nn.relu(x @ p["dense_0"]["kernel"]) @ p["dense_1"]["kernel"])(x)
    np.testing.assert_allclose(quick_jit(model.apply)(v, x), ref, rtol=1e-6)
    # the default keeps its biases (unchanged behaviour)
    assert set(jax.eval_shape(MLP(features=(4, 3)).init, getkey(), x)["params"]["dense_0"]) == {"kernel", "bias"}


def test_small_cnn_defaults_are_unchanged(getkey):
    v = jax.eval_shape(lambda k: SmallCNN(10).init(k, jnp.zeros((1, 28, 28, 1))), jax.random.key(0))
    shapes = jax.tree.map(lambda a: a.shape, v["params"])
    assert shapes["Conv_0"]["kernel"] == (3, 3, 1, 32) and shapes["Conv_1"]["kernel"] == (3, 3, 32, 64)
    assert shapes["Dense_0"]["kernel"] == (7 * 7 * 64, 128) and shapes["Dense_1"]["kernel"] == (128, 10)


def test_resnet_residual_streams_are_coupled():
    groups = {g.name: g for g in ResNet18(num_classes=10, num_filters=4).dependency_groups()}
    stem = {ax.path for ax in groups["stem"].axes}
    # stage 0's stream: the stem and both blocks' last conv outputs, both blocks' first conv inputs, and the
    # next stage's first block reads it through its first conv and its projection
    for path in [("params", "conv_init", "kernel"), ("params", "BasicBlock_0", "Conv_1", "kernel"),
                 ("params", "BasicBlock_1", "Conv_0", "kernel"), ("params", "BasicBlock_2", "conv_proj", "kernel")]:
        assert path in stem
    assert ("params", "Dense_0", "kernel") in {ax.path for ax in groups["residual_3"].axes}
    assert groups["residual_1"].size == 8 and groups["BasicBlock_2/Conv_0"].size == 8
    with pytest.raises(ValueError, match="multiple of 2"):
        groups["residual_1"].resize(ResNet18(num_classes=10, num_filters=4), np.arange(5))


def test_inferred_tile():
    ax = Axis(("params", "d", "kernel"), 0, tile=None)
    x = np.arange(12).reshape(12, 1)
    np.testing.assert_array_equal(unit_view(x, ax, 3)[:, :, 0, 0], np.arange(12).reshape(4, 3))
    with pytest.raises(ValueError, match="not a multiple"):
        unit_view(np.zeros((10, 1)), ax, 3)
    with pytest.raises(ValueError, match="do not match"):
        unit_view(np.zeros((10, 1)), Axis(("p",), 0, tile=2), 3)
