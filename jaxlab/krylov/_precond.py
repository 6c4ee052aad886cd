"""Preconditioners: Jacobi, block Jacobi, ILU(0), IC(0) and ISAI, each a pytree applying ``M x ~ A^-1 x``.

Setup (``make_preconditioner``) runs once, outside the solver loop; Jacobi also works on traced matrices,
the others need concrete entries (build them outside jit and pass the object into a jitted solve).
Triangular solves for ILU(0)/IC(0) are level-scheduled (exact; rows of one level are solved together)
or, with ``triangular="isai"``, replaced by incomplete sparse approximate inverses so that applying the
preconditioner is two sparse products, as Ginkgo does on GPUs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._structure import PaddedRows, level_groups, padded_rows, triplets


def _pytree(data: tuple[str, ...], meta: tuple[str, ...] = ()):
    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        return jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=list(meta))
    return wrap


@_pytree(data=())
class Identity:
    """No preconditioning."""

    def __call__(self, x):
        return x

    @property
    def T(self):
        return self


@_pytree(data=("inv_diag",))
class Jacobi:
    """Scalar Jacobi: multiply by the inverse of the diagonal."""

    inv_diag: jax.Array

    def __call__(self, x):
        return self.inv_diag * x if x.ndim == 1 else self.inv_diag[:, None] * x

    @property
    def T(self):
        return self


@_pytree(data=("inv_blocks",), meta=("n",))
class BlockJacobi:
    """Block Jacobi: the inverses of the diagonal blocks of size ``bs`` (the last block padded with identity)."""

    inv_blocks: jax.Array  # (num_blocks, bs, bs)
    n: int

    def __call__(self, x):
        nb, bs, _ = self.inv_blocks.shape
        xp = jnp.zeros((nb * bs,), x.dtype).at[: self.n].set(x)
        return jnp.einsum("bij,bj->bi", self.inv_blocks, xp.reshape(nb, bs)).reshape(-1)[: self.n]

    @property
    def T(self):
        return BlockJacobi(jnp.swapaxes(self.inv_blocks, 1, 2), self.n)


@_pytree(data=("cols", "vals"))
class PaddedSparse:
    """A sparse operator stored as padded rows (``cols`` n x w, ``n`` marks padding): ISAI results."""

    cols: jax.Array
    vals: jax.Array

    def __call__(self, x):
        xe = jnp.concatenate([x, jnp.zeros((1,), x.dtype)])
        return jnp.sum(self.vals * xe[self.cols], axis=1)

    @property
    def T(self):
        n, w = self.cols.shape
        rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, w))
        return _TransposedPadded(self.cols, self.vals, rows)


@_pytree(data=("cols", "vals", "rows"))
class _TransposedPadded:
    cols: jax.Array
    vals: jax.Array
    rows: jax.Array

    def __call__(self, x):
        n = self.cols.shape[0]
        out = jnp.zeros((n + 1,), x.dtype).at[self.cols.reshape(-1)].add((self.vals * x[self.rows]).reshape(-1))
        return out[:n]

    @property
    def T(self):
        return PaddedSparse(self.cols, self.vals)


@_pytree(data=("first", "second"))
class Composed:
    """``second(first(x))``, e.g. the two ISAI factors of an ILU preconditioner."""

    first: Any
    second: Any

    def __call__(self, x):
        return self.second(self.first(x))

    @property
    def T(self):
        return Composed(self.second.T, self.first.T)


@_pytree(data=("vals", "cols", "slot", "diag", "groups_lower", "groups_upper"), meta=("transposed",))
class ILU:
    """ILU(0) factors ``L`` (unit lower) and ``U`` in one flat value array, applied by level-scheduled solves.

    ``M x = U^-1 L^-1 x``. The transpose applies ``L^-T U^-T`` with the same level schedule.
    """

    vals: jax.Array  # (nnz + 1,), last entry 0
    cols: jax.Array  # (n + 1, w), row n is padding
    slot: jax.Array  # (n + 1, w)
    diag: jax.Array  # (n + 1,)
    groups_lower: jax.Array
    groups_upper: jax.Array
    transposed: bool = False

    def _lower(self, b, unit: bool, upper_part: bool, groups):
        n = self.cols.shape[0] - 1
        y = jnp.zeros((n + 1,), b.dtype)
        be = jnp.concatenate([b, jnp.zeros((1,), b.dtype)])

        def level(l, y):
            rows = groups[l]
            C = self.cols[rows]
            V = self.vals[self.slot[rows]]
            mask = (C > rows[:, None]) & (C < n) if upper_part else (C < rows[:, None])
            s = jnp.sum(jnp.where(mask, V * y[C], 0), axis=1)
            val = be[rows] - s
            if not unit:
                val = val / jnp.where(rows < n, self.vals[self.diag[rows]], 1)
            return y.at[rows].set(val).at[n].set(0)

        return lax.fori_loop(0, groups.shape[0], level, y)[:n]

    def _transposed_solve(self, b, *, upper_part: bool, unit: bool, groups):
        # Solve T^T z = b where T is the lower (or upper) factor: column-oriented sweep over the levels
        # of T in reverse, scattering each solved entry into the rows it affects.
        n = self.cols.shape[0] - 1
        r = jnp.concatenate([b, jnp.zeros((1,), b.dtype)])
        z = jnp.zeros((n + 1,), b.dtype)

        def level(l, carry):
            z, r = carry
            rows = groups[groups.shape[0] - 1 - l]
            C = self.cols[rows]
            V = self.vals[self.slot[rows]]
            val = r[rows]
            if not unit:
                val = val / jnp.where(rows < n, self.vals[self.diag[rows]], 1)
            z = z.at[rows].set(val).at[n].set(0)
            mask = (C > rows[:, None]) & (C < n) if upper_part else (C < rows[:, None])
            contrib = jnp.where(mask, V * val[:, None], 0)
            r = r.at[C.reshape(-1)].add(-contrib.reshape(-1)).at[n].set(0)
            return z, r

        z, _ = lax.fori_loop(0, groups.shape[0], level, (z, r))
        return z[:n]

    def __call__(self, x):
        if self.transposed:  # (LU)^-T x = L^-T U^-T x
            y = self._transposed_solve(x, upper_part=True, unit=False, groups=self.groups_upper)
            return self._transposed_solve(y, upper_part=False, unit=True, groups=self.groups_lower)
        y = self._lower(x, unit=True, upper_part=False, groups=self.groups_lower)
        return self._lower(y, unit=False, upper_part=True, groups=self.groups_upper)

    @property
    def T(self):
        return dataclasses.replace(self, transposed=not self.transposed)


def _check_finite_diag(d: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(d) | (d == 0))
    if bad.size:
        raise ValueError(
            f"{what}: zero or non-finite diagonal entry at row {int(bad[0])} ({bad.size} rows in all); "
            "reorder the matrix, use another preconditioner (e.g. 'block_jacobi' or None) or shift the diagonal"
        )


def jacobi(A: Any) -> Jacobi:
    """Scalar Jacobi from ``A``'s diagonal; works on traced matrices (then a zero diagonal gives NaN/Inf)."""
    if hasattr(A, "diagonal"):
        d = A.diagonal()
    elif callable(A):
        raise TypeError("jacobi needs the matrix's diagonal, but A is a callable: pass A as a matrix, or give a "
                        "callable preconditioner")
    else:
        d = jnp.diagonal(jnp.asarray(A))
    if not isinstance(d, jax.core.Tracer):
        _check_finite_diag(np.asarray(d), "jacobi")
    return Jacobi(1 / d)


