"""CSR "vector" SpMV kernel (Pallas, Triton lowering), after Ginkgo's ``classical`` strategy.

Each row is handled by a sub-group of ``subgroup`` lanes, sized by the longest row (the largest of
32, 16, 8, 4, 2, 1 not above it), so short rows do not idle a full warp. A program owns
``block_rows`` rows, i.e. a ``(block_rows, subgroup)`` tile; it walks the rows in steps of
``subgroup`` entries (as many steps as its longest row needs), gathers the values, columns and
``x`` with masked loads, and reduces over the lanes at the end.
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
    """Elements per program tile (``block_rows * subgroup``) and Triton warps."""

    tile: int = 1024
    num_warps: int = 4

    @classmethod
    def get_default(cls, device_kind: str | None = None) -> "BlockSizes":
        return lookup(_TUNED, device_kind)


# Filled per device kind by `scripts/bench_spmv.py --sweep` on a GPU; none was available to the sessions that
# wrote this kernel, so only the default (1024 lanes ~ Ginkgo's 128-thread blocks, oversubscribed) is here.
_TUNED = {"default": BlockSizes(1024, 4)}


def subgroup_size(max_row_length: int) -> int:
    """Largest of 32, 16, 8, 4, 2, 1 not above ``max_row_length`` (Ginkgo's classical)."""
    for s in (32, 16, 8, 4, 2):
        if max_row_length >= s:
            return s
    return 1


def _csr_vector_kernel(indptr_ref, data_ref, indices_ref, x_ref, y_ref, *, subgroup, num_rows,
                       block_rows):
    # inputs: indptr_ref (m + 1,), data_ref, indices_ref (nnz,), x_ref (n,), all un-blocked (ANY)
    # outputs: y_ref (block_rows,)
    r0 = pl.program_id(0) * block_rows
    in_range = r0 + jnp.arange(block_rows) < num_rows
    start = plt.load(indptr_ref.at[pl.ds(r0, block_rows)], mask=in_range, other=0)
    end = plt.load(indptr_ref.at[pl.ds(r0 + 1, block_rows)], mask=in_range, other=0)
    lanes = jnp.arange(subgroup, dtype=start.dtype)
    steps = (jnp.max(end - start) + subgroup - 1) // subgroup

    def body(t, acc):
        p = start[:, None] + t * subgroup + lanes[None, :]
        mask = p < end[:, None]
        p = jnp.where(mask, p, 0)
        cols = indices_ref[p]
        vals = data_ref[p]
        return acc + jnp.where(mask, vals * x_ref[cols], 0)

    acc = jax.lax.fori_loop(0, steps, body, jnp.zeros((start.shape[0], subgroup), y_ref.dtype))
    y_ref[...] = jnp.sum(acc, axis=1)


def csr_vector_spmv(data, indices, indptr, x, *, subgroup: int = 32,
                    block_sizes: BlockSizes | None = None, interpret: bool = False):
    """``y = A x`` for CSR with one ``subgroup``-lane sub-group per row.

    Args:
      data, indices: values and columns ``(nnz,)``.
      indptr: row starts ``(m + 1,)``.
      x: vector ``(n,)``.
      subgroup: lanes per row, a power of two <= 32 (see :func:`subgroup_size`).
      block_sizes: tile size and warps; default from the table of ``x``'s device kind.
      interpret: run in the Pallas interpreter (CPU tests).
    """
    if subgroup < 1 or subgroup > 32 or subgroup & (subgroup - 1):
        raise ValueError(f"subgroup must be a power of two in [1, 32], got {subgroup}")
    bs = block_sizes or BlockSizes.get_default(array_device_kind(x))
    return _csr_vector_spmv(data, indices, indptr, x, subgroup=subgroup, block_sizes=bs, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("subgroup", "block_sizes", "interpret"))
def _csr_vector_spmv(data, indices, indptr, x, *, subgroup, block_sizes, interpret):
    bs = block_sizes
    m = indptr.shape[0] - 1
    if m == 0 or data.shape[0] == 0 or x.shape[0] == 0:
        return jnp.zeros((m,), x.dtype)
    br = min(max(1, next_pow2(bs.tile) // subgroup), next_pow2(m))
    mp = -(-m // br) * br
    kernel = functools.partial(_csr_vector_kernel, subgroup=subgroup, num_rows=m, block_rows=br)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((mp,), x.dtype),
        grid=(mp // br,),
        in_specs=[pl.BlockSpec(memory_space=pl.ANY)] * 4,
        out_specs=pl.BlockSpec((br,), lambda i: (i,)),
        compiler_params=plt.CompilerParams(num_warps=bs.num_warps),
        interpret=interpret,
    )(indptr, data, indices, x)
    return y[:m]


def csr_spmv_reference(data, indices, indptr, x):
    """Plain-jnp oracle for the CSR kernels: a segment sum over rows."""
    m = indptr.shape[0] - 1
    rows = jnp.repeat(jnp.arange(m), jnp.diff(indptr), total_repeat_length=data.shape[0])
    return jax.ops.segment_sum(data * x[indices], rows, num_segments=m)
