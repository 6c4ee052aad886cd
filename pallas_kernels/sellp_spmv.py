"""SELL-P SpMV kernel (Pallas, Triton lowering): one program per slice.

Ginkgo's SELL-P layout: slice ``s`` stores column ``j`` of lane ``l`` at
``(slice_sets[s] + j) * slice_size + l``, with column -1 for padding. A program reads its slice's
offset and width, then loops over the width (a dynamic trip count) loading ``slice_size``
contiguous values and columns per step and gathering ``x``. ``slice_size`` must be a power of two
(Ginkgo's default, 64, is).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from ._tuning import array_device_kind, lookup


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Triton warps per slice program (the block is the slice itself)."""

    num_warps: int = 2

    @classmethod
    def get_default(cls, device_kind: str | None = None) -> "BlockSizes":
        return lookup(_TUNED, device_kind)


# Filled per device kind by `scripts/bench_spmv.py --sweep` on a GPU; none was available to the sessions that
# wrote this kernel, so only the default is here.
_TUNED = {"default": BlockSizes(2)}


def _sellp_spmv_kernel(sets_ref, lengths_ref, data_ref, cols_ref, x_ref, y_ref, *, slice_size):
    # inputs: sets_ref, lengths_ref (1,) this slice's offset and width; data_ref, cols_ref, x_ref
    #   whole arrays (ANY)
    # outputs: y_ref (slice_size,)
    start = sets_ref[0]
    width = lengths_ref[0]

    def body(j, acc):
        off = pl.multiple_of((start + j) * slice_size, slice_size)
        cols = cols_ref[pl.ds(off, slice_size)]
        valid = cols >= 0
        vals = data_ref[pl.ds(off, slice_size)]
        return acc + jnp.where(valid, vals * x_ref[jnp.where(valid, cols, 0)], 0)

    acc = jax.lax.fori_loop(0, width, body, jnp.zeros((slice_size,), y_ref.dtype))
    y_ref[...] = acc


def sellp_spmv(data, cols, slice_lengths, slice_sets, x, *, num_rows: int, slice_size: int = 64,
               block_sizes: BlockSizes | None = None, interpret: bool = False):
    """``y = A x`` for a SELL-P matrix in Ginkgo's layout.

    Args:
      data, cols: flat ``(total_cols * slice_size,)`` values and columns (-1 for padding).
      slice_lengths: width of each slice ``(num_slices,)``.
      slice_sets: prefix sums of the widths ``(num_slices + 1,)``.
      x: vector ``(n,)``.
      num_rows: rows of the matrix.
      slice_size: rows per slice, a power of two.
      block_sizes: Triton warps; default from the table of ``x``'s device kind.
      interpret: run in the Pallas interpreter (CPU tests).
    """
    if slice_size & (slice_size - 1):
        raise ValueError(f"sellp_spmv needs a power-of-two slice_size, got {slice_size}")
    bs = block_sizes or BlockSizes.get_default(array_device_kind(x))
    return _sellp_spmv(data, cols, slice_lengths, slice_sets, x, num_rows=num_rows, slice_size=slice_size,
                       block_sizes=bs, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("num_rows", "slice_size", "block_sizes", "interpret"))
def _sellp_spmv(data, cols, slice_lengths, slice_sets, x, *, num_rows, slice_size, block_sizes, interpret):
    bs = block_sizes
    ns = slice_lengths.shape[0]
    if ns == 0 or data.shape[0] == 0 or x.shape[0] == 0:
        return jnp.zeros((num_rows,), x.dtype)
    y = pl.pallas_call(
        functools.partial(_sellp_spmv_kernel, slice_size=slice_size),
        out_shape=jax.ShapeDtypeStruct((ns * slice_size,), x.dtype),
        grid=(ns,),
        in_specs=[
            pl.BlockSpec((1,), lambda s: (s,)),
            pl.BlockSpec((1,), lambda s: (s,)),
            pl.BlockSpec(memory_space=pl.ANY),
            pl.BlockSpec(memory_space=pl.ANY),
            pl.BlockSpec(memory_space=pl.ANY),
        ],
        out_specs=pl.BlockSpec((slice_size,), lambda s: (s,)),
        compiler_params=plt.CompilerParams(num_warps=bs.num_warps),
        interpret=interpret,
    )(slice_sets[:-1], slice_lengths, data, cols, x)
    return y[:num_rows]


def sellp_spmv_reference(data, cols, slice_lengths, slice_sets, x, *, num_rows: int,
                         slice_size: int = 64):
    """Plain-jnp oracle of :func:`sellp_spmv` (scatter of every stored entry to its row)."""
    pos = jnp.arange(data.shape[0])
    slice_of = jnp.repeat(jnp.arange(slice_lengths.shape[0]), slice_lengths,
                          total_repeat_length=data.shape[0] // slice_size)
    rows = slice_of[pos // slice_size] * slice_size + pos % slice_size
    valid = cols >= 0
    contrib = jnp.where(valid, data * x[jnp.where(valid, cols, 0)], 0)
    y = jnp.zeros((slice_lengths.shape[0] * slice_size,), x.dtype).at[rows].add(contrib)
    return y[:num_rows]
