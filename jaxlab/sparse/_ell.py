"""Padded formats: ELL, SELL-P (sliced ELL, Ginkgo layout) and Hybrid (ELL + COO).

Padding entries hold value 0 and column -1 (Ginkgo's invalid index), so the dense and SciPy views
drop them and the products mask them (an ``inf`` in ``x`` cannot leak into a padded row).

XLA on CPU (measured, scripts/bench_spmv.py): ELL is stored column-major, ``(width, rows)``, and
the product is a loop unrolled over the width, ``y += data[j] * x[col[j]]``, which XLA fuses into
one vectorised pass over the rows; this beat SciPy's CSR on the stencil and random matrices, while
``sum(data * x[col], axis)`` over a 2-D gather was 4-20x slower. Wide ELL (more than 64 columns)
uses a ``fori_loop`` over the same rows instead of unrolling. SELL-P uses the same unrolled form
(masked at each slice's width) when its widest slice is narrow, else a sorted segment sum over
``slice_size``-wide chunks, which keeps the scatter vectorised; when all slices have the same width
(stencils, fixed row counts) the slices form one ELL block read with strided slices.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ._base import AbstractSparseMatrix, _gather, index_dtype, scale_rows
from ._csr import segment_matvec

_ELL_UNROLL_MAX = 64
_SELLP_UNROLL_MAX = 32
# SELL-P pads every slice to the widest one when that stores at most this factor more entries.
_SELLP_UNIFORM_WASTE = 1.25


def _masked_term(v, c, x):
    term = scale_rows(v, _gather(x, jnp.maximum(c, 0)))
    mask = (c >= 0).reshape(c.shape + (1,) * (x.ndim - 1))
    return jnp.where(mask, term, 0)


def _plain_term(v, c, x):
    return scale_rows(v, _gather(x, c))


def ell_matvec(vals, cols, x, dense_width: int = 0):
    """``y = sum_j vals[j] * x[cols[j]]`` for column-major ELL ``(width, rows)`` with -1 padding.

    The first ``dense_width`` columns hold no padding (every row is at least that long), so they
    skip the mask.
    """
    w, m = vals.shape
    if w == 0 or m == 0:
        return jnp.zeros((m,) + x.shape[1:], x.dtype)
    term = lambda j: (_plain_term if j < dense_width else _masked_term)(vals[j], cols[j], x)
    if w <= _ELL_UNROLL_MAX:
        y = term(0)
        for j in range(1, w):
            y = y + term(j)
        return y
    body = lambda j, y: y + _masked_term(vals[j], cols[j], x)
    return jax.lax.fori_loop(0, w, body, jnp.zeros((m,) + x.shape[1:], x.dtype))


def _ell_arrays(indptr, indices, values, m, width, itype):
    """Column-major ELL arrays (width, m) of the first ``width`` entries of each row."""
    lengths = np.diff(indptr)
    rows = np.repeat(np.arange(m), lengths)
    pos = np.arange(indptr[-1]) - indptr[rows]
    keep = pos < width
    vals = np.zeros((width, m), values.dtype)
    cols = np.full((width, m), -1, itype)
    vals[pos[keep], rows[keep]] = values[keep]
    cols[pos[keep], rows[keep]] = indices[keep]
    return vals, cols, ~keep


def _ell_coo_index(cols):
    w, m = cols.shape
    row = jnp.broadcast_to(jnp.arange(m, dtype=cols.dtype), (w, m)).reshape(-1)
    col = cols.reshape(-1)
    return row, col, col >= 0


@dataclasses.dataclass(frozen=True)
class ELLMeta:
    shape: tuple[int, int]
    nnz: int
    width: int
    min_row_length: int


class ELL(AbstractSparseMatrix):
    """ELLPACK matrix stored column-major (Ginkgo's layout): ``data``/``col`` of shape (width, m).

    ``from_scipy(S, width=None)``: the width is the longest row, or ``width`` if larger (e.g. a
    power of two for the GPU kernel).
    """

    _index_names = ("col",)
    format_name = "ell"

    @classmethod
    def _build(cls, indptr, indices, values, shape, *, width=None):
        m, n = (int(s) for s in shape)
        lengths = np.diff(indptr)
        w = max(int(lengths.max()) if m else 0, int(width or 0))
        itype = index_dtype(w * m + 1, n + 1)
        vals, cols, _ = _ell_arrays(indptr, indices, values, m, w, itype)
        meta = ELLMeta((m, n), int(indptr[-1]), w, int(lengths.min()) if m else 0)
        return cls._make(meta, jnp.asarray(vals), jnp.asarray(cols))

    @staticmethod
    def _coo_index(meta, idx):
        return _ell_coo_index(idx[0])

    @staticmethod
    def _matvec_xla(meta, data, idx, x):
        return ell_matvec(data, idx[0], x, meta.min_row_length)

    @staticmethod
    def _matvec_pallas(meta, data, idx, x, interpret, device_kind=None):
        from ._pallas import ell_pallas_matvec

        return ell_pallas_matvec(data, idx[0], x, interpret, device_kind)


@dataclasses.dataclass(frozen=True)
class SELLPMeta:
    shape: tuple[int, int]
    nnz: int
    slice_size: int
    stride_factor: int
    max_slice_width: int
    total_cols: int
    sorted_rows: bool = False
    groups: tuple[tuple[int, int], ...] = ()  # sorted rows: runs of (slice width, slices) in storage order


class SELLP(AbstractSparseMatrix):
    """Sliced ELLPACK with padding (SELL-P), in Ginkgo's layout.

    Rows are cut into slices of ``slice_size`` rows (default 64); each slice is an ELL block whose
    width is its longest row rounded up to a multiple of ``stride_factor`` (default 1). Slice ``s``
    stores column ``j`` of lane ``l`` at ``(slice_sets[s] + j) * slice_size + l``.
    ``uniform_width`` (default: automatic, when it stores at most 25% more) pads all slices to the
    widest, which lets the XLA product read them with strided slices instead of gathers (a
    deviation from Ginkgo, which never widens a slice). ``sort_rows=True`` orders the rows by length
    (longest first) before slicing, as SELL-C-sigma does with sigma = all rows (Kreutzer et al., SIAM J. Sci.
    Comput. 2014): the rows of a slice are then of nearly equal length, so skewed matrices store almost no
    padding; the product is computed in that order and gathered back (``inv_perm``).

    Attributes:
      data, col: ``(total_cols * slice_size,)`` values and columns (-1 for padding).
      slice_lengths: width of each slice; slice_sets: prefix sums of the widths;
      slice_ids: the slice of each stored column (``total_cols``), used by the segment form.
      row_perm, inv_perm: with ``sort_rows``, the original row of each sorted position and the sorted
        position of each original row (empty otherwise).
    """

    # On an H200 the kernel beat the XLA segment form (powerlaw_2M_d16 f32: 2.76 vs 3.16 ms).
    GPU_AUTO_PALLAS: ClassVar[bool] = True

    _index_names = ("col", "slice_lengths", "slice_sets", "slice_ids", "row_perm", "inv_perm")
    format_name = "sellp"

    @classmethod
    def _build(cls, indptr, indices, values, shape, *, slice_size=64, stride_factor=1,
               uniform_width=None, sort_rows=False):
        if slice_size < 1 or stride_factor < 1:
            raise ValueError(
                f"SELLP needs slice_size >= 1 and stride_factor >= 1, got {slice_size}, "
                f"{stride_factor}"
            )
        m, n = (int(s) for s in shape)
        perm = np.zeros(0, np.int64)
        if sort_rows and m:
            lengths0 = np.diff(indptr)
            perm = np.argsort(-lengths0, kind="stable")
            pos = np.repeat(indptr[perm], lengths0[perm]) + (
                np.arange(int(indptr[-1])) - np.repeat(np.cumsum(lengths0[perm]) - lengths0[perm], lengths0[perm]))
            indptr = np.concatenate([[0], np.cumsum(lengths0[perm])])
            indices, values = indices[pos], values[pos]
        S = int(slice_size)
        ns = -(-m // S)
        lengths = np.zeros(ns * S, np.int64)
        lengths[:m] = np.diff(indptr)
        widths = lengths.reshape(ns, S).max(axis=1) if ns else np.zeros(0, np.int64)
        widths = -(-widths // stride_factor) * stride_factor
        groups: tuple[tuple[int, int], ...] = ()
        if perm.size:
            # Sorted rows give non-increasing slice widths; rounding them up a ladder of four steps per
            # octave (<= 25% padding) leaves a few runs of equal width, each one dense block for XLA.
            widths = _ladder(widths)
            uniform_width = False
            change = np.flatnonzero(np.diff(widths)) + 1
            starts = np.concatenate([[0], change])
            counts = np.diff(np.concatenate([starts, [ns]]))
            groups = tuple((int(widths[a]), int(c)) for a, c in zip(starts, counts))
        if ns and uniform_width is None:
            uniform_width = ns * int(widths.max()) <= _SELLP_UNIFORM_WASTE * max(int(widths.sum()), 1)
        if ns and uniform_width:
            widths = np.full(ns, widths.max())
        sets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        total = int(sets[-1])
        itype = index_dtype(total * S + 1, n + 1, m + 1)
        rows = np.repeat(np.arange(m), np.diff(indptr))
        pos = np.arange(indptr[-1]) - indptr[rows]
        flat = (sets[rows // S] + pos) * S + rows % S
        vals = np.zeros(total * S, values.dtype)
        cols = np.full(total * S, -1, itype)
        vals[flat] = values
        cols[flat] = indices
        meta = SELLPMeta((m, n), int(indptr[-1]), S, int(stride_factor),
                         int(widths.max()) if ns else 0, total, bool(perm.size), groups)
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        return cls._make(meta, jnp.asarray(vals), jnp.asarray(cols),
                         jnp.asarray(widths, itype), jnp.asarray(sets, itype),
                         jnp.asarray(np.repeat(np.arange(ns), widths), itype),
                         jnp.asarray(perm, itype), jnp.asarray(inv, itype))

    @staticmethod
    def _coo_index(meta, idx):
        col, _, _, slice_ids, perm, _ = idx
        S = meta.slice_size
        pos = jnp.arange(col.shape[0], dtype=col.dtype)
        row = _gather(slice_ids, pos // S) * S + pos % S if col.shape[0] else pos
        valid = col >= 0
        if meta.sorted_rows:
            row = _gather(perm, jnp.where(valid, jnp.minimum(row, meta.shape[0] - 1), 0))
        return row, col, valid

    @staticmethod
    def _matvec_xla(meta, data, idx, x):
        y = SELLP._matvec_sorted_order(meta, data, idx, x)
        return _gather(y, idx[5]) if meta.sorted_rows else y

    @staticmethod
    def _matvec_sorted_order(meta, data, idx, x):
        col, lengths, sets, slice_ids, _, _ = idx
        m, S = meta.shape[0], meta.slice_size
        if meta.groups:
            return _grouped_matvec(meta.groups, S, data, col, x)[:m]
        if meta.total_cols == 0 or m == 0:
            return jnp.zeros((m,) + x.shape[1:], x.dtype)
        ns = lengths.shape[0]
        if meta.total_cols == ns * meta.max_slice_width and meta.max_slice_width <= _ELL_UNROLL_MAX:
            # Every slice has the same width (stencils, fixed row counts): the slices are one ELL
            # block, read with strided slices instead of gathers.
            w = meta.max_slice_width
            v = data.reshape(ns, w, S)
            c = col.reshape(ns, w, S)
            y = _masked_term(v[:, 0, :].reshape(-1), c[:, 0, :].reshape(-1), x)
            for j in range(1, w):
                y = y + _masked_term(v[:, j, :].reshape(-1), c[:, j, :].reshape(-1), x)
            return y[:m]
        if meta.max_slice_width <= _SELLP_UNROLL_MAX:
            r = jnp.arange(m, dtype=col.dtype)
            s = r // S
            base = _gather(sets, s) * S + r % S
            width = _gather(lengths, s)
            y = None
            for j in range(meta.max_slice_width):
                p = jnp.where(j < width, base + j * S, 0)
                c = jnp.where(j < width, _gather(col, p), -1)
                term = _masked_term(_gather(data, p), c, x)
                y = term if y is None else y + term
            return y
        prod = _masked_term(data, col, x)
        prod = prod.reshape((meta.total_cols, S) + x.shape[1:])
        ys = jax.ops.segment_sum(prod, slice_ids, num_segments=ns, indices_are_sorted=True)
        return ys.reshape((ns * S,) + x.shape[1:])[:m]

    @staticmethod
    def _matvec_pallas(meta, data, idx, x, interpret, device_kind=None):
        from ._pallas import sellp_pallas_matvec

        y = sellp_pallas_matvec(meta, data, idx, x, interpret, device_kind)
        return _gather(y, idx[5]) if y is not None and meta.sorted_rows else y


def _ladder(widths: np.ndarray) -> np.ndarray:
    """Rounds widths up to 1..8, then four steps per octave (10, 12, 14, 16, 20, 24, ...): <= 25% padding."""
    w = np.asarray(widths, np.int64)
    step = np.maximum(1, (1 << np.maximum(np.floor(np.log2(np.maximum(w, 1))).astype(np.int64) - 2, 0)))
    return np.where(w <= 8, w, -(-w // step) * step)


def _grouped_matvec(groups, S, data, col, x):
    """The product of sorted SELL-P slices, one dense ``(slices, width, S)`` block per run of equal widths.

    A reduction over each block's width axis: no scatter, and every block is read contiguously.
    """
    outs, start = [], 0
    for width, count in groups:
        size = width * count * S
        if width == 0:
            outs.append(jnp.zeros((count * S,) + x.shape[1:], x.dtype))
            continue
        v = jax.lax.slice_in_dim(data, start, start + size).reshape(count, width, S)
        c = jax.lax.slice_in_dim(col, start, start + size).reshape(count, width, S)
        outs.append(jnp.sum(_masked_term(v, c, x), axis=1).reshape((count * S,) + x.shape[1:]))
        start += size
    return jnp.concatenate(outs, axis=0) if len(outs) > 1 else outs[0]


def hybrid_ell_width(row_lengths, percent: float = 1.0 / 3.0, ratio: float = 0.001) -> int:
    """Ginkgo's ``automatic`` Hybrid split (``imbalance_bounded_limit(1/3, 0.001)``).

    The ELL width is the row length at the ``percent`` quantile of the sorted row lengths,
    bounded by ``ratio * rows``; longer rows spill their remaining entries into the COO part.
    (So matrices with fewer than 1000 rows go entirely to COO, as in Ginkgo.)
    """
    m = len(row_lengths)
    if m == 0:
        return 0
    srt = np.sort(np.asarray(row_lengths))
    width = int(srt[min(int(m * percent), m - 1)])
    return min(width, int(m * ratio))


@dataclasses.dataclass(frozen=True)
class HybridMeta:
    shape: tuple[int, int]
    nnz: int
    ell_width: int
    coo_nnz: int
    min_row_length: int


class Hybrid(AbstractSparseMatrix):
    """ELL for the first ``ell_width`` entries of every row plus COO for the rest.

    ``data`` is one leaf: the ELL values ``(ell_width * m,)`` (column-major) followed by the COO
    values. ``ell_col`` is ``(ell_width, m)``; ``coo_row``/``coo_col`` are sorted by row.
    ``from_scipy(S, ell_width=None)`` splits automatically (:func:`hybrid_ell_width`).
    """

    _index_names = ("ell_col", "coo_row", "coo_col")
    format_name = "hybrid"

    @classmethod
    def _build(cls, indptr, indices, values, shape, *, ell_width=None):
        m, n = (int(s) for s in shape)
        lengths = np.diff(indptr)
        w = hybrid_ell_width(lengths) if ell_width is None else int(ell_width)
        itype = index_dtype(w * m + 1, int(indptr[-1]) + 1, n + 1, m + 1)
        vals, cols, spill = _ell_arrays(indptr, indices, values, m, w, itype)
        rows = np.repeat(np.arange(m, dtype=itype), lengths)
        meta = HybridMeta((m, n), int(indptr[-1]), w, int(spill.sum()),
                          int(lengths.min()) if m else 0)
        data = np.concatenate([vals.reshape(-1), values[spill]])
        return cls._make(meta, jnp.asarray(data), jnp.asarray(cols), jnp.asarray(rows[spill]),
                         jnp.asarray(indices[spill].astype(itype)))

    @staticmethod
    def _coo_index(meta, idx):
        ell_col, coo_row, coo_col = idx
        r, c, v = _ell_coo_index(ell_col)
        return (jnp.concatenate([r, coo_row.astype(r.dtype)]),
                jnp.concatenate([c, coo_col.astype(c.dtype)]),
                jnp.concatenate([v, jnp.ones(coo_row.shape, bool)]))

    @staticmethod
    def _split(meta, data):
        k = meta.ell_width * meta.shape[0]
        if meta.coo_nnz == 0:  # no slice op: keeps the ELL loop one plain fusion over `data`
            return data.reshape(meta.ell_width, meta.shape[0]), data[:0]
        return data[:k].reshape(meta.ell_width, meta.shape[0]), data[k:]

    @staticmethod
    def _matvec_xla(meta, data, idx, x):
        ell_col, coo_row, coo_col = idx
        ev, cv = Hybrid._split(meta, data)
        y = ell_matvec(ev, ell_col, x, meta.min_row_length)
        if meta.coo_nnz:
            y = y + segment_matvec(cv, coo_row, coo_col, x, meta.shape[0])
        return y

    @staticmethod
    def _matvec_pallas(meta, data, idx, x, interpret, device_kind=None):
        from ._pallas import ell_pallas_matvec

        ell_col, coo_row, coo_col = idx
        ev, cv = Hybrid._split(meta, data)
        y = ell_pallas_matvec(ev, ell_col, x, interpret, device_kind)
        if y is None:
            return None
        if meta.coo_nnz:
            y = y + segment_matvec(cv, coo_row, coo_col, x, meta.shape[0])
        return y
