"""Host-side sparsity structure for preconditioner setup: canonical CSR, level schedules, entry lookups.

Setup runs once, outside the solver loop and outside jit, on concrete matrices, in NumPy, in memory
proportional to the number of stored entries (nothing is padded to the longest row): a 2000 x 2000 arrow
matrix (one dense row and column) costs what its 6k entries cost, not rows x longest row squared.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.core import Tracer
import numpy as np
import scipy.sparse as sp

import jaxlab.sparse as jsparse

from ._operator import Operator

# A canonical SciPy CSR matrix. SciPy's own annotations (``shape`` may be None, ...) are too loose for pyright to
# follow, so the helpers take it untyped.
CsrMatrix = Any


def _concrete(tree: Any) -> bool:
    return not any(isinstance(leaf, Tracer) for leaf in jax.tree.leaves(tree))


def canonical_csr(A: Any, what: str) -> CsrMatrix:
    """A concrete square matrix (jaxlab format, SciPy sparse, dense array, matrix Operator) as canonical CSR.

    Canonical: sorted column indices, duplicates summed, int64 indices, values in A's dtype.

    Raises:
      TypeError: ``A`` is traced (inside jit/vmap) or a function (no entries to read).
      ValueError: ``A`` is not square.
    """
    if isinstance(A, Operator):
        if A.kind == "function":
            raise TypeError(f"{what} needs the matrix entries, but A is a callable (matrix-free). Use "
                            "preconditioner=None, a callable, or pass A as a matrix")
        A = A.value
    if not _concrete(A):
        raise TypeError(
            f"{what}'s setup needs a concrete matrix, but A is traced (inside jit or vmap). Build it outside jit "
            "with krylov.make_preconditioner(A, kind) and pass the result as preconditioner="
        )
    S: Any
    if sp.issparse(A):
        S = sp.csr_matrix(A, copy=True)
    elif isinstance(A, (jsparse.AbstractSparseMatrix, jsparse.Transposed)):
        S = A.to_scipy()
    elif isinstance(A, (jax.Array, np.ndarray)):
        S = sp.csr_matrix(np.asarray(A))
    elif callable(A):
        raise TypeError(f"{what} needs the matrix entries, but A is a callable (matrix-free). Use "
                        "preconditioner=None, a callable, or pass A as a matrix")
    else:
        raise TypeError(f"{what} needs a matrix, got {type(A).__name__}")
    if S.shape[0] != S.shape[1]:
        raise ValueError(f"{what} needs a square matrix, got shape {S.shape}")
    S.sum_duplicates()
    S.sort_indices()
    if S.dtype.kind not in "fc":
        S = S.astype(np.float64)
    S.indptr = S.indptr.astype(np.int64)
    S.indices = S.indices.astype(np.int64)
    return S


def entry_rows(indptr: np.ndarray) -> np.ndarray:
    """The row of every stored entry of a CSR structure."""
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + l)`` over all pairs (vectorised)."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = np.repeat(np.asarray(starts, np.int64) - np.cumsum(lengths) + lengths, lengths)
    return shift + np.arange(total, dtype=np.int64)


def find_entries(keys: np.ndarray, n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Position of entry ``(rows[e], cols[e])`` in a CSR whose sorted ``keys`` are ``row * n + col``; -1 if absent."""
    q = np.asarray(rows, np.int64) * n + np.asarray(cols, np.int64)
    if keys.size == 0:
        return np.full(q.shape, -1, np.int64)
    pos = np.searchsorted(keys, q)
    pc = np.minimum(pos, keys.size - 1)
    return np.where(keys[pc] == q, pc, -1)


def dependency_levels(indptr: np.ndarray, indices: np.ndarray, n: int, *, upper: bool) -> np.ndarray:
    """Level of every row in the dependency graph of the strictly lower (or upper) triangle.

    Row ``i`` depends on the rows ``k`` of its strictly lower (upper) entries ``(i, k)``; level 0 rows depend on
    none, and every row's level is one more than the largest level it depends on. Rows of one level can be
    solved (or factorised) together. Computed by Kahn's algorithm, frontier by frontier: O(nnz) work plus a few
    NumPy calls per level.
    """
    rows = entry_rows(indptr)
    dep = indices > rows if upper else indices < rows
    src, dst = indices[dep], rows[dep]  # row dst waits for row src
    indeg = np.bincount(dst, minlength=n).astype(np.int64)
    order = np.argsort(src, kind="stable")
    dst_by_src = dst[order]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
    level = np.zeros(n, np.int64)
    frontier = np.flatnonzero(indeg == 0)
    lv = 0
    while frontier.size:
        level[frontier] = lv
        nxt = dst_by_src[ranges(ptr[frontier], ptr[frontier + 1] - ptr[frontier])]
        if nxt.size == 0:
            break
        uniq, counts = np.unique(nxt, return_counts=True)
        indeg[uniq] -= counts
        frontier = uniq[indeg[uniq] == 0]
        lv += 1
    return level


def next_pow2(v: np.ndarray) -> np.ndarray:
    """Elementwise smallest power of two >= v (1 for v <= 1)."""
    v = np.maximum(np.asarray(v, np.int64), 1)
    return (1 << np.ceil(np.log2(v)).astype(np.int64)).astype(np.int64)
