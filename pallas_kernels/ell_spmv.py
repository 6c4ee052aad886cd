"""ELL SpMV kernel (Pallas, Triton lowering): one program per ``block_rows`` rows.

The matrix is column-major ELL, ``data``/``cols`` of shape ``(width, rows)`` with column -1 for
padding (Ginkgo's layout). Each program loads a ``(width, block_rows)`` tile of values and columns,
gathers ``x[cols]`` from the un-blocked ``x`` (``memory_space=ANY``) and reduces over the width.
Triton needs power-of-two block shapes, so the wrapper pads the width to a power of two and the
rows to a multiple of ``block_rows`` (a copy; build the ELL with ``width=`` a power of two and
rows a multiple of the block to avoid it).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from ._tuning import lookup, next_pow2


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Rows per program and Triton warps."""

    block_rows: int = 256
    num_warps: int = 4

    @classmethod
    def get_default(cls, device_kind: str | None = None) -> "BlockSizes":
        return lookup(_TUNED, device_kind)


# Not tuned yet (no GPU in the session that wrote this): the PEERS.md probe used 256 rows.
_TUNED = {
    "default": BlockSizes(256, 4),
    "H100": BlockSizes(256, 4),
    "H200": BlockSizes(256, 4),
}


def _ell_spmv_kernel(data_ref, cols_ref, x_ref, y_ref):
    # inputs: data_ref, cols_ref (width, block_rows) tiles; x_ref the whole vector (ANY)
    # outputs: y_ref (block_rows,)
    cols = cols_ref[...]
    valid = cols >= 0
    gathered = x_ref[jnp.where(valid, cols, 0)]
    prod = jnp.where(valid, data_ref[...] * gathered, 0)
    y_ref[...] = jnp.sum(prod, axis=0).astype(y_ref.dtype)


@functools.partial(jax.jit, static_argnames=("block_sizes", "interpret"))
def ell_spmv(data, cols, x, *, block_sizes: BlockSizes | None = None, interpret: bool = False):
    """``y = A x`` for column-major ELL ``(width, rows)`` arrays with -1 padding.

    Args:
      data: values ``(width, rows)``.
      cols: column indices ``(width, rows)``, -1 for padding.
      x: vector ``(n,)``.
      block_sizes: rows per program (power of two); default from the device-kind table.
      interpret: run the kernel in the Pallas interpreter (CPU tests).

    Returns:
      ``y`` of shape ``(rows,)``.
    """
    bs = block_sizes or BlockSizes.get_default()
    w, m = data.shape
    if w == 0 or m == 0 or x.shape[0] == 0:
        return jnp.zeros((m,), x.dtype)
    br = min(next_pow2(bs.block_rows), next_pow2(m))
    wp, mp = next_pow2(w), -(-m // br) * br
    if (wp, mp) != (w, m):
        data = jnp.pad(data, ((0, wp - w), (0, mp - m)))
        cols = jnp.pad(cols, ((0, wp - w), (0, mp - m)), constant_values=-1)
    y = pl.pallas_call(
        _ell_spmv_kernel,
        out_shape=jax.ShapeDtypeStruct((mp,), x.dtype),
        grid=(mp // br,),
        in_specs=[
            pl.BlockSpec((wp, br), lambda i: (0, i)),
            pl.BlockSpec((wp, br), lambda i: (0, i)),
            pl.BlockSpec(memory_space=pl.ANY),
        ],
        out_specs=pl.BlockSpec((br,), lambda i: (i,)),
        compiler_params=plt.CompilerParams(num_warps=bs.num_warps),
        interpret=interpret,
    )(data, cols, x)
    return y[:m]


def ell_spmv_reference(data, cols, x):
    """Plain-jnp oracle of :func:`ell_spmv`."""
    valid = cols >= 0
    return jnp.sum(jnp.where(valid, data * x[jnp.where(valid, cols, 0)], 0), axis=0)
