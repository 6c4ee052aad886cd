"""ELL SpMV kernel (Pallas, Triton lowering): one program per ``block_rows`` rows.

The matrix is column-major ELL, ``data``/``cols`` of shape ``(width, rows)`` with column -1 for
padding (Ginkgo's layout). Each program owns ``block_rows`` rows (a power of two, as Triton needs)
and loops over the width: per step it loads ``block_rows`` contiguous values and columns (masked
past the last row, so neither the width nor the rows need padding and the wrapper copies nothing)
and gathers ``x[cols]`` from the un-blocked ``x`` (``memory_space=ANY``).
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
    """Rows per program and Triton warps."""

    block_rows: int = 256
    num_warps: int = 4

    @classmethod
    def get_default(cls, device_kind: str | None = None) -> "BlockSizes":
        return lookup(_TUNED, device_kind)


# Filled per device kind by `scripts/bench_spmv.py --sweep` on a GPU; none was available to the sessions that
# wrote this kernel, so only the default (the PEERS.md probe's 256 rows) is here.
_TUNED = {"default": BlockSizes(256, 4)}


def _ell_spmv_kernel(data_ref, cols_ref, x_ref, y_ref, *, width, num_rows, block_rows):
    # inputs: data_ref, cols_ref (width, rows) and x_ref (n,), all un-blocked (ANY)
    # outputs: y_ref (block_rows,)
    r0 = pl.program_id(0) * block_rows
    in_range = r0 + jnp.arange(block_rows) < num_rows

    def body(j, acc):
        cols = plt.load(cols_ref.at[j, pl.ds(r0, block_rows)], mask=in_range, other=-1)
        vals = plt.load(data_ref.at[j, pl.ds(r0, block_rows)], mask=in_range, other=0)
        valid = cols >= 0
        return acc + jnp.where(valid, vals * x_ref[jnp.where(valid, cols, 0)], 0)

    acc = jax.lax.fori_loop(0, width, body, jnp.zeros((block_rows,), y_ref.dtype))
    y_ref[...] = acc


def ell_spmv(data, cols, x, *, block_sizes: BlockSizes | None = None, interpret: bool = False):
    """``y = A x`` for column-major ELL ``(width, rows)`` arrays with -1 padding.

    Args:
      data: values ``(width, rows)``.
      cols: column indices ``(width, rows)``, -1 for padding.
      x: vector ``(n,)``.
      block_sizes: rows per program (power of two); default from the table of ``x``'s device kind.
      interpret: run the kernel in the Pallas interpreter (CPU tests).

    Returns:
      ``y`` of shape ``(rows,)``.
    """
    bs = block_sizes or BlockSizes.get_default(array_device_kind(x))
    return _ell_spmv(data, cols, x, block_sizes=bs, interpret=interpret)


@functools.partial(jax.jit, static_argnames=("block_sizes", "interpret"))
def _ell_spmv(data, cols, x, *, block_sizes: BlockSizes, interpret: bool):
    bs = block_sizes
    w, m = data.shape
    if w == 0 or m == 0 or x.shape[0] == 0:
        return jnp.zeros((m,), x.dtype)
    br = min(next_pow2(bs.block_rows), next_pow2(m))
    mp = -(-m // br) * br
    kernel = functools.partial(_ell_spmv_kernel, width=w, num_rows=m, block_rows=br)
    y = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((mp,), x.dtype),
        grid=(mp // br,),
        in_specs=[pl.BlockSpec(memory_space=pl.ANY)] * 3,
        out_specs=pl.BlockSpec((br,), lambda i: (i,)),
        compiler_params=plt.CompilerParams(num_warps=bs.num_warps),
        interpret=interpret,
    )(data, cols, x)
    return y[:m]


def ell_spmv_reference(data, cols, x):
    """Plain-jnp oracle of :func:`ell_spmv`."""
    valid = cols >= 0
    return jnp.sum(jnp.where(valid, data * x[jnp.where(valid, cols, 0)], 0), axis=0)
