"""Ordering work in XLA's schedule with data dependencies that are always zero.

It lives in ``core`` because any layer or method may need it (the forward gradients' streaming path, the
fwdgrad method's sample loops, which keep batched LAPACK calls from running side by side); the old path
``jaxlab.fwdgrad._schedule`` re-exports it for the library's own modules.

The streaming forward gradient needs some work to run *late*: a layer's tangent only once that layer's
input exists, a regenerated tangent only once the coefficients are known. XLA on CPU schedules breadth
first and expands ``optimization_barrier`` before it schedules, so neither the program order nor a
barrier keeps independent work (drawing a tangent from its seeds) from being hoisted to the start,
where all of it is alive at once. A true data dependency does: :func:`after` returns its first argument
bit for bit, but computed from one element of each later value, through ``u & ~u``, which is 0 for
every bit pattern (NaN and infinities included). It also keeps XLA's CSE from merging a regenerated
tangent with an earlier, identical one (which would keep that one alive in between).

Under a mesh with explicit axes (``jax.sharding.AxisType.Explicit``), one element of an array sharded
along some dimension cannot be sliced out (``ShardingTypeError``): there the element is taken at index
0 of the unsharded dimensions only, and the zeros along the sharded ones are reduced (one small
all-reduce). Under automatic sharding the partitioner moves the one element itself.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._types import Array


def _sharded_dims(value: Array) -> set[int]:
    """Dimensions of ``value`` sharded over explicit mesh axes (empty outside such a mesh)."""
    spec = getattr(getattr(jax.typeof(value), "sharding", None), "spec", None)
    if spec is None:
        return set()
    return {d for d, s in enumerate(spec) if s is not None and d < jnp.ndim(value)}


def _bits(value: Array) -> Array | None:
    """``value`` reinterpreted as unsigned integers of its width (None for non-numeric values)."""
    dtype = jnp.result_type(value)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        value, dtype = jnp.real(value), jnp.finfo(dtype).dtype
    if dtype == jnp.bool_:
        return value.astype(jnp.uint8)
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        return None
    bits = jnp.dtype(f"uint{8 * jnp.dtype(dtype).itemsize}")
    return value if dtype == bits else jax.lax.bitcast_convert_type(value, bits)


def zero_from(value: Any) -> Array | None:
    """A uint32 0 that XLA must compute from ``value`` (one element of it); None if it has no numbers.

    Examples:
      >>> import jax.numpy as jnp
      >>> int(zero_from(jnp.array([jnp.nan, 2.0])))
      0
    """
    if jnp.size(value) == 0:
        return None
    sharded = _sharded_dims(value)
    shape = jnp.shape(value)
    # One element, except along explicitly sharded dimensions, which cannot be sliced to size 1.
    x = jax.lax.slice(value, (0,) * len(shape), tuple(n if d in sharded else 1 for d, n in enumerate(shape)))
    u = _bits(x)
    if u is None:
        return None
    z = u & ~u
    z = jnp.max(z) if sharded else z.reshape(())
    return z.astype(jnp.uint32)


def orderable(x: Any) -> bool:
    """Whether :func:`after` accepts ``x`` (a non-empty integer or floating point array)."""
    dtype = jnp.result_type(x)
    return jnp.size(x) > 0 and (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating))


def after(x: Array, *values: Any) -> Array:
    """``x`` bit for bit, but computed after (from one element of) each of ``values``.

    Args:
      x: an integer or floating point array (seeds, data).
      *values: arrays (or pytrees of arrays) that must exist before ``x`` is used; values without
        numbers are skipped.

    Returns:
      An array equal to ``x`` in every bit that XLA cannot compute before ``values``.

    Raises:
      ValueError: if ``x`` is neither integer nor floating point.

    Examples:
      >>> import jax.numpy as jnp
      >>> seeds = jnp.array([3, 4], jnp.uint32)
      >>> after(seeds, jnp.ones(5)).tolist()
      [3, 4]
    """
    if jnp.size(x) == 0:
        return x
    zeros = [z for v in values for leaf in jax.tree_util.tree_leaves(v) if (z := zero_from(leaf)) is not None]
    if not zeros:
        return x
    zero = zeros[0]
    for z in zeros[1:]:
        zero = zero | z
    if not orderable(x):
        raise ValueError(f"after() orders integer or floating point arrays, got dtype {jnp.result_type(x)}; "
                         "pass seeds or data")
    dtype = jnp.result_type(x)
    u = _bits(x) ^ zero.astype(jnp.dtype(f"uint{8 * jnp.dtype(dtype).itemsize}"))
    return u if u.dtype == dtype else jax.lax.bitcast_convert_type(u, dtype)
