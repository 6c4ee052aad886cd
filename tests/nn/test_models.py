import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import tolerances
from jaxlab.nn import MLP, SmallCNN

from ..timeseries.zoo_helpers import quick_jit


def test_mlp_matches_plain_jnp(draw):
    x = draw((3, 2, 2, 1))
    model = MLP(features=(5, 2))

    @quick_jit  # one program instead of one per operation
    def both(key, x):
        p = model.init(key, x)["params"]
        h = jax.nn.relu(x.reshape(3, -1) @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
        return model.apply({"params": p}, x), h @ p["dense_1"]["kernel"] + p["dense_1"]["bias"]

    got, ref = both(jax.random.key(1), x)
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(got, ref, atol=atol, rtol=rtol)


def test_mlp_needs_layers():
    with pytest.raises(ValueError, match="at least one layer"):
        MLP(features=()).init(jax.random.key(0), jnp.ones((1, 3)))


def test_small_cnn_shapes_and_errors():
    model = SmallCNN(num_classes=7)
    # shapes only (eval_shape): the checks are of shapes and of the error, nothing needs to run
    p = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 8, 8, 1)))
    assert jax.eval_shape(model.apply, p, jnp.ones((2, 8, 8, 1))).shape == (2, 7)
    with pytest.raises(ValueError, match="batch, H, W, C"):
        jax.eval_shape(model.apply, p, jnp.ones((2, 8, 8)))
