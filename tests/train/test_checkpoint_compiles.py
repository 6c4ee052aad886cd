"""Saving replicated arrays compiles nothing, and restores them as saved (values, dtypes and shardings)."""

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.parallel import make_mesh
from jaxlab.train._checkpoint import Checkpointer

from ..compile_helpers import compiled_programs


def _state():
    """Six arrays replicated over the 8 fake devices, one sharded and a NumPy array."""
    mesh = make_mesh(data=8)
    rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(0)
    replicated = {f"w{i}": jax.device_put(rng.normal(size=(16, 4 + i)).astype(np.float32), rep) for i in range(6)}
    return {"params": replicated, "rows": jax.device_put(np.arange(32, dtype=np.int32), split),
            "host": np.arange(5.0)}


def test_saving_replicated_arrays_compiles_nothing(tmp_path):
    state = _state()
    with Checkpointer(tmp_path / "ck") as ck:
        with compiled_programs() as compiled:  # orbax's replica-parallel saving: one eager slice per array
            ck.save(3, state)
            ck.wait()
        assert compiled == [], compiled
        back = ck.restore(3, state)
    flat, tree = jax.tree.flatten(state)
    back_flat, back_tree = jax.tree.flatten(back)
    assert tree == back_tree
    for a, b in zip(flat, back_flat):
        if isinstance(a, jax.Array):
            assert b.sharding == a.sharding and b.dtype == a.dtype
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
