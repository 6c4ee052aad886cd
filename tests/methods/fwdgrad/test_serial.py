"""Sample loops without side-by-side batched LAPACK calls (_serial.py); the approximation experiment's hang itself is
checked on two CPUs in tests/fwdgrad/test_no_deadlock.py (one process for all the forward-gradient deadlock checks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.methods.fwdgrad._serial import batch_plan, key_after, map_in_batches

from ...compile_helpers import quick_jit


@pytest.mark.parametrize("num, size, want", [(1000, 512, (500, 1000)), (1000, 4, (4, 1000)), (10, 3, (3, 12)),
                                             (5, 100, (5, 5)), (7, 7, (7, 7)), (1, 1, (1, 1))])
def test_batch_plan(num, size, want):
    batch, padded = batch_plan(num, size)
    assert (batch, padded) == want
    assert batch <= size and padded >= num and padded % batch == 0 and padded - num < padded // batch


def test_batch_plan_rejects_empty():
    with pytest.raises(ValueError, match="num >= 1"):
        batch_plan(0, 4)


@pytest.mark.parametrize("num, size", [(10, 3), (12, 4), (5, 100)])
def test_map_in_batches_matches_lax_map_and_has_no_remainder_branch(num, size):
    keys = jax.random.split(jax.random.key(3), num)
    f = lambda k: {"a": jax.random.normal(k, (4,)), "b": jax.random.uniform(k)}  # noqa: E731
    # Each as one program (as the experiments call it, under jit): run eagerly, every pad, slice and loop is a
    # compilation of its own.
    got = quick_jit(lambda k: map_in_batches(f, k, size))(keys)
    want = quick_jit(lambda k: jax.lax.map(f, k, batch_size=size))(keys)
    for name in ("a", "b"):
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]))
    # f is traced once (the scan's batch); jax.lax.map traces it a second time for a remainder's vmap,
    # which runs beside the scan.
    once = str(jax.make_jaxpr(f)(keys[0])).count("random_bits")
    assert str(jax.make_jaxpr(lambda k: map_in_batches(f, k, size))(keys)).count("random_bits") == once
    if num % size and num > size:
        assert str(jax.make_jaxpr(lambda k: jax.lax.map(f, k, batch_size=size))(keys)).count("random_bits") == 2 * once


def test_key_after_is_the_same_key_and_depends_on_the_values():
    key = jax.random.key(11)
    v = jnp.arange(3.0)
    k2 = key_after(key, v)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(k2)), np.asarray(jax.random.key_data(key)))
    np.testing.assert_array_equal(np.asarray(jax.random.normal(k2, (5,))), np.asarray(jax.random.normal(key, (5,))))
    jaxpr = jax.make_jaxpr(lambda x: jax.random.key_data(key_after(key, x)))(v)
    assert jaxpr.jaxpr.outvars[0] not in jaxpr.jaxpr.invars and "xor" in str(jaxpr)  # computed from x
