"""host_computable and host_value: which arrays the layers' eager per-leaf work may copy to NumPy and put back."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxlab.core._host import host_computable, host_value


def test_concrete_one_device_and_replicated_arrays_only():
    mesh = jax.make_mesh((8,), ("d",))
    x = jnp.arange(16.0)
    assert host_computable(x)
    assert host_computable(jax.device_put(x, NamedSharding(mesh, P())))  # replicated: any shape fits it
    assert not host_computable(jax.device_put(x, NamedSharding(mesh, P("d"))))  # sharded: a cut may not fit
    assert not host_computable(np.arange(3.0))  # NumPy already
    seen = []
    jax.jit(lambda y: seen.append(host_computable(y)) or y)(x)
    assert seen == [False]  # a tracer


def test_host_value_puts_results_back_where_the_input_was():
    mesh = jax.make_mesh((8,), ("d",))
    replicated = jax.device_put(jnp.arange(4.0), NamedSharding(mesh, P()))
    y, back = host_value(replicated)
    assert isinstance(y, np.ndarray)
    out = back(y[:2] * 2)  # another shape: a replicated placement fits it
    assert out.sharding == replicated.sharding and out.committed and out.tolist() == [0.0, 2.0]
    y, back = host_value(jnp.arange(3.0))  # uncommitted stays uncommitted
    assert isinstance(y, np.ndarray) and not back(y).committed
    sharded = jax.device_put(jnp.arange(16.0), NamedSharding(mesh, P("d")))
    y, back = host_value(sharded)
    assert y is sharded and back(y) is sharded  # left to the caller's jnp path
