"""The lean streaming path: tangents drawn where each layer uses them, combined into the update in place."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import fwdgrad
from jaxlab.fwdgrad._lazy_jvp import jvp_along_generated_tangent
from jaxlab.fwdgrad._samplers import leaf_tangent_from_seeds, tangent_seeds
from jaxlab.train import TrainState, make_train_step

from ..compile_helpers import quick_jit


def _mlp_params(seed, depth, width, dtype=np.float32):
    # NumPy draws: a jax.random sampler would be compiled once per shape (at the default level in the memory test).
    rng = np.random.default_rng(seed)
    return [{"w": (rng.standard_normal((width, width)) / np.sqrt(width)).astype(dtype),
             "b": np.full((width,), 0.01, dtype)} for _ in range(depth)]


def _mlp_loss(params, model_state, batch, key):
    del key
    x, y = batch
    h = x
    for i, p in enumerate(params):
        h = h @ p["w"].T + p["b"]  # .T: a parameter-only operation before the first use with data
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    loss = jnp.mean((h - y) ** 2) + 1e-3 * sum(jnp.sum(p["w"] ** 2) for p in params)
    return loss, ({"out": jnp.mean(h)}, model_state)


def _mixed_loss(p, x):
    # Mixed shapes and dtypes, a scalar leaf, a leaf that never meets the data, and an integer aux.
    h = jnp.tanh(x @ p["w"] + p["b"].astype(x.dtype))
    return jnp.sum(h ** 2) * p["scale"] + jnp.sum(p["only_params"] ** 2), {"n": jnp.int32(3)}


def _mixed_params():
    # NumPy leaves: built eagerly with jnp, each would be one more compilation.
    return {"w": np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3),
            "b": np.array([0.1, -0.2, 0.3], np.float64),
            "scale": np.asarray(1.5, np.float32),
            "only_params": np.arange(5.0, dtype=np.float32)}


@pytest.mark.usefixtures("quick_compiles")  # numerical checks: backend level 0 (see conftest.py)
@pytest.mark.parametrize("sampler", ["normal", "rademacher"])
def test_generated_tangent_jvp_equals_jax_jvp_bit_for_bit(getkey, sampler):
    p = _mixed_params()
    x = np.arange(8.0, dtype=np.float32).reshape(2, 4) / 8
    leaves, treedef = jax.tree_util.tree_flatten(p)
    f = lambda xs: _mixed_loss(jax.tree_util.tree_unflatten(treedef, xs), x)  # noqa: E731

    @quick_jit
    def both(leaves, key):
        seeds = tangent_seeds(key, jnp.arange(2, dtype=jnp.uint32), len(leaves))
        out = []
        for s in seeds:
            tangent = [leaf_tangent_from_seeds(s[l], v.shape, v.dtype, sampler) for l, v in enumerate(leaves)]
            (l_ref, aux_ref), (t_ref, _) = jax.jvp(f, (leaves,), (tangent,))
            (l_gen, aux_gen), (t_gen, _) = jvp_along_generated_tangent(f, leaves, list(s), sampler,
                                                                        gate=s[0, 0] & ~s[0, 0])
            out.append((l_ref, t_ref, aux_ref["n"], l_gen, t_gen, aux_gen["n"]))
        return out

    for l_ref, t_ref, n_ref, l_gen, t_gen, n_gen in both(leaves, getkey()):
        np.testing.assert_array_equal(l_gen, l_ref)
        np.testing.assert_array_equal(t_gen, t_ref)
        assert int(n_gen) == int(n_ref) == 3


@pytest.mark.usefixtures("quick_compiles")
def test_streaming_estimate_of_mixed_pytree_matches_the_held_one(getkey):
    p = _mixed_params()
    x = np.arange(8.0, dtype=np.float32).reshape(2, 4) / 8

    @quick_jit
    def estimates(p, key):
        kw = dict(num_tangents=4, has_aux=True, key=key)
        # Both combinations (unfused, fused) for projection; mean (no Gram) with the fused one.
        return {a: [fwdgrad.forward_gradient(_mixed_loss, p, x, aggregation=a, tangent_batch_size=tb,
                                             fuse_combination=fuse, **kw)[0] for tb, fuse in variants]
                for a, variants in (("mean", ((None, False), (2, True))),
                                    ("projection", ((None, False), (1, False), (2, True))))}

    for held, *streamed_ones in estimates(p, getkey()).values():
        for streamed in streamed_ones:
            for u, v in zip(jax.tree_util.tree_leaves(held), jax.tree_util.tree_leaves(streamed)):
                assert u.dtype == v.dtype
                np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("quick_compiles")
# The unfused streamed gradient reaches the optimiser as any gradient does, so it is checked with SGD only; the
# fused combination is formed inside the update, so with both.
@pytest.mark.parametrize("tx, streamed", [(optax.sgd(0.1), ((1, False), (1, True))), (optax.adam(1e-2), ((1, True),))],
                         ids=["sgd", "adam"])
def test_streaming_train_step_gives_the_same_parameters_as_the_held_one(getkey, tx, streamed):
    params = _mlp_params(1, depth=3, width=8)
    batch = (np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32), np.zeros((4, 8), np.float32))
    key = getkey()
    new = {}
    for tb, fuse in ((None, False), *streamed):
        gf = fwdgrad.make_grad_fn(num_tangents=4, aggregation="projection", tangent_batch_size=tb,
                                  fuse_combination=fuse)
        step = quick_jit(make_train_step(_mlp_loss, tx, grad_fn=gf, jit=False), donate_argnums=(0,))  # as jit=True
        state = TrainState.create(params=jax.tree_util.tree_map(jnp.copy, params), tx=tx)  # the step donates it
        for i in range(2):
            state, metrics = step(state, batch, jax.random.fold_in(key, i))
        new[tb, fuse] = state.params
        assert step._cache_size() == 1
    for other in streamed:
        for u, v in zip(jax.tree_util.tree_leaves(new[None, False]), jax.tree_util.tree_leaves(new[other])):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def _plain_mlp_loss(params, model_state, batch, key):
    del key
    x, y = batch
    h = x
    for i, p in enumerate(params):
        h = h @ p["w"] + p["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return jnp.mean((h - y) ** 2), ({}, model_state)


def _step_temp_bytes(depth, grad_fn, width=128, batch=32):
    """Compiled working memory of a donated SGD step on a ``depth``-layer MLP (the default compile level, as users
    compile). Backprop keeps every layer's activations for the backward pass, so its working memory grows with
    depth; the streaming forward gradient keeps about one layer's tangent and activations, and (fuse_combination,
    SGD) the estimate is formed inside the in-place update."""
    tx = optax.sgd(1e-3)
    data = (np.ones((batch, width), np.float32), np.zeros((batch, width), np.float32))
    state = TrainState.create(params=_mlp_params(0, depth, width), tx=tx)
    step = jax.jit(make_train_step(_plain_mlp_loss, tx, grad_fn=grad_fn, jit=False), donate_argnums=(0,))
    return step.lower(state, data, jax.random.key(1)).compile().memory_analysis().temp_size_in_bytes


_STREAMING_GRAD_FN = fwdgrad.make_grad_fn(num_tangents=4, aggregation="projection", tangent_batch_size=1,
                                          fuse_combination=True)


def test_streaming_step_working_memory_does_not_grow_with_depth():
    shallow, deep = _step_temp_bytes(2, _STREAMING_GRAD_FN), _step_temp_bytes(8, _STREAMING_GRAD_FN)
    assert deep <= 1.25 * shallow
    assert deep < _step_temp_bytes(8, None)  # backprop keeps all 8 layers' activations


@pytest.mark.slow  # 6-14 s: compiling the 16-layer streaming step at the default level
def test_streaming_step_working_memory_is_under_half_of_backprops_and_of_the_parameters_at_depth_16():
    width, depth = 128, 16
    deep = _step_temp_bytes(depth, _STREAMING_GRAD_FN, width)
    assert deep <= 1.25 * _step_temp_bytes(2, _STREAMING_GRAD_FN, width)
    assert deep <= 0.5 * _step_temp_bytes(depth, None, width)
    assert deep <= 0.5 * depth * (width * width + width) * 4
