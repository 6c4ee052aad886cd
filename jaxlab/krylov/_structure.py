"""Host-side sparsity structure for preconditioner setup: padded rows, position lookups, level schedules.

Setup runs once, outside the solver loop and outside jit, on concrete matrices. Everything here is
NumPy on the host except the level recurrence, which is a jitted sequential scan.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def triplets(A: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(rows, cols, vals, n)`` of a concrete square matrix: dense, SciPy sparse or a jaxlab format."""
    if isinstance(A, jax.core.Tracer) or any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(A)):
        raise TypeError(
            "this preconditioner's setup needs a concrete matrix, but A is traced (inside jit or vmap). "
            "Build it outside jit with krylov.make_preconditioner(A, kind) and pass the result as preconditioner="
        )
    if hasattr(A, "tocoo"):  # SciPy sparse
        coo = A.tocoo()
    elif hasattr(A, "to_scipy"):  # jaxlab sparse formats
        coo = A.to_scipy().tocoo()
    elif callable(A) and not hasattr(A, "shape"):
        raise TypeError("this preconditioner needs the matrix entries; A is a callable (matrix-free). "
                        "Use preconditioner=None, a callable, or pass A as a matrix")
    else:
        import scipy.sparse as sp

        coo = sp.coo_matrix(np.asarray(A))
    if coo.shape[0] != coo.shape[1]:
        raise ValueError(f"preconditioners need a square matrix, got shape {coo.shape}")
    coo.sum_duplicates()
    return coo.row.astype(np.int64), coo.col.astype(np.int64), np.asarray(coo.data), int(coo.shape[0])


@dataclasses.dataclass(frozen=True)
class PaddedRows:
    """Rows sorted by column and padded to the longest row.

    ``cols[i, p]`` is the p-th column of row i (``n`` for padding), ``slot[i, p]`` its index in the
    flat value array (``nnz`` for padding, which points at an appended zero), ``diag[i]`` the flat index
    of the diagonal entry (``nnz`` if there is none).
    """

    n: int
    nnz: int
    cols: np.ndarray
    slot: np.ndarray
    diag: np.ndarray
    rows_flat: np.ndarray
    cols_flat: np.ndarray
    vals_flat: np.ndarray

    def find(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Flat index of entry (i, j), or ``nnz`` where the pattern has no such entry (vectorised)."""
        keys = self.rows_flat * self.n + self.cols_flat
        q = np.asarray(i, np.int64) * self.n + np.asarray(j, np.int64)
        pos = np.searchsorted(keys, q)
        pos_c = np.minimum(pos, self.nnz - 1) if self.nnz else pos
        hit = (pos < self.nnz) & (keys[pos_c] == q) if self.nnz else np.zeros(q.shape, bool)
        return np.where(hit, pos_c, self.nnz)


def padded_rows(rows, cols, vals, n: int) -> PaddedRows:
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    nnz = len(rows)
    counts = np.bincount(rows, minlength=n)
    w = max(int(counts.max()) if n else 0, 1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    pos = np.arange(nnz) - indptr[rows]
    C = np.full((n, w), n, np.int64)
    S = np.full((n, w), nnz, np.int64)
    C[rows, pos] = cols
    S[rows, pos] = np.arange(nnz)
    p = PaddedRows(n, nnz, C, S, np.zeros(n, np.int64), rows, cols, vals)
    diag = p.find(np.arange(n), np.arange(n))
    return dataclasses.replace(p, diag=diag)


@jax.jit
def _lower_levels(cols):
    n = cols.shape[0]

    def body(i, level):
        c = cols[i]
        dep = (c < i)
        lv = jnp.where(dep, level[jnp.minimum(c, n - 1)], -1)
        return level.at[i].set(jnp.max(lv) + 1)

    return jax.lax.fori_loop(0, n, body, jnp.zeros((n,), jnp.int32))


def level_groups(cols: np.ndarray, *, upper: bool) -> np.ndarray:
    """Rows grouped by dependency level of the lower (or upper) triangle, padded with ``n``.

    Rows in one group depend only on rows of earlier groups, so a triangular solve or an ILU(0)
    factorisation can process a whole group at once. Returns an int array (levels, max group size).
    """
    n = cols.shape[0]
    if n == 0:
        return np.zeros((0, 1), np.int64)
    if upper:  # reverse the ordering: row i -> n-1-i turns the upper triangle into a lower one
        rc = np.where(cols < n, n - 1 - cols, n)
        rc = rc[::-1]
        lv = np.asarray(_lower_levels(jnp.asarray(rc, jnp.int32)))[::-1]
    else:
        lv = np.asarray(_lower_levels(jnp.asarray(cols, jnp.int32)))
    order = np.argsort(lv, kind="stable")
    counts = np.bincount(lv)
    width = int(counts.max())
    groups = np.full((len(counts), width), n, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lv_sorted = lv[order]
    groups[lv_sorted, np.arange(n) - starts[lv_sorted]] = order
    return groups
