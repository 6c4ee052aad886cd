"""The common base of the sparse formats: pytree plumbing, conversions, dense and diagonal views.

Every format stores its values in one array leaf ``data`` (so gradients with respect to the values
and vmap over values of matrices sharing a pattern work), its index arrays as further leaves, and
its shape and construction-time choices (strategy, widths, slice size) in a frozen ``meta``
dataclass that is static pytree data. A format class provides, for its own layout:

* ``_build(indptr, indices, values, shape, **options)``: host-side construction from canonical CSR;
* ``_coo_index(meta, idx)``: row, column and validity of every entry of ``data.ravel()``;
* ``_matvec_xla(meta, data, idx, x)``: the fastest XLA product we measured for the layout;
* ``_matvec_pallas(meta, data, idx, x, interpret, device_kind)``: its GPU kernel (block sizes from the table
  of ``device_kind``), or None;
* ``_matvec_gpu_library(meta, data, idx, x)``: a vendor-library product that ``impl="auto"`` prefers
  on a GPU, or None;
* ``GPU_AUTO_PALLAS``: whether ``impl="auto"`` uses that kernel on a GPU (where it measured faster
  than the XLA product on an H200, ``bench/results/sparse-gpu-*.json``).

The transposed product, the sampled product (gradient of the values), the dense and SciPy views
and the diagonal are derived here from ``_coo_index``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Inexact

from ._matvec import bind_matvec

_INT32_MAX = np.iinfo(np.int32).max


def index_dtype(*sizes: int) -> np.dtype:
    """int32, or int64 when a size reaches 2**31 (then x64 must be enabled)."""
    if max((int(s) for s in sizes), default=0) < _INT32_MAX:
        return np.dtype(np.int32)
    if not jax.config.read("jax_enable_x64"):
        raise ValueError(
            f"the matrix needs 64-bit indices (a size reaches {max(sizes)} >= 2**31) but x64 is "
            "disabled; call jax.config.update('jax_enable_x64', True) first."
        )
    return np.dtype(np.int64)


def canonical_csr(S: Any, dtype: Any = None) -> sp.csr_matrix:
    """SciPy CSR with sorted indices and summed duplicates (explicit zeros are kept).

    A CSR matrix that is already canonical and of the asked dtype is returned as is (no copy; it is never
    modified); anything else is converted into a new matrix.
    """
    M: Any = S if sp.issparse(S) else sp.csr_matrix(np.asarray(S))
    if dtype is None and M.dtype.kind not in "fc":
        dtype = np.float64
    if M.format == "csr" and M.has_canonical_format and (dtype is None or M.dtype == np.dtype(dtype)):
        return M
    out: Any = sp.csr_matrix(M, dtype=dtype, copy=True)
    out.sum_duplicates()
    out.sort_indices()
    return out


def _gather(x, idx):
    return x.at[idx].get(mode="promise_in_bounds")


def scale_rows(v, g):
    """``v[..., None] * g`` broadcasting the values over the right-hand sides of ``g``."""
    return v.reshape(v.shape + (1,) * (g.ndim - v.ndim)) * g


class AbstractSparseMatrix:
    """Base of CSR, COO, ELL, SELLP, Hybrid and Dense (a pytree: values and indices are leaves)."""

    _index_names: ClassVar[tuple[str, ...]] = ()
    format_name: ClassVar[str] = ""

    data: jax.Array
    meta: Any

    # -- pytree ---------------------------------------------------------------------------------
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls._flatten, cls._unflatten)

    def _flatten(self):
        return (self.data, *self.index_arrays), self.meta

    @classmethod
    def _unflatten(cls, meta, leaves):
        obj = object.__new__(cls)
        obj.meta = meta
        obj.data = leaves[0]
        for name, leaf in zip(cls._index_names, leaves[1:]):
            setattr(obj, name, leaf)
        return obj

    @classmethod
    def _make(cls, meta, data, *idx):
        return cls._unflatten(meta, (data, *idx))

    @property
    def index_arrays(self) -> tuple[Any, ...]:
        """The index leaves: integer arrays, or whatever JAX puts in a pytree's place (tracers, float0
        cotangents of ``grad(..., allow_int=True)``)."""
        return tuple(getattr(self, name) for name in self._index_names)

    # -- basic properties -----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.meta.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nnz(self) -> int:
        """Number of stored entries (padding excluded)."""
        return int(self.meta.nnz)

    @property
    def T(self) -> "Transposed":
        return Transposed(self)

    def __matmul__(self, x):
        return bind_matvec(self, x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, nnz={self.meta.nnz})"

    def with_data(self, data) -> "AbstractSparseMatrix":
        """The same pattern with new values ``data`` (same shape as ``self.data``)."""
        data = jnp.asarray(data)
        if data.shape != self.data.shape:
            raise ValueError(
                f"with_data: new values have shape {data.shape}, the pattern stores "
                f"{self.data.shape}; vmap over a leading batch axis instead of passing it here."
            )
        return self._make(self.meta, data, *self.index_arrays)

    def astype(self, dtype) -> "AbstractSparseMatrix":
        """The same matrix with values cast to ``dtype``."""
        return self._make(self.meta, jnp.asarray(self.data).astype(dtype), *self.index_arrays)

    # -- layout hooks (each format defines the first three; see the module docstring) -----------
    @classmethod
    def _build(cls, indptr: Any, indices: Any, values: Any, shape: Any, **options: Any) -> "AbstractSparseMatrix":
        raise TypeError(f"{cls.__name__} is abstract: use CSR, COO, ELL, SELLP, Hybrid or Dense")

    @staticmethod
    def _coo_index(meta: Any, idx: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array, jax.Array]:
        raise TypeError("abstract sparse format: use CSR, COO, ELL, SELLP, Hybrid or Dense")

    @staticmethod
    def _matvec_xla(meta: Any, data: jax.Array, idx: tuple[jax.Array, ...], x: jax.Array) -> jax.Array:
        raise TypeError("abstract sparse format: use CSR, COO, ELL, SELLP, Hybrid or Dense")

    @staticmethod
    def _matvec_pallas(meta: Any, data: jax.Array, idx: tuple[jax.Array, ...], x: jax.Array, interpret: bool,
                       device_kind: str | None = None) -> jax.Array | None:
        return None

    GPU_AUTO_PALLAS: ClassVar[bool] = False

    @staticmethod
    def _matvec_gpu_library(meta: Any, data: jax.Array, idx: tuple[jax.Array, ...],
                            x: jax.Array) -> jax.Array | None:
        """A vendor-library product for ``impl="auto"`` on a GPU (cuSPARSE through JAX), or None."""
        return None

    @classmethod
    def _rmatvec_xla(cls, meta, data, idx, x):
        """``A^T x`` by a scatter-add over the stored entries (padding contributes zero)."""
        row, col, valid = cls._coo_index(meta, idx)
        v = jnp.where(valid, data.reshape(-1), 0)
        row = jnp.clip(row, 0, meta.shape[0] - 1)
        col = jnp.clip(col, 0, meta.shape[1] - 1)
        prod = scale_rows(v, _gather(x, row))
        return jax.ops.segment_sum(prod, col, num_segments=meta.shape[1])

    @classmethod
    def _sampled(cls, meta, data_shape, idx, ct, x, transpose):
        """Gradient of ``<ct, A x>`` with respect to the stored values, in ``data``'s layout."""
        row, col, valid = cls._coo_index(meta, idx)
        if transpose:
            row, col = col, row
        row = jnp.clip(row, 0, ct.shape[0] - 1)
        col = jnp.clip(col, 0, x.shape[0] - 1)
        g = jnp.sum(_gather(ct, row) * _gather(x, col), axis=-1)
        return jnp.where(valid, g, 0).reshape(data_shape)

    # -- conversions ----------------------------------------------------------------------------
    @classmethod
    def from_scipy(cls, S, *, dtype=None, **options) -> "AbstractSparseMatrix":
        """Builds the format from a SciPy sparse matrix (or a dense NumPy array), outside jit.

        Args:
          S: any ``scipy.sparse`` matrix/array or 2-D NumPy array. Duplicates are summed.
          dtype: value dtype (default: ``S``'s floating dtype).
          **options: format options (e.g. ``slice_size`` for SELLP, ``ell_width`` for Hybrid,
            ``strategy`` for CSR).
        """
        S = canonical_csr(S, dtype)
        return cls._build(S.indptr, S.indices, S.data, S.shape, **options)

    @classmethod
    def from_bcoo(cls, B, **options) -> "AbstractSparseMatrix":
        """Builds the format from a 2-D ``jax.experimental.sparse.BCOO`` (no batch/dense dims)."""
        if B.ndim != 2 or B.n_batch or B.n_dense:
            raise ValueError(
                f"from_bcoo needs a 2-D BCOO without batch or dense dimensions, got shape "
                f"{B.shape}, n_batch={B.n_batch}, n_dense={B.n_dense}; call B.update_layout(...)"
            )
        ind = np.asarray(B.indices)
        vals = np.asarray(B.data)
        keep = (ind[:, 0] < B.shape[0]) & (ind[:, 1] < B.shape[1])  # BCOO pads with out-of-range
        S = sp.coo_matrix((vals[keep], (ind[keep, 0], ind[keep, 1])), shape=B.shape)
        return cls.from_scipy(S, dtype=vals.dtype, **options)

    def _coo_numpy(self):
        row, col, valid, vals = (np.asarray(a) for a in _coo_jit(self))
        valid = valid.astype(bool)
        return row[valid], col[valid], vals[valid]

    def to_scipy(self) -> sp.csr_matrix:
        """The matrix as a SciPy CSR matrix (host copy; padding dropped, explicit zeros kept)."""
        row, col, vals = self._coo_numpy()
        S = sp.csr_matrix((vals, (row, col)), shape=self.shape)
        S.sort_indices()
        return S

    def todense(self) -> Inexact[Array, "m n"]:
        """The dense matrix (differentiable with respect to ``data``)."""
        return _todense_jit(self)

    def diagonal(self) -> Inexact[Array, " d"]:
        """The main diagonal, shape ``(min(m, n),)`` (differentiable with respect to ``data``)."""
        return _diagonal_jit(self)


