"""Streaming forward gradients with the batch sharded over 8 fake devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab import fwdgrad

# Numerical checks only: compile at backend level 0 (see conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles")


def _loss(p, x):
    h = jax.nn.relu(x @ p[0]["w"] + p[0]["b"])
    return jnp.mean((h @ p[1]["w"] + p[1]["b"]) ** 2)


def _params(key, width=8):
    k1, k2 = jax.random.split(key)
    return [{"w": jax.random.normal(k, (width, width), jnp.float32) / np.sqrt(width),
             "b": jnp.full((width,), 0.1, jnp.float32)} for k in (k1, k2)]


OPTIONS = (("projection", 1), ("mean", 2))


def _estimates(p, x, key):
    return [fwdgrad.forward_gradient(_loss, p, x, key=key, num_tangents=4, aggregation=a, tangent_batch_size=tb)
            for a, tb in OPTIONS]


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto], ids=["explicit", "auto"])
def test_streaming_forward_gradient_with_a_batch_sharded_on_8_devices(getkey, axis_type):
    assert jax.device_count() >= 8
    p, key = _params(getkey()), getkey()
    x = jax.random.normal(getkey(), (32, 8), jnp.float32)
    expected = jax.jit(_estimates)(p, x, key)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        got = jax.jit(_estimates)(p, xs, key)
    for (g_ref, l_ref), (g, l) in zip(expected, got):
        np.testing.assert_allclose(l, l_ref, rtol=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
