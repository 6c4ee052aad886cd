"""Jigsaw WeatherMixer on every mesh equals the one-device model (loss, gradients, a train step)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.methods import weathermixer as wm
from jaxlab.parallel import make_mesh, param_shardings

from ...timeseries.zoo_helpers import quick_jit

MESHES = [(1, 1, 1), (1, 2, 1), (1, 1, 2), (1, 2, 2), (2, 2, 2), (1, 4, 2)]
RTOL = 1e-5  # float32, relative (to each quantity's largest magnitude)

# Tiny shapes that divide every mesh above: 8 x 12 grid, patch 3 -> 32 tokens, 8 channels.
MODEL = wm.WeatherMixer(
    grid=(8, 12), channels=8, patch=3, hidden=16, token_hidden=16, channel_hidden=16, num_blocks=1
)


def _mesh(sizes):
    return make_mesh(*sizes, devices=jax.devices()[: int(np.prod(sizes))])


def _value_and_grad(loss_fn):
    """The jitted loss and gradients (compiled by quick_jit: level 0, no fusion emitters, about 1 CPU-s each)."""
    return quick_jit(jax.value_and_grad(lambda p, b: loss_fn(p, None, b, None)[0]))


@pytest.fixture(scope="module")
def problem():
    """Parameters, batch and the one-device loss and gradients, all as NumPy arrays: placing a host array on a
    mesh slices it on the host, where a one-device jax.Array would compile a slicing program per shape."""
    params = jax.device_get(wm.init_params(MODEL, key=jax.random.key(0)))
    rng = np.random.default_rng(1)
    state, target = (rng.normal(size=(2, 8, 12, 8)).astype(np.float32) for _ in range(2))
    batch = {"state": state, "target": target, "lat_weights": wm.latitude_weights(wm.grid_latitudes(8))}
    loss, grads = jax.device_get(_value_and_grad(wm.make_loss_fn(MODEL))(params, batch))
    return params, batch, float(loss), grads


def _place(params, batch, mesh):
    p = wm.shard_params(params, mesh)
    b = {
        "state": jax.device_put(batch["state"], wm.state_sharding(mesh)),
        "target": jax.device_put(batch["target"], wm.state_sharding(mesh)),
        "lat_weights": jax.device_put(batch["lat_weights"], wm.lat_sharding(mesh)),
    }
    return p, b


def _assert_tree_close(got, want, rtol):
    got, want = jax.device_get((got, want))  # NumPy: no eager program compiled per leaf shape
    scale = max(float(np.max(np.abs(w))) for w in jax.tree.leaves(want))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("sizes", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_loss_and_grads_match_one_device(problem, sizes):
    params, batch, loss0, grads0 = problem
    mesh = _mesh(sizes)
    p, b = _place(params, batch, mesh)
    loss, grads = _value_and_grad(wm.make_loss_fn(MODEL, mesh))(p, b)
    assert abs(float(loss) - loss0) <= RTOL * abs(loss0)
    _assert_tree_close(grads, grads0, RTOL)
    # the gradients come back in the parameters' layout: nothing gathered or replicated
    for g, q in zip(jax.tree.leaves(grads), jax.tree.leaves(p)):
        assert g.sharding.is_equivalent_to(q.sharding, g.ndim)


def test_autodiff_backward_matches_one_device(problem):
    """``remat=False`` (autodiff of the forward exchanges, gathered blocks kept) on (1, 2, 2).

    The default, ``remat=True`` (blocks exchanged again in the backward pass, as the reference
    does), is checked on every mesh above.
    """
    params, batch, loss0, grads0 = problem
    mesh = _mesh((1, 2, 2))
    p, b = _place(params, batch, mesh)
    loss, grads = _value_and_grad(wm.make_loss_fn(MODEL, mesh, remat=False))(p, b)
    assert abs(float(loss) - loss0) <= RTOL * abs(loss0)
    _assert_tree_close(grads, grads0, RTOL)


def test_exchange_again_keeps_activation_memory_split():
    """The backward's temporaries per device on (1, 2, 2) stay near a quarter of one device's.

    Keeping the gathered blocks (``remat=False``) needs about half of one device's temporaries
    there (the gathered activations and kernel chunks of every layer, and on XLA:CPU zero-filled
    buffers of the gathered size); exchanging again needs about a fifth.

    Only compiled, never run: the programs are lowered for shapes with shardings (no initialisation, nothing
    placed), and the quick compile options give the same temporaries here as level 0 alone (0.21 with
    ``remat=True``, 0.41 with ``remat=False``).
    """
    model = wm.WeatherMixer(grid=(24, 48), channels=8, patch=6, hidden=64, token_hidden=96,
                            channel_hidden=64, num_blocks=1)
    shapes = jax.eval_shape(lambda: wm.init_params(model, key=jax.random.key(0)))
    temp = {}
    for sizes in [(1, 1, 1), (1, 2, 2)]:
        mesh = _mesh(sizes)
        p = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes,
                         param_shardings(shapes, mesh))
        state = jax.ShapeDtypeStruct((1, 24, 48, 8), jnp.float32, sharding=wm.state_sharding(mesh))
        b = {"state": state, "target": state,
             "lat_weights": jax.ShapeDtypeStruct((24,), jnp.float32, sharding=wm.lat_sharding(mesh))}
        loss_fn = wm.make_loss_fn(model, mesh)
        grad = quick_jit(jax.grad(lambda p, b, f=loss_fn: f(p, None, b, None)[0]))
        temp[sizes] = grad.lower(p, b).compile().memory_analysis().temp_size_in_bytes
    assert temp[(1, 2, 2)] <= 0.3 * temp[(1, 1, 1)]


@pytest.mark.parametrize("sizes", [(1, 2, 2), (2, 2, 2)], ids=lambda s: "x".join(map(str, s)))
def test_param_and_optimizer_bytes_are_split(problem, sizes):
    mesh = _mesh(sizes)
    _, s, t = sizes
    if sizes == (2, 2, 2):  # sharded initialisation: each device creates its shards, same values
        params = wm.init_params(MODEL, key=jax.random.key(0), mesh=mesh)
        _assert_tree_close(params, problem[0], 0.0)
    else:
        params = wm.shard_params(problem[0], mesh)
    tx = wm.make_optimizer(1e-3)
    opt = wm.init_opt_state(tx, params, mesh)
    total_p = sum(x.nbytes for x in jax.tree.leaves(params))
    total_o = sum(x.nbytes for x in jax.tree.leaves(opt) if x.ndim > 0)
    for dev in mesh.devices.flat:
        assert wm.opt_state_bytes_per_device(params, dev) * s * t == total_p
        assert wm.opt_state_bytes_per_device(opt, dev) * s * t == total_o


def test_train_step_on_2x2_matches_one_device(problem):
    params, batch, _, _ = problem
    tx = wm.make_optimizer(1e-2)

    def step_fn(loss_fn):
        def step(p, o, b):
            grads = jax.grad(lambda q: loss_fn(q, None, b, None)[0])(p)
            upd, o = tx.update(grads, o, p)
            return optax.apply_updates(p, upd), o

        return quick_jit(step)

    o0 = wm.init_opt_state(tx, params)
    new0, _ = step_fn(wm.make_loss_fn(MODEL))(params, o0, batch)
    mesh = _mesh((1, 2, 2))
    p, b = _place(params, batch, mesh)
    o = wm.init_opt_state(tx, p, mesh)
    new, _ = step_fn(wm.make_loss_fn(MODEL, mesh))(p, o, b)
    # Adam turns rounding noise in an analytically zero gradient (the last token-mixing bias feeds
    # only LayerNorms, which remove per-token constants) into steps of up to the learning rate, so
    # those leaves are only checked to move by at most that much.
    grads0 = problem[3]
    new, new0 = jax.device_get((new, new0))
    gscale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(grads0))
    live = jax.tree.map(lambda g: bool(np.max(np.abs(g)) > 1e-6 * gscale), grads0)
    for got, want, keep, old in zip(*(jax.tree.leaves(t) for t in (new, new0, live, params))):
        if keep:
            _assert_tree_close(got, want, RTOL)
        else:
            assert float(np.max(np.abs(got - old))) <= 1e-2 * (1 + 1e-5)


@pytest.mark.parametrize(
    "kwargs, sizes, what",
    [
        ({"grid": (6, 12)}, (1, 4, 1), "latitude rows"),
        ({"channels": 6}, (1, 2, 2), "channels"),
        ({"hidden": 12}, (1, 1, 8), "hidden"),
        ({"token_hidden": 20}, (1, 2, 4), "token_hidden"),
    ],
)
def test_shapes_that_do_not_divide_are_refused(kwargs, sizes, what):
    model = MODEL.clone(**kwargs)
    with pytest.raises(ValueError, match=what):
        wm.make_apply(model, _mesh(sizes))
