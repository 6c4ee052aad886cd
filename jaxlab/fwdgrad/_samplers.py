"""Tangent samplers for forward gradients.

Every tangent is a pytree shaped like the parameters. Tangent ``i`` is a deterministic function of
``(key, i)`` alone, so it can be drawn all at once (``sample_tangents``), one at a time
(``sample_tangent``), or regenerated later instead of being kept in memory (the streaming path of
:func:`jaxlab.fwdgrad.forward_gradient`). The elementwise samplers hash each element's position
with a per-(tangent, leaf) seed drawn from the key: any block of a leaf can be regenerated on its
own (the Gram matrix is accumulated over blocks) and XLA fuses the generation into its consumer.

Differences from the reference code (Helmholtz-AI-Energy/frog, ``tangent_sampling.py``): no
stateful generator; one global tangent is sampled by drawing each leaf from its own seed,
which for the i.i.d. samplers has the same distribution as slicing one long vector.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array, PRNGKey, PyTree

from ._schedule import after

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


def _mix32(x: Array) -> Array:
    """``lowbias32`` integer hash (C. Wellons): a bijection of uint32 with strong avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _seeds(key: PRNGKey, index, leaf_index: int) -> Array:
    return jax.random.bits(jax.random.fold_in(jax.random.fold_in(key, index), leaf_index), (2,), jnp.uint32)


def tangent_seeds(key: PRNGKey, indices: Array, num_leaves: int) -> Array:
    """Seeds of every leaf of tangents ``indices``, shape ``(len(indices), num_leaves, 2)``.

    Drawing them all at once, ahead of the tangents, keeps the (sequential) key derivation off the
    path from one layer's tangent to the next: each tangent then waits only for its layer's data.
    """
    leaf = jnp.arange(num_leaves, dtype=jnp.uint32)
    return jax.vmap(lambda i: jax.vmap(lambda l: _seeds(key, i, l))(leaf))(indices)


def _hash(seeds: Array, counter: Array) -> Array:
    h = _mix32(counter ^ seeds[0])
    h = _mix32(h + seeds[1])
    return _mix32(h ^ jnp.uint32(0x5BD1E995))


def _bits_to_tangent(h: Array, dtype, sampler: str) -> Array:
    if sampler == "rademacher":
        return jnp.where((h >> 31) == 1, 1.0, -1.0).astype(dtype)
    if sampler == "normal":
        work = jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32
        # z = 2u - 1 for u uniform on (0, 1) with 23 bits: odd multiples of 2^-23 minus 1, exact in
        # float32 and never +-1 (erf_inv(+-1) is infinite).
        m = (h >> 9).astype(work)
        z = (2.0 * m + 1.0) * (2.0 ** -23) - 1.0
        return (jnp.sqrt(jnp.asarray(2.0, work)) * jax.lax.erf_inv(z)).astype(dtype)
    raise ValueError(f"sampler {sampler!r} is not elementwise; use one of {ELEMENTWISE_SAMPLERS}")


def leaf_tangent(key: PRNGKey, index, leaf_index: int, shape: Sequence[int], dtype, sampler: str,
                 start=0, size: int | None = None) -> Array:
    """Elements of leaf ``leaf_index`` of tangent ``index`` (elementwise samplers).

    Each element is a hash of its flat position and a seed drawn from ``(key, index, leaf_index)``,
    so any block of a leaf can be regenerated on its own and XLA can fuse the generation into
    whatever consumes it (``jax.random`` bits are not fused on CPU, which kept all tangents alive).

    Args:
      start, size: return only the flat elements ``[start, start + size)`` (positions past the end
        of the leaf give 0); ``size=None`` returns the whole leaf in ``shape``.
    """
    return leaf_tangent_from_seeds(_seeds(key, index, leaf_index), shape, dtype, sampler, start, size)


