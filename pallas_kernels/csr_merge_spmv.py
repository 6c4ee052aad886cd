"""Merge-path CSR SpMV kernel (Pallas, Triton lowering): load balanced over rows and nonzeros together.

Merrill and Garland, "Merge-based parallel sparse matrix-vector multiplication" (SC 2016): the product is a
merge of the row ends ``indptr[1:]`` with the nonzero indices ``0..nnz-1``; its ``m + nnz`` steps are cut
into equal pieces of ``chunk`` steps, one per program, so every program does the same amount of work whether
its rows are empty, short or one very long row (nonzero splitting, ``csr_balanced_spmv``, balances only the
nonzeros, so a run of empty rows still costs a program each row end it has to write).

The cut points are found by a binary search along each piece's cross diagonal ("merge-path search"), done for
all programs at once in XLA before the kernel (``merge_path_partition``). A program then owns the nonzeros
``[e0, e1)`` and the rows ``[r0, r1]``: it loads up to ``chunk`` entries, multiplies them with ``x``, reduces
them per row with a ``(chunk, chunk)`` one-hot product (exact, no prefix-sum cancellation) and adds each row's
sum to ``y`` with an atomic add, which combines the rows cut by a piece boundary. Atomics make the summation
order, and so the last bits, non-deterministic on GPU.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from ._tuning import array_device_kind, lookup, next_pow2


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Merge steps per program (a power of two) and Triton warps."""

    chunk: int = 64
    num_warps: int = 2

    @classmethod
    def get_default(cls, device_kind: str | None = None) -> "BlockSizes":
        return lookup(_TUNED, device_kind)


# Filled by `scripts/bench_spmv.py --sweep` on a GPU (none was available to the session that wrote this kernel):
# until then only the default, the nonzero-splitting kernel's 64 steps (a 4096-element one-hot tile).
_TUNED = {"default": BlockSizes(64, 2)}


def merge_path_partition(indptr: jax.Array, chunk: int, nnz: int) -> tuple[jax.Array, jax.Array]:
    """The merge-path coordinates (rows done, nonzeros done) where each piece of ``chunk`` steps starts.

    After ``d`` steps of the merge of the row ends ``indptr[1:]`` with the nonzeros ``0..nnz-1`` (a row end
    is taken first when both are due), ``i`` row ends and ``d - i`` nonzeros are done, ``i`` being the largest
    count with ``indptr[i] + i <= d`` (row ``i - 1`` ends within the first ``d`` steps); it is found for all
    pieces at once by a vectorised binary search. ``nnz`` is static (the length of the value array).
    Returns ``(rows, nnzs)`` of shape ``(programs + 1,)``, the last entry ``(m, nnz)``.
    """
    m = indptr.shape[0] - 1
    total = m + int(nnz)
    programs = (total + chunk - 1) // chunk
    d = jnp.minimum(jnp.arange(programs + 1, dtype=indptr.dtype) * chunk, total)
    ends = indptr[1:]
    lo = jnp.maximum(d - nnz, 0)
    hi = jnp.minimum(d, m)

    def step(_, bounds):
        lo, hi = bounds
        mid = (lo + hi + 1) // 2
        take = ends[jnp.maximum(mid - 1, 0)] + mid <= d  # the mid-th row end is reached within d steps
        ok = (mid == 0) | take
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

    iters = max(1, int(m).bit_length() + 1)
    rows, _ = jax.lax.fori_loop(0, iters, step, (lo, hi))
    return rows, d - rows


