"""CSR and COO formats.

CSR stores ``data``, ``indices`` (column of each entry), ``indptr`` (row starts) and ``row_ids``
(row of each entry, derived from ``indptr`` once at construction so that the XLA segment-sum,
the transposed product and the load-balanced GPU kernel never recompute it). The GPU strategy is
chosen at construction from the row statistics, as Ginkgo's ``automatical`` does on NVIDIA:
``load_balance`` (nonzero splitting) when nnz > 1e6 or the longest row exceeds 1024 entries,
otherwise ``classical`` (rows to sub-groups sized by the longest row); ``strategy="merge_path"`` picks the
merge-path kernel (balanced over rows and nonzeros together; its GPU timing is pending).

XLA on CPU (measured, see scripts/bench_spmv.py): for short, even rows the fastest form is a loop
unrolled over the position ``j`` within a row (``y += data[indptr[:-1]+j] * x[indices[...]]``,
masked at the row end), which vectorises over rows; for long or very uneven rows a sorted
``segment_sum`` of ``data * x[indices]``. With several right-hand sides (``x`` of shape ``(n, k)``) the
unrolled form is kept up to rows of 128 entries and 8x padding (:func:`csr_unrolled`), because there the
segment_sum is a slow scatter of whole rows (scripts/bench_csr_multirhs.py).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._base import AbstractSparseMatrix, _gather, index_dtype, scale_rows

# XLA's unrolled CSR form is used when the longest row has at most this many entries and the
# padded work (rows x longest row) is at most this factor above nnz.
_UNROLL_MAX_WIDTH = 32
_UNROLL_MAX_WASTE = 2.0
# With several right-hand sides the other form, segment_sum, is a scatter-add of (nnz, k) rows, which XLA
# runs 10-30x slower per entry than the unrolled form's gathers (a 512 x 128 matrix at 95% sparsity times
# 3072 columns: 51 ms against 1.5 ms; scripts/bench_csr_multirhs.py), so the unrolled form is kept up to
# much longer rows and more padding.
_UNROLL_MAX_WIDTH_MULTI = 128
_UNROLL_MAX_WASTE_MULTI = 8.0
_STRATEGIES = ("auto", "classical", "load_balance", "merge_path")


def _bcast_mask(mask, like):
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def segment_matvec(data, rows, cols, x, num_rows):
    """``y[r] = sum data[e] x[cols[e]]`` over entries with ``rows[e] == r`` (rows sorted)."""
    prod = scale_rows(data, _gather(x, cols))
    return jax.ops.segment_sum(prod, rows, num_segments=num_rows, indices_are_sorted=True)


def csr_unrolled(rows: int, nnz: int, max_row_length: int, multi_rhs: bool) -> bool:
    """Whether the XLA CSR product runs unrolled over the position in a row (else as a segment_sum).

    Examples:
      >>> csr_unrolled(512, 3277, 14, multi_rhs=False)  # 2.2x padding: segment_sum for one vector
      False
      >>> csr_unrolled(512, 3277, 14, multi_rhs=True)   # but unrolled for a matrix of right-hand sides
      True
    """
    if multi_rhs:
        return max_row_length <= _UNROLL_MAX_WIDTH_MULTI and max_row_length * rows <= _UNROLL_MAX_WASTE_MULTI * nnz
    return max_row_length <= _UNROLL_MAX_WIDTH and max_row_length * rows <= _UNROLL_MAX_WASTE * nnz


def choose_csr_strategy(nnz: int, max_row_length: int) -> str:
    """Ginkgo's automatic CSR strategy on NVIDIA: nonzero splitting for big or skewed matrices."""
    return "load_balance" if nnz > 1_000_000 or max_row_length > 1024 else "classical"


_CUSPARSE_DTYPES = tuple(jnp.dtype(t) for t in ("float32", "float64", "complex64", "complex128"))


@functools.cache
def _cusparse_available() -> bool:
    """Whether jaxlib was built with JAX's cuSPARSE bindings (a CUDA plugin is installed)."""
    try:
        from jax.experimental.sparse import _lowerings

        return _lowerings._get_module("cu") is not None
    except Exception:  # noqa: BLE001  (private module moved: use the XLA form)
        return False


@dataclasses.dataclass(frozen=True)
class CSRMeta:
    shape: tuple[int, int]
    nnz: int
    max_row_length: int
    strategy: str  # GPU kernel: "classical", "load_balance" (nonzero splitting) or "merge_path"
    min_row_length: int = 0


