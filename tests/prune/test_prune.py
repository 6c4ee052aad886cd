"""jaxlab.prune: exact-count magnitude masks, the masked optimiser, schedules, and shrink over declared groups."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import prune
from jaxlab.core import tolerances

from ..timeseries.zoo_helpers import normal_draws
from ..compile_helpers import compiled_programs


def _params(draw):
    return {"a": {"kernel": draw((20, 30), jnp.float64), "bias": draw((30,), jnp.float64)},
            "b": {"kernel": 5.0 * draw((30, 7), jnp.float64)}}


@pytest.mark.parametrize("sparsity", [0.0, 0.33, 0.9, 0.99])
def test_global_masks_keep_the_largest_weights_exactly(sparsity, draw):
    params = _params(draw)
    masks = prune.magnitude_masks(params, sparsity)
    w = np.concatenate([np.abs(np.asarray(params["a"]["kernel"])).ravel(), np.abs(np.asarray(params["b"]["kernel"])).ravel()])
    keep = w.size - round(sparsity * w.size)
    kept = np.concatenate([np.asarray(masks["a"]["kernel"]).ravel(), np.asarray(masks["b"]["kernel"]).ravel()])
    assert kept.sum() == keep
    if keep < w.size:
        assert w[kept].min() >= w[~kept].max()
    assert np.all(masks["a"]["bias"])       # biases are not prunable by default
    assert abs(prune.density(masks, params=params) - (1 - sparsity)) <= 1 / w.size


def test_layer_masks_hold_the_sparsity_in_every_layer(draw):
    params = _params(draw)
    masks = prune.magnitude_masks(params, 0.75, scope="layer")
    for name in ("a", "b"):
        m, w = np.asarray(masks[name]["kernel"]), np.abs(np.asarray(params[name]["kernel"]))
        assert abs(m.mean() - 0.25) <= 1 / m.size
        assert w[m].min() >= w[~m].max()
    # global masks put most of the pruning into "a" (its weights are 5x smaller): the scopes differ
    g = prune.magnitude_masks(params, 0.75)
    assert np.asarray(g["b"]["kernel"]).mean() > 0.6


def test_masked_weights_stay_zero_through_optimisers(draw):
    params = _params(draw)
    masks = prune.magnitude_masks(params, 0.8)
    params = prune.apply_masks(params, masks)
    loss = lambda p: jnp.sum(jnp.tanh(p["a"]["kernel"] @ p["b"]["kernel"])) + jnp.sum(p["a"]["bias"] ** 2)
    for inner in (optax.adam(1e-2), optax.sgd(1e-2, momentum=0.9), optax.adamw(1e-2, weight_decay=0.1)):
        tx = prune.masked(inner, masks)

        @jax.jit                                      # one compilation per optimiser (eagerly: one per op)
        def steps(p, state, ref_p, ref_state):
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            # the reference: the inner optimiser on masked gradients, weights re-masked after each step
            g = jax.tree.map(lambda g, m: jnp.where(m, g, 0.0), jax.grad(loss)(ref_p), masks)
            u, ref_state = inner.update(g, ref_state, ref_p)
            ref_p = prune.apply_masks(optax.apply_updates(ref_p, u), masks)
            return optax.apply_updates(p, updates), state, ref_p, ref_state

        p, state = params, tx.init(params)
        ref_p, ref_state = params, inner.init(params)
        for _ in range(5):
            p, state, ref_p, ref_state = steps(p, state, ref_p, ref_state)
        for leaf, m in zip(jax.tree.leaves(p), jax.tree.leaves(masks)):
            assert np.all(np.asarray(leaf)[~np.asarray(m)] == 0.0)
        atol, rtol = tolerances(jnp.float64)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=atol, rtol=rtol), p, ref_p)
        # and the kept weights did train
        assert not np.allclose(np.asarray(p["b"]["kernel"]), np.asarray(params["b"]["kernel"]))


@pytest.mark.parametrize("name, inner", [("adamw", optax.adamw(1e-2, weight_decay=0.1)),
                                         ("sgd_momentum_wd", optax.chain(optax.add_decayed_weights(0.05),
                                                                         optax.sgd(1e-2, momentum=0.9)))])
def test_masked_pins_unmasked_params_to_zero_from_the_first_step(name, inner, draw):
    """From params that are *not* masked yet (the masks of a first pruning step), with optimisers that move a
    weight whose gradient is zero (weight decay, momentum): the masked weights are exactly zero after each step,
    and the kept ones follow plain optax on the masked problem (params and gradients masked). Without the
    ``-param`` update the weight decay would only shrink the masked weights, never zero them."""
    params = _params(draw)
    masks = prune.magnitude_masks(params, 0.7)
    assert any(np.any(np.asarray(p)[~np.asarray(m)] != 0.0) for p, m in zip(jax.tree.leaves(params),
                                                                           jax.tree.leaves(masks)))
    loss = lambda p: jnp.sum(jnp.tanh(p["a"]["kernel"] @ p["b"]["kernel"])) + jnp.sum(p["a"]["bias"] ** 2)
    tx = prune.masked(inner, masks)

    @jax.jit  # one compilation (eagerly: one per op)
    def steps(p, state, ref_p, ref_state):
        grads = jax.grad(loss)(p)  # both see the same gradients (p == ref_p after the first step)
        updates, state = tx.update(grads, state, p)
        u, ref_state = inner.update(jax.tree.map(lambda g, m: jnp.where(m, g, 0.0), grads, masks), ref_state, ref_p)
        return optax.apply_updates(p, updates), state, optax.apply_updates(ref_p, u), ref_state

    ref_p = prune.apply_masks(params, masks)  # the masked problem: plain optax from the masked params
    p, state, ref_state = params, tx.init(params), inner.init(ref_p)
    for _ in range(3):
        p, state, ref_p, ref_state = steps(p, state, ref_p, ref_state)
        for leaf, ref, m in zip(jax.tree.leaves(p), jax.tree.leaves(ref_p), jax.tree.leaves(masks)):
            leaf, ref, m = np.asarray(leaf), np.asarray(ref), np.asarray(m)
            assert np.all(leaf[~m] == 0.0), name
            np.testing.assert_array_equal(leaf[m], ref[m], err_msg=name)  # elementwise: the same rounding
    kept = np.asarray(masks["b"]["kernel"])
    assert not np.allclose(np.asarray(p["b"]["kernel"])[kept], np.asarray(params["b"]["kernel"])[kept])  # trained


def test_cubic_schedule_matches_zhu_gupta():
    s = prune.cubic_schedule(0.8, 10, 110, initial_sparsity=0.1, frequency=10)
    for t in range(0, 130, 5):
        tq = 10 + ((t - 10) // 10) * 10
        expect = 0.1 if t < 10 else 0.8 if t >= 110 else 0.8 + (0.1 - 0.8) * (1 - (tq - 10) / 100) ** 3
        assert s(t) == pytest.approx(expect)
    assert prune.one_shot_schedule(0.5, 3)(2) == 0.0 and prune.one_shot_schedule(0.5, 3)(3) == 0.5
    with pytest.raises(ValueError, match="final_sparsity"):
        prune.cubic_schedule(1.0, 0, 10)


# --- structured pruning over declared groups ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TinyNet:
    """conv (channels) -> NHWC flatten -> dense (hidden) -> fused two-head projection -> output."""

    channels: int = 4
    hidden: int = 6
    heads: int = 3
    head_dim: int = 2
    hw: int = 3

    def module(self):
        cfg = self

        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                x = nn.relu(nn.Conv(cfg.channels, (3, 3), name="conv")(x))
                x = x.reshape(x.shape[0], -1)
                x = nn.relu(nn.Dense(cfg.hidden, name="hidden")(x))
                q = nn.Dense(cfg.heads * cfg.head_dim, use_bias=False, name="q")(x)
                q = jnp.tanh(q.reshape(x.shape[0], cfg.heads, cfg.head_dim)).reshape(x.shape[0], -1)
                return nn.Dense(5, name="out")(q)

        return Net()

    def dependency_groups(self):
        P = "params"
        return (
            prune.Group("conv", self.channels, (
                prune.Axis((P, "conv", "kernel"), -1), prune.Axis((P, "conv", "bias"), 0, score=False),
                prune.Axis((P, "hidden", "kernel"), 0, tile=self.hw * self.hw)), prune.set_field("channels")),
            prune.Group("hidden", self.hidden, (
                prune.Axis((P, "hidden", "kernel"), 1), prune.Axis((P, "hidden", "bias"), 0, score=False),
                prune.Axis((P, "q", "kernel"), 0)), prune.set_field("hidden")),
            prune.Group("heads", self.heads, (
                prune.Axis((P, "q", "kernel"), 1, block=self.head_dim),
                prune.Axis((P, "out", "kernel"), 0, block=self.head_dim)), prune.set_field("heads")),
        )


@pytest.fixture(scope="module")
def tiny():
    """The net, its variables and a batch, shared by the tests below (none of them changes them)."""
    cfg = TinyNet()
    x = normal_draws(1)((4, cfg.hw, cfg.hw, 2), jnp.float64)
    variables = jax.jit(cfg.module().init)(jax.random.key(1), x)   # one compilation (eagerly: one per op)
    return cfg, variables, x


def test_shrink_keeping_everything_is_the_identity(tiny):
    cfg, variables, _ = tiny
    keep = {g.name: np.arange(g.size) for g in cfg.dependency_groups()}
    new_cfg, new_vars = prune.shrink(cfg, variables, keep)
    assert new_cfg == cfg
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), new_vars, variables)


def test_shrunk_model_equals_the_masked_dense_model(tiny):
    cfg, variables, x = tiny
    keep = {"conv": [0, 3], "hidden": [1, 2, 5], "heads": [2]}
    small_cfg, small_vars = prune.shrink(cfg, variables, keep)
    assert (small_cfg.channels, small_cfg.hidden, small_cfg.heads) == (2, 3, 1)
    assert small_vars["params"]["hidden"]["kernel"].shape == (9 * 2, 3)
    assert small_vars["params"]["out"]["kernel"].shape == (2, 5)
    masks = prune.structured_masks(cfg, variables, keep)
    dense = jax.jit(cfg.module().apply)(jax.tree.map(lambda v, m: np.asarray(v) * np.asarray(m), variables, masks), x)
    small = jax.jit(small_cfg.module().apply)(small_vars, x)
    atol, rtol = tolerances(jnp.float64)
    np.testing.assert_allclose(small, dense, atol=atol, rtol=rtol)
    # the shrunk variables are exactly what a fresh init of the small config expects
    fresh = jax.eval_shape(small_cfg.module().init, jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, fresh) == jax.tree.map(jnp.shape, small_vars)
    # a bare params tree works too
    _, bare = prune.shrink(cfg, variables["params"], keep)
    jax.tree.map(np.testing.assert_array_equal, bare, small_vars["params"])


def test_group_importance_is_the_group_mean_of_sums_of_squares(tiny):
    cfg, variables, _ = tiny
    group = {g.name: g for g in cfg.dependency_groups()}["conv"]
    p = variables["params"]
    conv = (np.asarray(p["conv"]["kernel"]) ** 2).reshape(-1, 4).sum(0)
    dense = (np.asarray(p["hidden"]["kernel"]) ** 2).reshape(9, 4, -1).sum(axis=(0, 2))
    np.testing.assert_allclose(prune.group_importance(variables, group), (conv + dense) / 2, rtol=1e-6)
    heads = {g.name: g for g in cfg.dependency_groups()}["heads"]
    q = (np.asarray(p["q"]["kernel"]) ** 2).reshape(6, 3, 2).sum(axis=(0, 2))
    o = (np.asarray(p["out"]["kernel"]) ** 2).reshape(3, 2, 5).sum(axis=(1, 2))
    np.testing.assert_allclose(prune.group_importance(variables, heads), (q + o) / 2, rtol=1e-6)
    assert prune.top_units([2.0, 5.0, 5.0, 1.0], 3).tolist() == [0, 1, 2]


def test_shrink_errors_name_the_group(tiny):
    cfg, variables, _ = tiny
    with pytest.raises(ValueError, match="unknown dependency groups.*declares"):
        prune.shrink(cfg, variables, {"bogus": [0]})
    with pytest.raises(ValueError, match="distinct indices"):
        prune.shrink(cfg, variables, {"conv": [0, 0]})
    with pytest.raises(ValueError, match="empty"):
        prune.shrink(cfg, variables, {"conv": []})
    with pytest.raises(ValueError, match="do not match"):
        prune.shrink(dataclasses.replace(cfg, hidden=7), variables, {"hidden": [0]})
    with pytest.raises(ValueError, match="sparsity"):
        prune.magnitude_masks(variables["params"], 1.0)


def test_shrink_cuts_concrete_arrays_on_the_host_as_the_jitted_path_does(tiny):
    """Concrete arrays are cut with NumPy (nothing compiles) and come back as ``jax.Array`` where they were, with
    the values of the traced ``jnp`` path (the implementation before the host path, exercised under jit)."""
    cfg, variables, _ = tiny
    keep = {"conv": [0, 3], "hidden": [1, 2, 5], "heads": [2]}
    jitted = jax.jit(lambda v: prune.shrink(cfg, v, keep)[1])(variables)
    devices = jax.devices()
    replicated = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), ("d",)), jax.sharding.PartitionSpec())
    q_split = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices[:2]), ("d",)),
                                         jax.sharding.PartitionSpec("d", None))
    placed = {"uncommitted": variables,
              "device 1": jax.device_put(variables, devices[1]),
              "replicated": jax.device_put(variables, replicated)}
    # a sharded leaf (rows split over 2 devices) takes the jnp path; the rest of the tree the host path
    placed["sharded q"] = {**variables, "params": {**variables["params"], "q": {
        "kernel": jax.device_put(variables["params"]["q"]["kernel"], q_split)}}}
    for name, tree in placed.items():
        with compiled_programs() as compiled:
            _, small = prune.shrink(cfg, tree, keep)
        if name != "sharded q":
            assert compiled == [], (name, compiled)
        for (path, got), want, before in zip(jax.tree_util.tree_leaves_with_path(small), jax.tree.leaves(jitted),
                                             jax.tree.leaves(tree)):
            assert isinstance(got, jax.Array), (name, path)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {path}")
            if name != "sharded q" or "q" not in jax.tree_util.keystr(path):
                assert got.committed == before.committed and got.sharding == before.sharding, (name, path)


def test_readme_informer_pruning_compiles_the_init_alone():
    """The README's Informer example (sizes as there): making the forecaster compiles its jitted init and
    nothing else, importance, kept units and shrink compile nothing (they compiled 2 + 24 small programs), and
    the shrunk variables are those of the traced path."""
    from jaxlab import timeseries as ts

    cfg = ts.InformerConfig(input_len=96, horizon=96, channels=21, d_model=64, n_heads=8, d_ff=256)
    key = jax.random.key(0)
    with compiled_programs() as init:
        _, variables = ts.make_forecaster(cfg, key=key)
    with compiled_programs() as pruning:
        keep = {g.name: prune.top_units(prune.group_importance(variables, g), g.size // 2)
                for g in cfg.dependency_groups()}
        small_cfg, small = prune.shrink(cfg, variables, keep)
    # (the jitted init is not compiled again where an earlier test of this process initialised the same model)
    assert init in (["jit(init)"], []) and pruning == [], (init, pruning)
    assert small_cfg.d_model == cfg.d_model and small_cfg.d_ff == (cfg.d_ff // 2,) * 3  # half of every FFN
    jitted = jax.jit(lambda v: prune.shrink(cfg, v, keep)[1])(variables)
    assert jax.tree.structure(small) == jax.tree.structure(jitted)
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(small), jax.tree.leaves(jitted)):
        assert isinstance(got, jax.Array) and not got.committed, path
        np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))


def test_the_readme_informer_example_compiles_a_few_programs():
    """The README's Informer example, run as written there, compiles at most its key, init, shrink's staging and
    one forecast: 4 programs (with the eager ``apply`` it showed before, about 270)."""
    from tests.cli.test_readme import readme_python_examples  # the README's own parser

    examples = [b for b in readme_python_examples() if "InformerConfig" in b]
    assert len(examples) == 1, f"expected one README example with InformerConfig, found {len(examples)}"
    namespace = {"__name__": "__main__"}
    with compiled_programs() as compiled:
        exec(compile(examples[0], "README's Informer example", "exec"), namespace)
    assert len(compiled) <= 4, (len(compiled), compiled[:12])
    y = np.asarray(namespace["y"])
    assert y.shape == (1, 96, 21) and np.all(np.isfinite(y))