# Jitted once per pattern: op-by-op dispatch would compile a dozen tiny kernels per call.
@jax.jit
def _coo_jit(A):
    row, col, valid = A._coo_index(A.meta, A.index_arrays)
    return row, col, valid, A.data.reshape(-1)


@jax.jit
def _todense_jit(A):
    row, col, valid = A._coo_index(A.meta, A.index_arrays)
    v = jnp.where(valid, A.data.reshape(-1), 0)
    row = jnp.clip(row, 0, A.shape[0] - 1)
    col = jnp.clip(col, 0, A.shape[1] - 1)
    return jnp.zeros(A.shape, A.dtype).at[row, col].add(v)


@jax.jit
def _diagonal_jit(A):
    row, col, valid = A._coo_index(A.meta, A.index_arrays)
    k = min(A.shape)
    on = valid & (row == col)
    v = jnp.where(on, A.data.reshape(-1), 0)
    return jax.ops.segment_sum(v, jnp.where(on, row, 0), num_segments=k)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Transposed:
    """The lazy transpose ``A.T`` of a sparse matrix: ``A.T @ x`` is the transposed product."""

    matrix: AbstractSparseMatrix

    def tree_flatten(self):
        return (self.matrix,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux
        return cls(*children)

    @property
    def shape(self) -> tuple[int, int]:
        m, n = self.matrix.shape
        return (n, m)

    @property
    def dtype(self):
        return self.matrix.dtype

    @property
    def T(self) -> AbstractSparseMatrix:
        return self.matrix

    def __matmul__(self, x):
        return bind_matvec(self.matrix, x, transpose=True)

    def todense(self) -> Inexact[Array, "m n"]:
        return self.matrix.todense().T

    def to_scipy(self) -> sp.csr_matrix:
        return self.matrix.to_scipy().T.tocsr()