def _csr_merge_kernel(rstart_ref, estart_ref, eend_ref, data_ref, indices_ref, rows_ref, x_ref, y0_ref, y_ref,
                      *, chunk, num_rows):
    # inputs: rstart_ref, estart_ref, eend_ref (1,): this program's first row and nonzero range;
    #   data_ref, indices_ref, rows_ref (nnz,) and x_ref (n,), all ANY; y0_ref zeros, aliased
    # outputs: y_ref (num_rows + chunk,) accumulated with atomic adds
    del y0_ref
    r0, e0, e1 = rstart_ref[0], estart_ref[0], eend_ref[0]
    lane = jnp.arange(chunk, dtype=jnp.int32)
    mask = e0 + lane < e1
    idx = jnp.where(mask, e0 + lane, 0)
    prod = jnp.where(mask, data_ref[idx] * x_ref[indices_ref[idx]], 0)
    local = jnp.where(mask, rows_ref[idx] - r0, -1)  # this program's rows are r0 .. r0 + chunk - 1
    onehot = local[:, None] == lane[None, :]
    sums = jnp.sum(jnp.where(onehot, prod[:, None], 0), axis=0)
    used = jnp.sum(onehot.astype(jnp.int32), axis=0) > 0  # not jnp.any: Triton has no lowering of reduce_or
    target = jnp.where(used, r0 + lane, num_rows + lane)  # unused slots add zero to scratch entries
    plt.atomic_add(y_ref, target, sums.astype(y_ref.dtype))


@functools.partial(jax.jit, static_argnames=("num_rows", "block_sizes", "interpret"))
def _csr_merge_spmv(data, indices, indptr, row_ids, x, *, num_rows: int, block_sizes: BlockSizes,
                    interpret: bool):
    nnz = data.shape[0]
    if nnz == 0 or num_rows == 0:
        return jnp.zeros((num_rows,), x.dtype)
    chunk = next_pow2(block_sizes.chunk)
    rows, nzs = merge_path_partition(indptr.astype(jnp.int32), chunk, nnz)
    programs = rows.shape[0] - 1
    y0 = jnp.zeros((num_rows + chunk,), x.dtype)
    kernel = functools.partial(_csr_merge_kernel, chunk=chunk, num_rows=num_rows)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((num_rows + chunk,), x.dtype),
        grid=(programs,),
        in_specs=[pl.BlockSpec((1,), lambda i: (i,)), pl.BlockSpec((1,), lambda i: (i,)),
                  pl.BlockSpec((1,), lambda i: (i,))] + [pl.BlockSpec(memory_space=pl.ANY)] * 5,
        out_specs=pl.BlockSpec(memory_space=pl.ANY),
        input_output_aliases={7: 0},
        compiler_params=plt.CompilerParams(num_warps=block_sizes.num_warps),
        interpret=interpret,
    )(rows[:-1], nzs[:-1], nzs[1:], data, indices, row_ids.astype(jnp.int32), x, y0)
    return y[:num_rows]


def csr_merge_spmv(data, indices, indptr, row_ids, x, *, num_rows: int, block_sizes: BlockSizes | None = None,
                   interpret: bool = False):
    """``y = A x`` for CSR, balanced over rows and nonzeros (merge path).

    Args:
      data, indices: values and columns ``(nnz,)``.
      indptr: row starts ``(m + 1,)``.
      row_ids: row of each entry, sorted ``(nnz,)``.
      x: vector ``(n,)``.
      num_rows: rows of the matrix (``m``).
      block_sizes: merge steps per program and warps; default from the table of the device ``x`` lives on
        (the ``"default"`` entry when ``x`` is traced).
      interpret: run in the Pallas interpreter (CPU tests).
    """
    bs = block_sizes or BlockSizes.get_default(array_device_kind(x))
    return _csr_merge_spmv(data, indices, indptr, row_ids, x, num_rows=num_rows, block_sizes=bs,
                           interpret=interpret)


def csr_merge_spmv_reference(data, indices, indptr, x):
    """Plain-jnp oracle of :func:`csr_merge_spmv`: a segment sum over rows."""
    m = indptr.shape[0] - 1
    rows = jnp.repeat(jnp.arange(m), jnp.diff(indptr), total_repeat_length=data.shape[0])
    return jax.ops.segment_sum(data * x[indices], rows, num_segments=m)
