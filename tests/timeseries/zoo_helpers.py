"""Shared test helpers of the time-series layer (also used by tests/prune and tests/methods/tsprune): cheap
compiles, random inputs and variables without compiling a sampler, and the checks of structured shrinking.

Compiling is the slow part of these tests (a few hundred XLA programs, run once or twice each), so:

- :func:`quick_jit`, :func:`fewer_optimizations` and the ``_quick_compiles`` fixture come from
  ``tests/compile_helpers.py`` (re-exported here for this layer's tests and those that import them from here);
- :func:`normal_draws` and :func:`random_variables` draw with NumPy: ``jax.random.normal`` compiles a sampler
  for every shape (about 3 CPU-s each at the default level, 0.6 s at level 0).

None of these changes the function computed, only how much work XLA spends on optimising it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import prune
from jaxlab.core import tolerances

from ..compile_helpers import QUICK_COMPILE, _quick_compiles, fewer_optimizations, quick_jit  # noqa: F401  (re-exported)


def normal_draws(seed=0):
    """Returns ``draw(shape, dtype=float32)``: standard normal arrays from a fixed-seed NumPy generator.

    A stand-in for ``jax.random.normal(getkey(), shape, dtype)`` in tests that only need some random input:
    it compiles nothing.
    """
    rng = np.random.default_rng(seed)

    def draw(shape, dtype=jnp.float32):
        return jnp.asarray(rng.normal(size=shape).astype(dtype))

    return draw


def random_variables(model, *args, seed=0, scale=0.4, **kwargs):
    """Variables of ``model`` with the shapes ``init`` would give, drawn from N(0, scale^2) (variances > 0).

    ``jax.eval_shape`` traces ``init`` (on ``args`` and keyword ``kwargs``) without compiling it (compiling
    flax inits on CPU is the slow part).
    """
    shapes = jax.eval_shape(lambda k, *a: model.init(k, *a, **kwargs), jax.random.key(0), *args)
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "var":
            return (0.5 + np.abs(rng.normal(size=s.shape))).astype(s.dtype)
        return (scale * rng.normal(size=s.shape)).astype(s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def half_keep(config, *, kinds=None, seed=0):
    """About half of the units of every group (at least one), chosen at random, optionally by name filter."""
    rng = np.random.default_rng(seed)
    keep = {}
    for g in config.dependency_groups():
        if kinds is not None and not any(k in g.name for k in kinds):
            continue
        keep[g.name] = np.sort(rng.permutation(g.size)[: max(1, g.size // 2)])
    return keep


def assert_shrunk_equals_masked(config, variables, args, keep, apply_dense=None):
    """Shrinking ``keep`` gives an ordinary config whose model equals the masked dense model on ``args``.

    Returns ``(small_config, small_variables, dense_apply)`` (``dense_apply`` is the jitted dense forward,
    reusable for more variables of the same shapes).
    """
    model = config.module()
    dense_apply = apply_dense or quick_jit(model.apply)
    small_cfg, small_vars = prune.shrink(config, variables, keep)
    masks = prune.structured_masks(config, variables, keep)
    masked = jax.tree.map(lambda v, m: v * m, variables, masks)
    args = args if isinstance(args, tuple) else (args,)
    want = dense_apply(masked, *args)
    small_model = small_cfg.module()
    got = quick_jit(small_model.apply)(small_vars, *args)
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(got, want, atol=10 * atol, rtol=10 * rtol)
    # the shrunk arrays are exactly what the smaller config builds (residual widths included)
    fresh = jax.eval_shape(small_model.init, jax.random.key(0), args[0])
    assert jax.tree.map(jnp.shape, fresh) == jax.tree.map(jnp.shape, small_vars)
    # and the removal was real: every named group got smaller
    sizes = {g.name: g.size for g in small_cfg.dependency_groups()}
    for name, kept in keep.items():
        assert sizes[name] == len(kept), name
    return small_cfg, small_vars, dense_apply


def assert_identity_shrink(config, variables):
    keep = {g.name: np.arange(g.size) for g in config.dependency_groups()}
    new_cfg, new_vars = prune.shrink(config, variables, keep)
    jax.tree.map(np.testing.assert_array_equal, new_vars, variables)
    # the config may spell sizes per block, but it builds the same model
    assert jax.tree.map(jnp.shape, new_vars) == jax.tree.map(jnp.shape, variables)
    assert [(g.name, g.size) for g in new_cfg.dependency_groups()] == [
        (g.name, g.size) for g in config.dependency_groups()]


def assert_residual_widths(variables, d_model):
    """Every array that reads or writes the residual stream keeps ``d_model`` entries on that axis."""
    flat, _ = jax.tree_util.tree_flatten_with_path(variables["params"])
    for path, leaf in flat:
        keys = [str(getattr(k, "key", k)) for k in path]
        if keys[-1] == "scale" and any(k.startswith("norm") for k in keys):
            if "merge" not in "/".join(keys) and "distil" not in "/".join(keys):
                assert leaf.shape == (d_model,), keys
        if keys[-2:] in (["out", "kernel"], ["conv2", "kernel"]):
            assert leaf.shape[-1] == d_model, keys
        if keys[-2:] in (["query", "kernel"], ["key", "kernel"], ["value", "kernel"], ["conv1", "kernel"]):
            assert leaf.shape[0] == d_model, keys


@pytest.fixture
def draw():
    """``draw(shape, dtype=float32)``: fresh standard normal arrays from a fixed seed (compiles nothing)."""
    return normal_draws(0)
