"""Level-scheduled sparse triangular solves in O(nnz) memory (the apply of ILU(0) and IC(0)).

A triangular factor is stored as its off-diagonal entries sorted by the dependency level of their row, with
the rows of each level listed once. Solving ``T y = b`` sweeps the levels in order; the rows of one level
are independent, so each level is one gather, one segment sum and one scatter. Levels differ in size, so
each level runs in a branch (``lax.switch``) sized to the next power of two of its row and entry counts:
work and memory stay within twice the stored entries, where padding every level to the largest one (or
every row to the longest) can cost rows x longest row. The transposed solve ``T^T z = b`` sweeps the same
levels backwards, scattering each solved value into the rows that need it, so no second schedule is built.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Inexact, Int

from ._structure import dependency_levels, entry_rows, next_pow2


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["rows", "row_ptr", "ent_ptr", "ent_local", "ent_col", "ent_val", "inv_diag",
                                "branch"],
                   meta_fields=["n", "sizes"])
@dataclasses.dataclass(frozen=True)
class LevelSchedule:
    """A triangular matrix ``T = D + N`` (``N`` strictly lower or upper) prepared for level-scheduled solves.

    Attributes:
      rows: the rows sorted by level, padded with ``n`` (``n + max(sizes)`` entries).
      row_ptr, ent_ptr: where each level's rows and off-diagonal entries start (``levels + 1``).
      ent_local: position of each entry's row within its level's rows; ent_col: its column; ent_val: its value.
      inv_diag: ``1 / D`` (ones for a unit triangle), with a trailing 1 for the padding row ``n``.
      branch: the index into ``sizes`` of each level's branch.
      n: the order; sizes: the branch sizes (powers of two, static).
    """

    rows: Int[Array, " r"]
    row_ptr: Int[Array, " l1"]
    ent_ptr: Int[Array, " l1"]
    ent_local: Int[Array, " e"]
    ent_col: Int[Array, " e"]
    ent_val: Inexact[Array, " e"]
    inv_diag: Inexact[Array, " n1"]
    branch: Int[Array, " l"]
    n: int
    sizes: tuple[int, ...]

    def astype(self, dtype) -> "LevelSchedule":
        return dataclasses.replace(self, ent_val=self.ent_val.astype(dtype), inv_diag=self.inv_diag.astype(dtype))

    def _level(self, l, size):
        r0, e0 = self.row_ptr[l], self.ent_ptr[l]
        lane = jnp.arange(size)
        rmask = lane < self.row_ptr[l + 1] - r0
        emask = lane < self.ent_ptr[l + 1] - e0
        rows = jnp.where(rmask, lax.dynamic_slice(self.rows, (r0,), (size,)), self.n)
        local = jnp.where(emask, lax.dynamic_slice(self.ent_local, (e0,), (size,)), 0)
        col = jnp.where(emask, lax.dynamic_slice(self.ent_col, (e0,), (size,)), self.n)
        val = jnp.where(emask, lax.dynamic_slice(self.ent_val, (e0,), (size,)), 0)
        return rows, local, col, val

    def solve(self, b: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        """``T^-1 b``."""
        n = self.n
        be = jnp.concatenate([b, jnp.zeros((1,), b.dtype)])
        inv = self.inv_diag.astype(b.dtype)

        def branch(size, l, y):
            rows, local, col, val = self._level(l, size)
            s = jax.ops.segment_sum(val.astype(b.dtype) * y[col], local, num_segments=size)
            return y.at[rows].set((be[rows] - s) * inv[rows]).at[n].set(0)

        branches = [functools.partial(branch, s) for s in self.sizes]
        body = lambda l, y: lax.switch(self.branch[l], branches, l, y)
        return lax.fori_loop(0, self.branch.shape[0], body, jnp.zeros((n + 1,), b.dtype))[:n]

    def solve_transposed(self, b: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        """``T^-T b`` (the plain transpose, also for complex values)."""
        n = self.n
        inv = self.inv_diag.astype(b.dtype)
        levels = self.branch.shape[0]

        def branch(size, l, carry):
            z, r = carry
            rows, local, col, val = self._level(l, size)
            zr = r[rows] * inv[rows]
            z = z.at[rows].set(zr).at[n].set(0)
            r = r.at[col].add(-val.astype(b.dtype) * zr[local]).at[n].set(0)
            return z, r

        branches = [functools.partial(branch, s) for s in self.sizes]
        body = lambda i, c: lax.switch(self.branch[levels - 1 - i], branches, levels - 1 - i, c)
        r0 = jnp.concatenate([b, jnp.zeros((1,), b.dtype)])
        z, _ = lax.fori_loop(0, levels, body, (jnp.zeros((n + 1,), b.dtype), r0))
        return z[:n]


# Padding work below this many slots is always worth a branch less (small matrices get a single branch).
_FREE_SLOTS = 1 << 14


def _branch_sizes(need: np.ndarray, max_branches: int = 4, slack: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Branch sizes for levels needing ``need`` (powers of two) slots, and each level's branch.

    Every branch is compiled, so small sizes are merged up into the next larger one while that adds at most
    ``slack`` of the padded work (or ``_FREE_SLOTS``), and until at most ``max_branches`` remain (then the
    cheapest merge goes first).
    """
    sizes = np.unique(need)
    if sizes.size == 0:
        return np.ones(1, np.int64), np.zeros(0, np.int64)
    counts = np.array([(need == s).sum() for s in sizes])
    work = float((counts * sizes).sum())
    while sizes.size > 1:
        extra = counts[:-1] * (sizes[1:] - sizes[:-1])  # moving bucket i's levels up to size i + 1
        i = int(np.argmin(extra))
        if sizes.size <= max_branches and extra[i] > max(slack * work, _FREE_SLOTS):
            break
        counts[i + 1] += counts[i]
        work += float(extra[i])
        sizes, counts = np.delete(sizes, i), np.delete(counts, i)
    return sizes, np.searchsorted(sizes, need)


