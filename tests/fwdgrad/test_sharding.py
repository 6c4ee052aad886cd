"""Streaming forward gradients with the batch sharded over 8 fake devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab import fwdgrad

from ..compile_helpers import quick_jit

# Numerical checks only: compile at backend level 0 (see conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles")


def _loss(p, x):
    h = jax.nn.relu(x @ p[0]["w"] + p[0]["b"])
    return jnp.mean((h @ p[1]["w"] + p[1]["b"]) ** 2)


def _params(rng, width=8):
    # NumPy draws: a jax.random sampler would be one more compilation per shape.
    return [{"w": (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32),
             "b": np.full((width,), 0.1, np.float32)} for _ in range(2)]


OPTIONS = (("projection", 1), ("mean", 2))


def _estimates(p, x, key):
    return [fwdgrad.forward_gradient(_loss, p, x, key=key, num_tangents=4, aggregation=a, tangent_batch_size=tb)
            for a, tb in OPTIONS]


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto], ids=["explicit", "auto"])
def test_streaming_forward_gradient_with_a_batch_sharded_on_8_devices(getkey, axis_type):
    assert jax.device_count() >= 8
    rng = np.random.default_rng(0)
    p, key = _params(rng), getkey()
    x = rng.standard_normal((32, 8)).astype(np.float32)
    expected = quick_jit(_estimates)(p, x, key)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        got = quick_jit(_estimates)(p, xs, key)
    for (g_ref, l_ref), (g, l) in zip(expected, got):
        np.testing.assert_allclose(l, l_ref, rtol=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