def leaf_tangent_from_seeds(seeds: Array, shape: Sequence[int], dtype, sampler: str, start=0,
                            size: int | None = None) -> Array:
    """:func:`leaf_tangent` given the leaf's two uint32 seeds (``_seeds(key, index, leaf_index)``)."""
    if size is None:
        numel = math.prod(shape)
        counter = jnp.arange(numel, dtype=jnp.uint32).reshape(tuple(shape))
        return _bits_to_tangent(_hash(seeds, counter), dtype, sampler)
    counter = jnp.asarray(start, jnp.uint32) + jnp.arange(size, dtype=jnp.uint32)
    out = _bits_to_tangent(_hash(seeds, counter), dtype, sampler)
    return jnp.where(counter < math.prod(shape), out, jnp.zeros_like(out))


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
    out = [leaf_tangent(key, index, l, jnp.shape(x), jnp.result_type(x), sampler) for l, x in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)


def _orthonormal(key: PRNGKey, params: PyTree, num_tangents: int) -> PyTree:
    """Normal tangents orthonormalised (QR) over all parameters at once, in groups of at most n."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    n = num_parameters(params)
    dtype = jnp.result_type(*leaves)
    groups = []
    for g, start in enumerate(range(0, num_tangents, n)):
        size = min(n, num_tangents - start)
        raw = leaf_tangent(key, g, 0, (size, n), dtype, "normal").T
        if groups:  # one group's QR after another: under vmap, batched QRs side by side deadlock XLA's CPU pool
            raw = after(raw, groups[-1])
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


def sample_equiangular_tangents(key: PRNGKey, params: PyTree, num_tangents: int, *, angle_deg) -> PyTree:
    """``k <= n`` unit tangents whose pairwise angles all equal ``angle_deg`` (the paper's section 4.3).

    With ``Q`` the orthonormal tangents of ``sample_tangents(key, params, k, sampler="orthonormal")`` (a
    Haar-random k-dimensional subspace), the tangents are ``V = Q L^T`` with ``L L^T = (1 - c) I + c 1 1^T``
    and ``c = cos(angle)``: ``v_i . v_j = c`` for ``i != j`` and ``|v_i| = 1``. The span does not depend on
    the angle (for the same key, every angle spans the same subspace, so the projection estimate is the
    same), while the tangents crowd around their common direction as the angle shrinks. At 90 degrees
    they are the orthonormal tangents themselves.

    The reference code's ``specific_angle_X`` sampler instead fixes each tangent's angle to the first one.

    Args:
      key: PRNG key.
      params: pytree of floating point arrays (n parameters).
      num_tangents: k, at most n.
      angle_deg: the pairwise angle in degrees, in (0, 90] (a Python number, checked, or a traced scalar).

    Returns:
      A pytree like ``params`` with leaves of shape ``(k, *leaf.shape)``.

    Raises:
      ValueError: for k > n or an angle outside (0, 90].

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> v = sample_equiangular_tangents(jax.random.key(0), jnp.zeros(8), 3, angle_deg=60.0)
      >>> [round(float(x), 4) for x in (v[0] @ v[1], v[1] @ v[2], v[2] @ v[2])]
      [0.5, 0.5, 1.0]
    """
    n, k = num_parameters(params), int(num_tangents)
    if not 1 <= k <= n:
        raise ValueError(f"equiangular tangents need 1 <= num_tangents <= n = {n}, got {num_tangents}")
    if isinstance(angle_deg, (int, float)) and not 0.0 < angle_deg <= 90.0:
        raise ValueError(f"angle_deg must be in (0, 90] degrees, got {angle_deg}")
    q = _orthonormal(key, params, k)
    leaves, treedef = jax.tree_util.tree_flatten(q)
    dtype = jnp.result_type(*leaves)
    c = jnp.cos(jnp.deg2rad(jnp.asarray(angle_deg, dtype)))
    gram = (1.0 - c) * jnp.eye(k, dtype=dtype) + c * jnp.ones((k, k), dtype)
    mix = jnp.linalg.cholesky(gram)  # V = Q L^T: row i of V is sum_j L[i, j] q_j
    out = [jnp.tensordot(mix.astype(v.dtype), v, axes=1) for v in leaves]
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
    draw = jax.jit(sample_tangent, static_argnames="sampler")
    rows = []
    for i in range(num_tangents):
        t = draw(key, params, i, sampler=sampler)
        rows.append(np.concatenate([np.asarray(x).ravel() for x in jax.tree_util.tree_leaves(t)]))
    return np.stack(rows)