def level_schedule(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, diag: np.ndarray | None,
                   n: int, *, upper: bool, level: np.ndarray | None = None) -> LevelSchedule:
    """Builds the schedule of the strictly lower (``upper=False``) or upper part of a CSR matrix.

    Args:
      indptr, indices, values: a canonical CSR matrix (sorted columns); only the strict triangle is read.
      diag: the diagonal values, or None for a unit triangle.
      n: the order.
      upper: use the strictly upper triangle (rows depend on later rows).
      level: the rows' dependency levels, if already known (:func:`dependency_levels`).
    """
    if level is None:
        level = dependency_levels(indptr, indices, n, upper=upper)
    num_levels = int(level.max()) + 1 if n else 0
    rows_all = entry_rows(indptr)
    keep = indices > rows_all if upper else indices < rows_all
    e_row, e_col, e_val = rows_all[keep], indices[keep], values[keep]
    row_order = np.argsort(level, kind="stable")
    row_counts = np.bincount(level, minlength=num_levels)
    row_ptr = np.concatenate([[0], np.cumsum(row_counts)]).astype(np.int64)
    pos_in_level = np.empty(n, np.int64)
    pos_in_level[row_order] = np.arange(n) - row_ptr[level[row_order]]
    e_level = level[e_row]
    e_order = np.argsort(e_level, kind="stable")
    ent_counts = np.bincount(e_level, minlength=num_levels)
    ent_ptr = np.concatenate([[0], np.cumsum(ent_counts)]).astype(np.int64)
    sizes, branch = _branch_sizes(next_pow2(np.maximum(row_counts, ent_counts)))
    pad = int(sizes.max()) if sizes.size else 1
    itype = np.int32 if n + pad < 2**31 - 1 and len(e_row) + pad < 2**31 - 1 else np.int64
    dtype = values.dtype
    inv = np.ones(n + 1, dtype)
    if diag is not None:
        inv[:n] = 1 / diag
    ints = lambda a: jnp.asarray(np.asarray(a, itype))  # cast on the host: no device conversion to compile
    return LevelSchedule(
        rows=ints(np.concatenate([row_order, np.full(pad, n)])),
        row_ptr=ints(row_ptr),
        ent_ptr=ints(ent_ptr),
        ent_local=ints(np.concatenate([pos_in_level[e_row[e_order]], np.zeros(pad, np.int64)])),
        ent_col=ints(np.concatenate([e_col[e_order], np.full(pad, n)])),
        ent_val=jnp.asarray(np.concatenate([e_val[e_order], np.zeros(pad, dtype)])),
        inv_diag=jnp.asarray(inv),
        branch=ints(branch.reshape(-1)),
        n=int(n),
        sizes=tuple(int(s) for s in sizes),
    )
