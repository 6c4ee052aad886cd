"""Sample loops whose batched LAPACK calls never run side by side (a deadlock of XLA's CPU runtime).

jaxlib's batched LAPACK kernels on CPU (``getrf`` behind ``jnp.linalg.solve``, ``potrf`` behind
``cholesky``, ``syevd`` behind ``eigh``, ...) split their batch over XLA's intra-op thread pool
(``ParallelBatchMap``) and then block their pool thread on a counter until every chunk is done. When
as many such kernels run at once as the pool has threads (2 on a 2-core machine), every pool thread
waits for chunks queued behind the waiting kernels, and the program never finishes: 0 CPU, the host
thread in ``BlockUntilReady`` (seen in JAX 0.10.2: ``jaxlab run configs/fwdgrad/approximation.py`` hung
at n = 128, k = 64 for 40 minutes). Independent kernels run at once whenever the program has two
independent batched solves:

* ``jax.lax.map(f, xs, batch_size=b)`` with ``len(xs) % b != 0`` runs the remainder's ``vmap(f)``
  beside the scan over the full batches: :func:`map_in_batches` pads ``xs`` instead (at most one
  extra item per batch), so there is only the scan;
* a body that computes several estimates from the same key (mean and projection, or two Cholesky
  draws of equiangular tangents): :func:`key_after` makes the next one's key depend on the previous
  estimate (``jaxlab.core.after``: bit for bit the same key).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxlab.core import PRNGKey, after


def batch_plan(num: int, batch_size: int) -> tuple[int, int]:
    """``(batch, padded)``: as many batches as ``ceil(num / batch_size)``, equal, ``batch`` <= ``batch_size``.

    ``padded = batches * batch >= num`` exceeds ``num`` by less than the number of batches.
    """
    if num < 1 or batch_size < 1:
        raise ValueError(f"need num >= 1 and batch_size >= 1, got num={num}, batch_size={batch_size}")
    batches = -(-num // min(batch_size, num))
    batch = -(-num // batches)
    return batch, batches * batch


def map_in_batches(f: Callable, xs: Any, batch_size: int) -> Any:
    """``jax.lax.map(f, xs, batch_size=...)`` without a remainder branch: one scan over equal batches.

    ``xs`` (a pytree with leading axis ``num``) is padded with copies of its last item to a multiple of
    the batch of :func:`batch_plan`; the padded items' outputs are dropped. Same outputs as
    ``jax.lax.map`` (each item is computed on its own), but no ``vmap(f)`` of a remainder runs beside
    the scan, so ``f``'s batched LAPACK calls run one at a time.
    """
    num = jax.tree_util.tree_leaves(xs)[0].shape[0]
    batch, padded = batch_plan(num, batch_size)
    if padded > num:
        xs = jax.tree_util.tree_map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], padded - num, axis=0)]), xs)
    ys = jax.lax.map(f, xs, batch_size=batch)
    return ys if padded == num else jax.tree_util.tree_map(lambda y: y[:num], ys)


def key_after(key: PRNGKey, *values: Any) -> PRNGKey:
    """``key`` itself, but computed only once ``values`` exist (orders work drawn from it after theirs)."""
    return jax.random.wrap_key_data(after(jax.random.key_data(key), *values), impl=jax.random.key_impl(key))
