"""Tangent samplers for forward gradients.

Every tangent is a pytree shaped like the parameters. Tangent ``i`` is a deterministic function of
``(key, i)`` alone, so it can be drawn all at once (``sample_tangents``), one at a time
(``sample_tangent``), or regenerated later instead of being kept in memory (the streaming path of
:func:`jaxlab.fwdgrad.forward_gradient`). Inside a leaf with two or more dimensions, each row along
the leading axis has its own key: the Gram matrix of the tangents can then be accumulated over
blocks of rows without holding all ``k`` tangents of a large weight matrix at once.

Differences from the reference code (Helmholtz-AI-Energy/frog, ``tangent_sampling.py``): no
stateful generator; one global tangent is sampled by drawing each leaf (and row) from its own key,
which for the i.i.d. samplers has the same distribution as slicing one long vector.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array, PRNGKey, PyTree

#: Samplers drawn element by element (they can be regenerated block by block).
ELEMENTWISE_SAMPLERS: tuple[str, ...] = ("normal", "rademacher")
#: All samplers.
SAMPLERS: tuple[str, ...] = ("normal", "rademacher", "orthonormal")


def check_sampler(sampler: str) -> None:
    """Raises a ValueError naming the choices when ``sampler`` is unknown."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown tangent sampler {sampler!r}; choose one of {SAMPLERS}")


def _check_params(params: PyTree) -> list[Array]:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("params has no array leaves; pass the pytree of parameters to differentiate")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(
                f"forward gradients need floating point parameters, got a leaf of dtype "
                f"{jnp.result_type(leaf)} and shape {jnp.shape(leaf)}; cast it or move it out of params"
            )
    return leaves


def num_parameters(params: PyTree) -> int:
    """Total number of scalar parameters ``n`` (the dimension of the gradient)."""
    return int(sum(math.prod(jnp.shape(leaf)) for leaf in _check_params(params)))


def _draw(key: PRNGKey, shape: Sequence[int], dtype, sampler: str) -> Array:
    if sampler == "normal":
        return jax.random.normal(key, shape, dtype)
    if sampler == "rademacher":
        return jax.random.rademacher(key, shape, dtype=dtype)
    raise ValueError(f"sampler {sampler!r} is not elementwise; use one of {ELEMENTWISE_SAMPLERS}")


def leaf_rows(shape: Sequence[int]) -> int:
    """Number of independently keyed row blocks of a leaf (leading axis for ndim >= 2, else 1)."""
    return int(shape[0]) if len(shape) >= 2 else 1


def draw_leaf_rows(key: PRNGKey, index, leaf_index: int, shape: Sequence[int], dtype, sampler: str,
                   rows: Array | None = None) -> Array:
    """Rows ``rows`` of leaf ``leaf_index`` of tangent ``index`` (all rows when ``rows`` is None).

    For a leaf with fewer than two dimensions the whole leaf is one block and ``rows`` is ignored.
    """
    base = jax.random.fold_in(jax.random.fold_in(key, index), leaf_index)
    if len(shape) < 2:
        return _draw(base, tuple(shape), dtype, sampler)
    if rows is None:
        rows = jnp.arange(shape[0])
    return jax.vmap(lambda r: _draw(jax.random.fold_in(base, r), tuple(shape[1:]), dtype, sampler))(rows)


def sample_tangent(key: PRNGKey, params: PyTree, index, *, sampler: str = "normal") -> PyTree:
    """Tangent number ``index`` (an int or traced int) for an elementwise sampler.

    Args:
      key: PRNG key shared by all tangents of one estimate.
      params: pytree of floating point arrays; the tangent has its structure, shapes and dtypes.
      index: which tangent, 0 <= index < k.
      sampler: "normal" (N(0, I)) or "rademacher" (+-1 with equal probability).

    Returns:
      A pytree like ``params``. ``sample_tangents(key, params, k)`` stacks tangents 0..k-1.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    _check_params(params)
    out = [draw_leaf_rows(key, index, l, jnp.shape(x), jnp.result_type(x), sampler)
           for l, x in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)


def _orthonormal(key: PRNGKey, params: PyTree, num_tangents: int) -> PyTree:
    """Normal tangents orthonormalised (QR) over all parameters at once, in groups of at most n."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    n = num_parameters(params)
    dtype = jnp.result_type(*leaves)
    groups = []
    for g, start in enumerate(range(0, num_tangents, n)):
        size = min(n, num_tangents - start)
        raw = jax.random.normal(jax.random.fold_in(key, g), (n, size), dtype)
        q, r = jnp.linalg.qr(raw)
        # Fix the signs so the result is a deterministic function of `raw` (Haar distributed).
        q = q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(dtype)
        groups.append(q.T)
    flat = jnp.concatenate(groups, axis=0)  # (k, n)
    out, offset = [], 0
    for x in leaves:
        size = math.prod(jnp.shape(x))
        out.append(flat[:, offset:offset + size].reshape((num_tangents, *jnp.shape(x))).astype(jnp.result_type(x)))
        offset += size
    return jax.tree_util.tree_unflatten(treedef, out)


def tangent_sq_norms(tangents: PyTree) -> Array:
    """Squared global norms ``||v_i||^2`` of stacked tangents (leading axis k), shape (k,)."""
    leaves = jax.tree_util.tree_leaves(tangents)
    return sum(jnp.sum(jnp.square(v).reshape(v.shape[0], -1), axis=1) for v in leaves)


def sample_tangents(key: PRNGKey, params: PyTree, num_tangents: int, *, sampler: str = "normal",
                    normalize: bool = False) -> PyTree:
    """Draws ``num_tangents`` tangents, stacked along a new leading axis of every leaf.

    Args:
      key: PRNG key.
      params: pytree of floating point arrays.
      num_tangents: k >= 1.
      sampler: "normal" (default, N(0, I)), "rademacher" (+-1) or "orthonormal" (normal tangents
        orthonormalised by a QR over all parameters at once; for k > n, in independent groups of n).
      normalize: divide each tangent by its global norm (unit tangents).

    Returns:
      A pytree like ``params`` whose leaves have shape ``(k, *leaf.shape)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> v = sample_tangents(jax.random.key(0), {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}, 4)
      >>> v["w"].shape, v["b"].shape
      ((4, 3, 2), (4, 2))
    """
    check_sampler(sampler)
    if int(num_tangents) != num_tangents or num_tangents < 1:
        raise ValueError(f"num_tangents must be a positive integer, got {num_tangents!r}")
    _check_params(params)
    if sampler == "orthonormal":
        return _orthonormal(key, params, int(num_tangents))
    tangents = jax.vmap(lambda i: sample_tangent(key, params, i, sampler=sampler))(jnp.arange(num_tangents))
    if normalize:
        inv = jax.lax.rsqrt(tangent_sq_norms(tangents))
        tangents = jax.tree_util.tree_map(
            lambda v: v * inv.reshape((-1,) + (1,) * (v.ndim - 1)).astype(v.dtype), tangents)
    return tangents


def sample_tangents_reference(key: PRNGKey, params: PyTree, num_tangents: int, *,
                              sampler: str = "normal") -> np.ndarray:
    """The same tangents as :func:`sample_tangents` as a NumPy (k, n) matrix, drawn one at a time.

    Rows are the tangents, flattened leaf by leaf in ``tree_leaves`` order (as ``ravel_pytree``).
    """
    rows = []
    for i in range(num_tangents):
        t = sample_tangent(key, params, i, sampler=sampler)
        rows.append(np.concatenate([np.asarray(x).ravel() for x in jax.tree_util.tree_leaves(t)]))
    return np.stack(rows)