class CSR(AbstractSparseMatrix):
    """Compressed sparse row matrix.

    Attributes:
      data: values, shape ``(nnz,)``.
      indices: column of each value, ``(nnz,)`` int32 (int64 for huge matrices).
      indptr: row starts, ``(m + 1,)``.
      row_ids: row of each value, ``(nnz,)``.
      meta: shape, nnz, longest row and the GPU strategy (static).

    Examples:
      >>> import numpy as np, scipy.sparse as sp, jaxlab.sparse as jsparse
      >>> A = jsparse.CSR.from_scipy(sp.csr_matrix(np.array([[1.0, 0.0], [2.0, 3.0]])))
      >>> A.shape, A.nnz
      ((2, 2), 3)
      >>> print(A @ np.ones(2))
      [1. 5.]
    """

    _index_names = ("indices", "indptr", "row_ids")
    format_name = "csr"

    def __init__(self, data, indices, indptr, *, shape, strategy: str = "auto"):
        """Builds a CSR matrix from its three arrays (host values; use from_scipy for SciPy)."""
        indptr = np.asarray(indptr)
        if indptr.ndim != 1 or indptr.shape[0] != shape[0] + 1:
            raise ValueError(f"indptr must have shape ({shape[0] + 1},), got {indptr.shape}")
        built = self._build(indptr, np.asarray(indices), np.asarray(data), shape, strategy=strategy)
        self.meta, self.data = built.meta, built.data
        self.indices, self.indptr, self.row_ids = built.index_arrays

    @classmethod
    def _build(cls, indptr, indices, values, shape, *, strategy="auto"):
        if strategy not in _STRATEGIES:
            raise ValueError(f"unknown CSR strategy {strategy!r}; choose one of {_STRATEGIES}")
        m, n = (int(s) for s in shape)
        nnz = int(indptr[-1])
        if indices.shape != (nnz,) or values.shape != (nnz,):
            raise ValueError(
                f"CSR: indptr[-1] = {nnz} but indices/data have shapes {indices.shape}/{values.shape}"
            )
        itype = index_dtype(nnz + 1, m + 1, n + 1)
        lengths = np.diff(indptr)
        max_len = int(lengths.max()) if m else 0
        if strategy == "auto":
            strategy = choose_csr_strategy(nnz, max_len)
        row_ids = np.repeat(np.arange(m, dtype=itype), lengths)
        meta = CSRMeta((m, n), nnz, max_len, strategy, int(lengths.min()) if m else 0)
        return cls._make(meta, jnp.asarray(values), jnp.asarray(indices, itype),
                         jnp.asarray(indptr, itype), jnp.asarray(row_ids))

    @staticmethod
    def _coo_index(meta, idx):
        indices, _, row_ids = idx
        return row_ids, indices, jnp.ones(indices.shape, bool)

    @staticmethod
    def _matvec_xla(meta, data, idx, x):
        indices, indptr, row_ids = idx
        m = meta.shape[0]
        w = meta.max_row_length
        if meta.nnz == 0 or m == 0:
            return jnp.zeros((m,) + x.shape[1:], x.dtype)
        if csr_unrolled(m, meta.nnz, w, x.ndim > 1 and x.shape[-1] > 1):
            start, end = indptr[:-1], indptr[1:]
            y = None
            for j in range(w):
                p = start + j
                if j < meta.min_row_length:  # every row has an entry j: no mask, no clamp
                    term = scale_rows(_gather(data, p), _gather(x, _gather(indices, p)))
                else:
                    mask = p < end
                    p = jnp.minimum(p, meta.nnz - 1)
                    term = scale_rows(_gather(data, p), _gather(x, _gather(indices, p)))
                    term = jnp.where(_bcast_mask(mask, term), term, 0)
                y = term if y is None else y + term
            return y
        return segment_matvec(data, row_ids, indices, x, m)

    @staticmethod
    def _matvec_gpu_library(meta, data, idx, x):
        # cuSPARSE through jax.experimental.sparse: on an H200 it ran powerlaw_2M_d16 in 0.28 ms where
        # our XLA form took 1.77 ms and the CSR kernels 2.6 ms; on stencils 0.12-0.14 ms (XLA: 0.125).
        indices, indptr, _ = idx
        if (data.dtype not in _CUSPARSE_DTYPES or indices.dtype != jnp.int32 or meta.nnz == 0
                or x.ndim > 2 or not _cusparse_available()):
            return None
        from jax.experimental.sparse import csr as jcsr

        mat = jcsr.CSR((data, indices, indptr), shape=meta.shape)
        return jcsr.csr_matvec(mat, x) if x.ndim == 1 else jcsr.csr_matmat(mat, x)

    @staticmethod
    def _matvec_pallas(meta, data, idx, x, interpret, device_kind=None):
        from ._pallas import csr_pallas_matvec

        return csr_pallas_matvec(meta, data, idx, x, interpret, device_kind)


@dataclasses.dataclass(frozen=True)
class COOMeta:
    shape: tuple[int, int]
    nnz: int


class COO(AbstractSparseMatrix):
    """Coordinate matrix with entries sorted by row, then column.

    Attributes:
      data: values ``(nnz,)``; row: row of each value; col: column of each value.

    The XLA product is a sorted ``segment_sum`` of ``data * x[col]``.
    """

    _index_names = ("row", "col")
    format_name = "coo"

    def __init__(self, data, row, col, *, shape):
        """Builds a COO matrix from host arrays (duplicates are summed, entries sorted)."""
        import scipy.sparse as sp

        S = sp.coo_matrix((np.asarray(data), (np.asarray(row), np.asarray(col))), shape=shape)
        built = self.from_scipy(S)
        self.meta, self.data = built.meta, built.data
        self.row, self.col = built.index_arrays

    @classmethod
    def _build(cls, indptr, indices, values, shape):
        m, n = (int(s) for s in shape)
        nnz = int(indptr[-1])
        itype = index_dtype(nnz + 1, m + 1, n + 1)
        row = np.repeat(np.arange(m, dtype=itype), np.diff(indptr))
        return cls._make(COOMeta((m, n), nnz), jnp.asarray(values), jnp.asarray(row),
                         jnp.asarray(indices, itype))

    @staticmethod
    def _coo_index(meta, idx):
        row, col = idx
        return row, col, jnp.ones(row.shape, bool)

    @staticmethod
    def _matvec_xla(meta, data, idx, x):
        row, col = idx
        return segment_matvec(data, row, col, x, meta.shape[0])
