"""ILU(0), IC(0) and ISAI preconditioners, set up in memory proportional to the stored entries.

ILU(0) is the IKJ factorisation restricted to ``A``'s pattern. It is computed on the host in NumPy from the
list of its updates ``a_ij -= l_ik u_kj`` (one per ``(i, k)`` in the strictly lower pattern and ``(k, j)``
in the strictly upper one with ``(i, j)`` in the pattern, found by searching the other side of whichever of
row ``i`` or row ``k`` is shorter), grouped by the dependency level of row ``i`` and the position of ``k`` in
the row: the updates of one group are independent, so each group is a handful of vectorised NumPy calls.
SciPy has no ILU(0) (``spilu`` is SuperLU's threshold ILU, which drops by magnitude, not by pattern, and
permutes), hence the hand-written factorisation; its result equals the dense textbook
:func:`ilu0_reference`. Applying the factors is two level-scheduled triangular solves
(:class:`LevelSchedule`), or with ``triangular="isai"`` two sparse products with approximate inverses.

ISAI (Ginkgo's incomplete sparse approximate inverse) solves one small system per row, of the row's length:
rows up to 64 entries are batched by length and in chunks (dense solves), longer rows get a sparse direct
solve of their local submatrix (SciPy's SuperLU), so memory stays bounded by the chunk limit and the stored
entries, not by rows x longest row squared.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from jaxtyping import Array, Inexact

import jaxlab.sparse as jsparse

from ._precond import AbstractPreconditioner, Composed, SparsePreconditioner
from ._structure import CsrMatrix, canonical_csr, dependency_levels, entry_rows, find_entries, ranges
from ._triangular import LevelSchedule, level_schedule

# ISAI solves at most this many local-matrix entries at once (a chunk of rows of equal length), and the local
# systems of rows longer than _ISAI_DENSE_MAX with a sparse direct solve (SciPy's SuperLU) instead.
_ISAI_CHUNK_ENTRIES = 1 << 22
_ISAI_DENSE_MAX = 64


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ILU(AbstractPreconditioner):
    """ILU(0) (or IC(0)) factors ``L`` (unit lower) and ``U``: ``M x = U^-1 L^-1 x``.

    The transpose applies ``L^-T U^-T`` with the same level schedules (backward sweeps).
    """

    lower: LevelSchedule
    upper: LevelSchedule
    transposed: bool = dataclasses.field(default=False, metadata=dict(static=True))

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        if self.transposed:  # (LU)^-T x = L^-T U^-T x
            return self.lower.solve_transposed(self.upper.solve_transposed(x))
        return self.upper.solve(self.lower.solve(x))

    @property
    def T(self) -> "ILU":
        return dataclasses.replace(self, transposed=not self.transposed)

    def astype(self, dtype) -> "ILU":
        return dataclasses.replace(self, lower=self.lower.astype(dtype), upper=self.upper.astype(dtype))


def _check_diag(d: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(d) | (d == 0))
    if bad.size:
        raise ValueError(
            f"{what}: zero or non-finite diagonal entry at row {int(bad[0])} ({bad.size} rows in all); "
            "reorder the matrix, use another preconditioner (e.g. 'block_jacobi' or None) or shift the diagonal"
        )


def _diag_positions(S: CsrMatrix, keys: np.ndarray) -> np.ndarray:
    n = S.shape[0]
    d = find_entries(keys, n, np.arange(n), np.arange(n))
    if (d < 0).any():
        _check_diag(np.where(d < 0, 0.0, 1.0), "ilu0")
    return d


def ilu0_factor(S: CsrMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ILU(0) factor values of a canonical CSR matrix, in its own layout (``L`` below, ``U`` on and above
    the diagonal), the positions of the diagonal entries, and the rows' levels in the lower triangle.

    Raises:
      ValueError: a missing, zero or non-finite diagonal entry, before or during the factorisation.
    """
    n = S.shape[0]
    indptr, cols = S.indptr, S.indices
    rows = entry_rows(indptr)
    keys = rows * n + cols
    diag = _diag_positions(S, keys)
    _check_diag(S.data[diag], "ilu0")
    # The updates a_ij -= l_ik u_kj: for every strictly lower entry e = (i, k), the j > k with (i, j) and
    # (k, j) both stored. Candidates come from the shorter side: the rest of row i, or row k's strict upper part.
    lower = np.flatnonzero(cols < rows)
    li, lk = rows[lower], cols[lower]
    rest_i = indptr[li + 1] - lower - 1
    upper_k = indptr[lk + 1] - diag[lk] - 1
    side_i = rest_i <= upper_k
    e_a = np.repeat(lower[side_i], rest_i[side_i])  # scan row i, look up (k, j)
    t_a = ranges(lower[side_i] + 1, rest_i[side_i])
    s_a = find_entries(keys, n, cols[e_a], cols[t_a])
    e_b = np.repeat(lower[~side_i], upper_k[~side_i])  # scan row k, look up (i, j)
    s_b = ranges(diag[lk[~side_i]] + 1, upper_k[~side_i])
    t_b = find_entries(keys, n, rows[e_b], cols[s_b])
    e_t = np.concatenate([e_a, e_b])
    tgt = np.concatenate([t_a, t_b])
    src = np.concatenate([s_a, s_b])
    hit = (tgt >= 0) & (src >= 0)
    e_t, tgt, src = e_t[hit], tgt[hit], src[hit]
    # Group (row level, position of k within row i): rows of one level are independent, and within a row the
    # lower entries are final in column order.
    level = dependency_levels(indptr, cols, n, upper=False)
    step = lower - indptr[li]
    width = int(step.max()) + 1 if lower.size else 1
    group_l = level[li] * width + step
    order = np.argsort(group_l, kind="stable")
    lower_sorted, group_sorted = lower[order], group_l[order]
    # Updates in the group of their lower entry (rows[e_t] * 0 + group of e_t): map entry -> group.
    group_of_entry = np.zeros(len(cols), np.int64)
    group_of_entry[lower] = group_l
    group_t = group_of_entry[e_t]
    torder = np.argsort(group_t, kind="stable")
    e_t, tgt, src, group_t = e_t[torder], tgt[torder], src[torder], group_t[torder]
    groups, starts = np.unique(group_sorted, return_index=True)
    ends = np.append(starts[1:], len(lower_sorted))
    t_starts = np.searchsorted(group_t, groups, side="left")
    t_ends = np.searchsorted(group_t, groups, side="right")
    a: np.ndarray = np.array(S.data, copy=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        for g0, g1, u0, u1 in zip(starts.tolist(), ends.tolist(), t_starts.tolist(), t_ends.tolist()):
            e = lower_sorted[g0:g1]
            a[e] /= a[diag[cols[e]]]
            if u1 > u0:
                a[tgt[u0:u1]] -= a[e_t[u0:u1]] * a[src[u0:u1]]
    _check_diag(a[diag], "ilu0 (a zero pivot appeared during factorisation)")
    return a, diag, level


def _schedules(S: CsrMatrix, a: np.ndarray, diag: np.ndarray,
               level: np.ndarray) -> tuple[LevelSchedule, LevelSchedule]:
    n = S.shape[0]
    lower = level_schedule(S.indptr, S.indices, a, None, n, upper=False, level=level)
    upper = level_schedule(S.indptr, S.indices, a, a[diag], n, upper=True)
    return lower, upper


def _factor_parts(S: CsrMatrix, a: np.ndarray) -> tuple[Any, Any]:
    """``L`` (with its unit diagonal stored) and ``U`` as CSR matrices, from the factor values."""
    F = sp.csr_matrix((a, S.indices, S.indptr), shape=S.shape)
    L: Any = sp.tril(F, -1, format="csr") + sp.identity(S.shape[0], dtype=a.dtype.name, format="csr")
    U: Any = sp.triu(F, 0, format="csr")
    return sp.csr_matrix(L), sp.csr_matrix(U)


def ilu0(A: Any, *, triangular: str = "exact") -> AbstractPreconditioner:
    """Incomplete LU with zero fill-in, ``A ~ L U`` on ``A``'s sparsity pattern.

    Args:
      A: a concrete square matrix with a nonzero diagonal (jaxlab format, SciPy sparse, dense array, or a
        matrix :class:`Operator`).
      triangular: ``"exact"`` (level-scheduled triangular solves) or ``"isai"`` (approximate inverses of
        the factors on their own pattern; each application is then two sparse products).

    Raises:
      ValueError: a zero or missing diagonal entry or pivot, or an unknown ``triangular``.
      TypeError: ``A`` is traced or matrix-free.
    """
    if triangular not in ("exact", "isai"):
        raise ValueError(f"triangular must be 'exact' or 'isai', got {triangular!r}")
    S = canonical_csr(A, "ilu0")
    a, diag, level = ilu0_factor(S)
    if triangular == "exact":
        return ILU(*_schedules(S, a, diag, level))
    L, U = _factor_parts(S, a)
    return Composed(_isai_matrix(L, "lower"), _isai_matrix(U, "upper"))


def ic0(A: Any, *, triangular: str = "exact") -> AbstractPreconditioner:
    """Incomplete Cholesky with zero fill-in for Hermitian positive definite ``A``.

    Computed as ILU(0), whose factors of a Hermitian matrix satisfy ``U = D L^H``, so ``A ~ L D L^H``:
    applying it costs the same as ILU(0) and it is Hermitian (use it with CG).

    Raises:
      ValueError: ``A`` is not Hermitian (checked to rounding), or a zero pivot appears.
    """
    S = canonical_csr(A, "ic0")
    if S.nnz:
        asym = abs(S - S.conj().T).max()
        if asym > 1e3 * np.finfo(S.dtype).eps * max(abs(S).max(), 1e-300):
            raise ValueError(f"ic0 needs a symmetric (Hermitian) matrix (max |A - A^H| = {asym:.3g}); use ilu0 "
                             "instead")
    return ilu0(S, triangular=triangular)


def _isai_matrix(T: Any, part: str) -> SparsePreconditioner:
    """Incomplete sparse approximate inverse of ``T`` on the pattern of its ``part`` (Ginkgo's ISAI).

    Row ``i`` of ``M`` solves ``T[P_i, P_i]^T m_i = e_i`` with ``P_i`` the pattern of row ``i`` of the part
    (``lower``: lower triangle with the diagonal; ``upper``: upper triangle with it; ``full``: all), so that
    ``(M T)[i, j] = delta_ij`` for ``j`` in ``P_i``.
    """
    n = T.shape[0]
    P: Any
    if part == "lower":
        P = sp.tril(T, 0, format="csr")
    elif part == "upper":
        P = sp.triu(T, 0, format="csr")
    else:
        P = T
    P = sp.csr_matrix(P)
    P.sort_indices()
    P.indptr = P.indptr.astype(np.int64)
    P.indices = P.indices.astype(np.int64)
    rows = entry_rows(P.indptr)
    keys = rows * n + P.indices
    lengths = np.diff(P.indptr)
    out = np.zeros(P.nnz, P.dtype)
    for i in np.flatnonzero(lengths > _ISAI_DENSE_MAX).tolist():
        pat = P.indices[P.indptr[i]:P.indptr[i + 1]]
        local = P[pat][:, pat].tocsc()
        rhs = (pat == i).astype(P.dtype)
        out[P.indptr[i]:P.indptr[i + 1]] = np.asarray(spla.spsolve(local.T.tocsc(), rhs))
    for length in np.unique(lengths).tolist():
        if length == 0 or length > _ISAI_DENSE_MAX:
            continue
        group = np.flatnonzero(lengths == length)
        chunk = max(1, _ISAI_CHUNK_ENTRIES // (length * length))
        for c0 in range(0, group.size, chunk):
            r = group[c0:c0 + chunk]
            pos = P.indptr[r][:, None] + np.arange(length)[None, :]  # (c, l) entry positions
            pat = P.indices[pos]
            # local[c, a, b] = T[pat[c, a], pat[c, b]] (0 where the part stores nothing)
            where = find_entries(keys, n, np.repeat(pat, length, axis=1).reshape(-1),
                                 np.tile(pat, (1, length)).reshape(-1)).reshape(len(r), length, length)
            local = np.where(where >= 0, P.data[np.maximum(where, 0)], 0)
            rhs = (pat == r[:, None]).astype(P.dtype)
            m = np.linalg.solve(np.swapaxes(local, 1, 2), rhs[..., None])[..., 0]
            out[pos] = m
    if not np.isfinite(out).all():
        raise ValueError("isai: a local system is singular (a zero diagonal entry?); use ilu0 or jacobi instead")
    M = sp.csr_matrix((out, P.indices, P.indptr), shape=(n, n))
    return SparsePreconditioner(jsparse.CSR.from_scipy(M, dtype=M.dtype))


def isai(A: Any) -> SparsePreconditioner:
    """A sparse approximate inverse of ``A`` on ``A``'s own pattern (general ISAI).

    Raises:
      ValueError: a zero or missing diagonal entry, or a singular local system.
    """
    S = canonical_csr(A, "isai")
    n = S.shape[0]
    keys = entry_rows(S.indptr) * n + S.indices
    d = find_entries(keys, n, np.arange(n), np.arange(n))
    _check_diag(np.where(d >= 0, S.data[np.maximum(d, 0)], 0), "isai")
    return _isai_matrix(S, "full")


def ilu0_reference(A: Any) -> tuple[np.ndarray, np.ndarray]:
    """Dense textbook ILU(0) (IKJ variant restricted to the pattern of ``A``): returns unit-lower L and U."""
    A = np.asarray(A)
    a = np.array(A, dtype=A.dtype if A.dtype.kind in "fc" else np.float64)
    n = a.shape[0]
    pattern = a != 0
    for i in range(1, n):
        for k in range(i):
            if not pattern[i, k]:
                continue
            a[i, k] /= a[k, k]
            for j in range(k + 1, n):
                if pattern[i, j]:
                    a[i, j] -= a[i, k] * a[k, j]
    return np.tril(a, -1) + np.eye(n, dtype=a.dtype), np.triu(a)
