"""host_computable: which arrays the layers' eager per-leaf work may copy to NumPy and put back."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxlab.core._host import host_computable


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