def block_jacobi(A: Any, block_size: int = 4) -> BlockJacobi:
    """Block Jacobi with dense inverses of the ``block_size`` x ``block_size`` diagonal blocks."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    rows, cols, vals, n = triplets(A)
    nb = -(-n // block_size)
    blocks = np.zeros((nb, block_size, block_size), vals.dtype)
    same = rows // block_size == cols // block_size
    blocks[rows[same] // block_size, rows[same] % block_size, cols[same] % block_size] = vals[same]
    pad = np.arange(n, nb * block_size)
    blocks[pad // block_size, pad % block_size, pad % block_size] = 1
    det_ok = np.isfinite(blocks).all(axis=(1, 2))
    if not det_ok.all():
        raise ValueError(f"block_jacobi: non-finite entries in diagonal block {int(np.flatnonzero(~det_ok)[0])}")
    cond = np.linalg.cond(blocks)
    bad = np.flatnonzero(~np.isfinite(cond) | (cond > 1 / np.finfo(vals.dtype).eps))
    if bad.size:
        raise ValueError(f"block_jacobi: diagonal block {int(bad[0])} (rows {int(bad[0]) * block_size}...) is "
                         "singular; try another block_size or preconditioner")
    return BlockJacobi(jnp.asarray(np.linalg.inv(blocks)), n)


@jax.jit
def _ilu0_levels(vals, cols, slot, diag, lookup, groups):
    nnz = vals.shape[0] - 1
    w = cols.shape[1]

    def level(l, vals):
        rows = groups[l]
        C, S, LK = cols[rows], slot[rows], lookup[rows]
        for p in range(w):
            k = C[:, p]
            is_l = k < rows
            piv = vals[diag[k]]
            lik = jnp.where(is_l, vals[S[:, p]] / jnp.where(is_l, piv, 1), vals[S[:, p]])
            vals = vals.at[S[:, p]].set(lik)
            upd = jnp.where(is_l[:, None] & (C > k[:, None]) & (LK[:, p, :] < nnz), lik[:, None] * vals[LK[:, p, :]], 0)
            vals = vals.at[S].add(-upd).at[nnz].set(0)
        return vals

    return lax.fori_loop(0, groups.shape[0], level, vals)


def _structure_arrays(p: PaddedRows):
    n = p.n
    cols = np.vstack([p.cols, np.full((1, p.cols.shape[1]), n)])
    slot = np.vstack([p.slot, np.full((1, p.slot.shape[1]), p.nnz)])
    diag = np.concatenate([p.diag, [p.nnz]])
    lookup = p.find(cols[:, :, None], cols[:, None, :])
    return cols, slot, diag, lookup


def ilu0(A: Any, *, triangular: str = "exact"):
    """Incomplete LU with zero fill-in, ``A ~ L U`` on ``A``'s sparsity pattern.

    Args:
      A: a concrete square matrix with a nonzero diagonal.
      triangular: ``"exact"`` (level-scheduled triangular solves) or ``"isai"`` (approximate inverses of
        the factors on their own pattern; each application is then two sparse products).
    """
    rows, cols, vals, n = triplets(A)
    p = padded_rows(rows, cols, vals, n)
    _check_finite_diag(np.where(p.diag < p.nnz, np.append(p.vals_flat, 0)[p.diag], 0), "ilu0")
    C, S, D, LK = _structure_arrays(p)
    gl = level_groups(p.cols, upper=False)
    gu = level_groups(p.cols, upper=True)
    v = jnp.asarray(np.append(p.vals_flat, 0))
    factored = _ilu0_levels(v, jnp.asarray(C, jnp.int32), jnp.asarray(S, jnp.int32), jnp.asarray(D, jnp.int32),
                            jnp.asarray(LK, jnp.int32), jnp.asarray(gl, jnp.int32))
    fd = np.asarray(factored)[p.diag]
    _check_finite_diag(fd, "ilu0 (a zero pivot appeared during factorisation)")
    ilu = ILU(factored, jnp.asarray(C, jnp.int32), jnp.asarray(S, jnp.int32), jnp.asarray(D, jnp.int32),
              jnp.asarray(gl, jnp.int32), jnp.asarray(gu, jnp.int32))
    if triangular == "exact":
        return ilu
    if triangular == "isai":
        fv = np.asarray(factored)
        lower = _isai(C, S, LK, fv, n, part="lower_unit")
        upper = _isai(C, S, LK, fv, n, part="upper")
        return Composed(lower, upper)
    raise ValueError(f"triangular must be 'exact' or 'isai', got {triangular!r}")


def ic0(A: Any, *, triangular: str = "exact"):
    """Incomplete Cholesky with zero fill-in for symmetric positive definite ``A``.

    Computed as ILU(0), whose factors of a symmetric matrix satisfy ``U = D L^T``, so ``A ~ L D L^T``:
    applying it costs the same as ILU(0) and it is symmetric (use it with CG).
    """
    rows, cols, vals, n = triplets(A)
    import scipy.sparse as sp

    S = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    asym = abs(S - S.T).max() if S.nnz else 0.0
    if asym > 1e3 * np.finfo(vals.dtype).eps * max(abs(S).max(), 1e-300):
        raise ValueError(f"ic0 needs a symmetric matrix (max |A - A^T| = {asym:.3g}); use ilu0 instead")
    return ilu0(S, triangular=triangular)


def _isai(C, S, LK, fv, n: int, *, part: str) -> PaddedSparse:
    """Incomplete sparse approximate inverse on the pattern of one part of the matrix (Ginkgo's ISAI).

    Row i of ``M`` solves ``T[P_i, P_i]^T m_i = e_i`` with ``P_i`` the pattern of row i of the part ``T``
    (``lower_unit``: strictly lower plus a unit diagonal; ``upper``: upper with diagonal; ``full``: all).
    """
    C, S, LK = C[:n], S[:n], LK[:n]
    w = C.shape[1]
    i = np.arange(n)[:, None]
    if part == "lower_unit":
        keep = C <= i
    elif part == "upper":
        keep = (C >= i) & (C < n)
    else:
        keep = C < n
    # Make sure the diagonal is in the pattern (ILU's L has an implicit unit diagonal).
    sub = np.where(keep[:, :, None] & keep[:, None, :], fv[LK], 0.0)  # fv ends with a 0 for padding
    if part == "lower_unit":
        eye = (C[:, :, None] == C[:, None, :]) & keep[:, :, None]
        sub = np.where(eye, 1.0, np.where(C[:, :, None] > C[:, None, :], sub, 0.0))
    elif part == "upper":
        sub = np.where(C[:, :, None] <= C[:, None, :], sub, 0.0)
    pad = ~keep
    sub = sub + np.where(pad[:, :, None] & np.eye(w, dtype=bool)[None], 1.0, 0.0)
    rhs = (C == i) & keep
    m = np.linalg.solve(np.swapaxes(sub, 1, 2), rhs.astype(sub.dtype)[..., None])[..., 0]
    m = np.where(keep, m, 0.0)
    cols = np.where(keep, C, n)
    return PaddedSparse(jnp.asarray(cols, jnp.int32), jnp.asarray(m))


def isai(A: Any) -> PaddedSparse:
    """A sparse approximate inverse of ``A`` on ``A``'s own pattern (general ISAI)."""
    rows, cols, vals, n = triplets(A)
    p = padded_rows(rows, cols, vals, n)
    _check_finite_diag(np.where(p.diag < p.nnz, np.append(p.vals_flat, 0)[p.diag], 0), "isai")
    C, S, _, LK = _structure_arrays(p)
    return _isai(C, S, LK, np.append(p.vals_flat, 0), n, part="full")


PRECONDITIONERS: dict[str, Callable[..., Any]] = {
    "jacobi": jacobi,
    "block_jacobi": block_jacobi,
    "ilu0": ilu0,
    "ic0": ic0,
    "isai": isai,
}


def make_preconditioner(A: Any, kind: Any, **options: Any):
    """Builds a preconditioner for ``A``: None, a name in ``PRECONDITIONERS``, or a callable (used as is).

    Options are passed to the builder (``block_size`` for block_jacobi, ``triangular`` for ilu0/ic0).
    """
    if kind is None:
        return Identity()
    if isinstance(kind, str):
        try:
            builder = PRECONDITIONERS[kind]
        except KeyError:
            raise ValueError(f"unknown preconditioner {kind!r}; choose one of {sorted(PRECONDITIONERS)}, None or a "
                             "callable") from None
        return builder(A, **options)
    if callable(kind):
        return kind
    raise TypeError(f"preconditioner must be None, one of {sorted(PRECONDITIONERS)} or a callable r -> M r "
                    f"(an approximation of A^-1 r), got {type(kind).__name__} {kind!r}")


def ilu0_reference(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense textbook ILU(0) (IKJ variant restricted to the pattern of ``A``): returns unit-lower L and U."""
    a = np.array(A, dtype=np.float64 if np.asarray(A).dtype != np.float32 else np.float32)
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
