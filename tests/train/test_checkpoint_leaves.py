"""Leaves beyond float arrays: typed PRNG keys and NumPy scalars restore as saved, and a key of another shape or
kind is a different model."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxlab.train._checkpoint as ck
from jaxlab.parallel import make_mesh
from jaxlab.train import CheckpointError, TrainState, train_loop
from jaxlab.train._checkpoint import Checkpointer


@pytest.fixture(params=["pytree", "standard"])
def handler(request, monkeypatch):
    """Both of the checkpointer's orbax handlers: its own pytree handler (one process) and orbax's
    StandardCheckpointHandler (several processes, or an orbax without the names it uses)."""
    if request.param == "standard":
        monkeypatch.setattr(ck, "_item_handler", lambda: (ocp.StandardCheckpointHandler(), False))
    return request.param


def _keys():
    key = jax.random.key(0)
    return {"key": key, "keys": jax.random.split(key, 4), "rbg": jax.random.split(jax.random.key(1, impl="rbg"), 2),
            "raw": jax.random.PRNGKey(7), "w": jnp.arange(3.0, dtype=jnp.float32)}


def _saved(tmp_path, state, like=None):
    with Checkpointer(tmp_path / "ck") as c:
        c.save(1, state)
        c.wait()
        return c.restore(1, state if like is None else like)


def _assert_same_keys(back, state):
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for name, x in state.items():
        y = back[name]
        assert y.dtype == x.dtype and y.shape == x.shape, name
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(y) == jax.random.key_impl(x), name
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


def test_typed_keys_restore_as_saved(tmp_path, handler):
    state = _keys()
    back = _saved(tmp_path, state)
    _assert_same_keys(back, state)
    # The restored key draws what the saved one draws.
    for name in ("keys", "rbg"):
        np.testing.assert_array_equal(jax.random.normal(back[name][-1], (5,)), jax.random.normal(state[name][-1], (5,)))


def test_typed_keys_restore_replicated_on_a_mesh(tmp_path, handler):
    rep = NamedSharding(make_mesh(data=8), P())
    state = jax.device_put(_keys(), rep)
    back = _saved(tmp_path, state)
    _assert_same_keys(back, state)
    for name, x in back.items():  # P() or P(None,): the same placement
        assert x.sharding.is_equivalent_to(rep, x.ndim) and len(x.sharding.device_set) == 8, (name, x.sharding)


@pytest.mark.parametrize("change, needle", [
    (lambda s: dict(s, keys=jax.random.split(s["key"], 3)), r"keys is \(4,\) key<fry> there and \(3,\) key<fry> here"),
    (lambda s: dict(s, key=jax.random.split(s["key"], 1)), r"key is \(\) key<fry> there and \(1,\) key<fry> here"),
    (lambda s: dict(s, w=jnp.zeros(4, jnp.float32)), r"w is \(3,\) float32 there and \(4,\) float32 here"),
    (lambda s: dict(s, rbg=jax.random.split(jax.random.key(1, impl="unsafe_rbg"), 2)),
     r"rbg is \(2,\) key<rbg> there and \(2,\) key<urbg> here"),
    (lambda s: dict(s, raw=jax.random.key(7)), r"raw is \(2,\) uint32 there and \(\) key<fry> here"),
    (lambda s: dict(s, key=jax.random.key_data(s["key"])), r"key is \(\) key<fry> there and \(2,\) uint32 here"),
], ids=["batch-shape", "scalar-to-batched", "param-shape", "impl", "raw-to-typed", "typed-to-raw"])
def test_a_different_key_is_a_different_model(tmp_path, change, needle):
    state = _keys()
    with pytest.raises(CheckpointError, match="holds a different model: " + needle):
        _saved(tmp_path, state, like=change(state))


def test_a_key_of_another_kind_is_refused_without_the_saved_dtypes(tmp_path, monkeypatch):
    """A checkpoint without jaxlab's digests (orbax's metadata lists only key data): raw key data restored into a
    typed key comes back as uint32, which is refused after the restore."""
    state = {"k": jax.random.PRNGKey(0)}
    with Checkpointer(tmp_path / "ck") as c:
        c.save(1, state)
        c.wait()
        monkeypatch.setattr(ck, "DIGESTS_KEY", "no_digests_here")  # read as a checkpoint saved without them
        with pytest.raises(CheckpointError, match=r"different model: k was restored as uint32, not as key<fry>"):
            c.restore(1, {"k": jax.random.key(0)})


def test_numpy_scalars_restore_as_the_same_type_and_value(tmp_path, handler):
    snan = np.array(0x7FA00001, np.uint32).view(np.float32)[()]  # a NaN with a payload, bit for bit
    state = {"f32": np.float32(2.5), "f64": np.float64(0.1), "i64": np.int64(-3), "u8": np.uint8(200),
             "c64": np.complex64(1 - 2j), "b": np.bool_(True), "nan": snan, "py": 1.5, "arr": np.arange(3.0)}
    back = _saved(tmp_path, state)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for name, x in state.items():
        assert type(back[name]) is type(x), (name, type(back[name]))
        assert np.asarray(back[name]).tobytes() == np.asarray(x).tobytes(), name
    with Checkpointer(tmp_path / "ck") as c, pytest.raises(  # another dtype is still another model
            CheckpointError, match=r"different model: f32 is \(\) float32 there and \(\) float64 here"):
        c.restore(1, dict(state, f32=np.float64(2.5)))


def test_a_run_with_a_key_in_its_state_resumes_as_it_ran(tmp_path):
    """TrainState has no key field; a model that draws its own noise keeps its key in model_state."""

    @jax.jit
    def step(state, batch, key):
        k, sub = jax.random.split(state.model_state["key"])
        w = state.params["w"] + jax.random.normal(sub, state.params["w"].shape, jnp.float32)
        return state._replace(step=state.step + 1, params={"w": w}, model_state={"key": k}), {"loss": jnp.sum(w)}

    def loop(wd, num_steps):
        state = TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.zeros(3, jnp.float32)}, opt_state=(),
                           model_state={"key": jax.random.key(5)})
        return train_loop(state, step, lambda i: None, num_steps=num_steps, key=jax.random.key(0), workdir=wd,
                          checkpoint_every=2, log_every=2, meter=None, progress=False)

    ref, _ = loop(tmp_path / "ref", 6)
    loop(tmp_path / "run", 4)
    (tmp_path / "run" / "summary.json").unlink()  # as if killed after the checkpoint of step 4
    back, summary = loop(tmp_path / "run", 6)
    assert summary["resumed_from"] == 4 and summary["status"] == "completed"
    np.testing.assert_array_equal(back.params["w"], ref.params["w"])
    assert back.model_state["key"].dtype == ref.model_state["key"].dtype
    np.testing.assert_array_equal(jax.random.key_data(back.model_state["key"]),
                                  jax.random.key_data(ref.model_state["key"]))


def test_python_numbers_restore_as_saved(tmp_path, handler):
    """Orbax lists a Python number's metadata as a () array; the number itself has no shape to compare."""
    state = {"lr": 1e-3, "n": 3, "w": jnp.ones(2, jnp.float32)}
    back = _saved(tmp_path, state)
    assert back["lr"] == 1e-3 and back["n"] == 3 and type(back["lr"]) is float and type(back["n"]) is int
    np.testing.assert_array_equal(back["w"], state["w"])
