"""Load-balanced CSR SpMV kernel (Pallas, Triton lowering): nonzero splitting.

Every program takes the same number of nonzeros (``chunk``, a power of two) whatever the row
lengths, as Ginkgo's ``load_balance`` strategy does, so one very long row is spread over many
programs. Within a chunk the products are reduced per row exactly (no prefix-sum cancellation): the
entries get the rank of their row run (a cumulative sum of run ends) and a ``(chunk, chunk)``
one-hot reduction sums each run. Each run's sum is then added to ``y[row]`` with an atomic add, so
rows cut by chunk boundaries are combined across programs; unused run slots add zero to scratch
entries past the end of ``y``, so the targets of one atomic call are distinct (which the Pallas
interpreter needs too). Atomics make the summation order, and so the last bits, non-deterministic
on GPU.
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
    """Nonzeros per program (power of two) and Triton warps."""

    chunk: int = 64
    num_warps: int = 2

    @classmethod
    def get_default(cls, device_kind: str | None = None) -> "BlockSizes":
        return lookup(_TUNED, device_kind)


# Filled per device kind by `scripts/bench_spmv.py --sweep` on a GPU; none was available to the sessions that
# wrote this kernel, so only the default is here (64 keeps the one-hot tile at 4096).
_TUNED = {"default": BlockSizes(64, 2)}


def _csr_balanced_kernel(data_ref, indices_ref, rows_ref, x_ref, y0_ref, y_ref, *, chunk, nnz,
                         num_rows):
    # inputs: data_ref, indices_ref, rows_ref (nnz,) and x_ref (n,), all ANY; y0_ref zeros, aliased
    # outputs: y_ref (num_rows + chunk,) accumulated with atomic adds
    del y0_ref
    e0 = pl.program_id(0) * chunk
    lane = jnp.arange(chunk, dtype=jnp.int32)
    mask = e0 + lane < nnz
    # Index-array loads (not pl.ds slices) so the last, partial chunk never reads out of bounds.
    idx = jnp.where(mask, e0 + lane, 0)
    vals = data_ref[idx]
    cols = indices_ref[idx]
    rows = jnp.where(mask, rows_ref[idx], -1)
    next_mask = e0 + 1 + lane < nnz
    next_rows = jnp.where(next_mask, rows_ref[jnp.where(next_mask, e0 + 1 + lane, 0)], -1)
    prod = jnp.where(mask, vals * x_ref[cols], 0)
    # A run (entries of one row) ends where the next entry's row differs; its rank is the number
    # of run ends before it.
    ends = ((rows != next_rows) | (lane == chunk - 1)).astype(jnp.int32)
    rank = jnp.cumsum(ends) - ends
    onehot = rank[:, None] == lane[None, :]
    partial_sums = jnp.sum(jnp.where(onehot, prod[:, None], 0), axis=0)
    run_row = jnp.max(jnp.where(onehot, rows[:, None], -1), axis=0)
    target = jnp.where(run_row >= 0, run_row, num_rows + lane)
    plt.atomic_add(y_ref, target, partial_sums.astype(y_ref.dtype))


def csr_balanced_spmv(data, indices, row_ids, x, *, num_rows: int,
                      block_sizes: BlockSizes | None = None, interpret: bool = False):
    """``y = A x`` for CSR (given as sorted ``row_ids``) with equal nonzeros per program.

    Args:
      data, indices: values and columns ``(nnz,)``.
      row_ids: row of each entry, sorted ``(nnz,)``.
      x: vector ``(n,)``.
      num_rows: rows of the matrix.
      block_sizes: nonzeros per program and warps; default from the table of ``x``'s device kind.
      interpret: run in the Pallas interpreter (CPU tests).
    """
    bs = block_sizes or BlockSizes.get_default(array_device_kind(x))
    return _csr_balanced_spmv(data, indices, row_ids, x, num_rows=num_rows, block_sizes=bs, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("num_rows", "block_sizes", "interpret"))
def _csr_balanced_spmv(data, indices, row_ids, x, *, num_rows, block_sizes, interpret):
    bs = block_sizes
    nnz = data.shape[0]
    if nnz == 0 or num_rows == 0:
        return jnp.zeros((num_rows,), x.dtype)
    chunk = next_pow2(bs.chunk)
    y0 = jnp.zeros((num_rows + chunk,), x.dtype)
    kernel = functools.partial(_csr_balanced_kernel, chunk=chunk, nnz=nnz, num_rows=num_rows)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((num_rows + chunk,), x.dtype),
        grid=(-(-nnz // chunk),),
        in_specs=[pl.BlockSpec(memory_space=pl.ANY)] * 5,
        out_specs=pl.BlockSpec(memory_space=pl.ANY),
        input_output_aliases={4: 0},
        compiler_params=plt.CompilerParams(num_warps=bs.num_warps),
        interpret=interpret,
    )(data, indices, row_ids.astype(jnp.int32), x, y0)
    return y[:num_rows]


def csr_balanced_spmv_reference(data, indices, row_ids, x, *, num_rows: int):
    """Plain-jnp oracle of :func:`csr_balanced_spmv`."""
    return jax.ops.segment_sum(data * x[indices], row_ids, num_segments=num_rows)
