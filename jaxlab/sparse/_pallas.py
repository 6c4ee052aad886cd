"""Glue from the formats to the Pallas kernels in ``pallas_kernels`` (GPU path of ``spmv``).

The kernels take one right-hand side; ``(n, k)`` inputs run one kernel per column (``k`` is small
in Krylov use). A format/option combination without a kernel returns None, and ``spmv`` then uses
the XLA formulation, which always sits behind the same call.
"""

from __future__ import annotations

import jax.numpy as jnp

from pallas_kernels.csr_balanced_spmv import csr_balanced_spmv
from pallas_kernels.csr_vector_spmv import csr_vector_spmv, subgroup_size
from pallas_kernels.ell_spmv import ell_spmv
from pallas_kernels.sellp_spmv import sellp_spmv


def _per_column(f, x):
    return jnp.stack([f(x[:, j]) for j in range(x.shape[1])], axis=1)


def csr_pallas_matvec(meta, data, idx, x, interpret):
    """CSR: the vector kernel (``classical``) or the nonzero-split kernel (``load_balance``)."""
    indices, indptr, row_ids = idx
    if meta.strategy == "load_balance":
        f = lambda v: csr_balanced_spmv(data, indices, row_ids, v, num_rows=meta.shape[0],
                                        interpret=interpret)
    else:
        sg = subgroup_size(meta.max_row_length)
        f = lambda v: csr_vector_spmv(data, indices, indptr, v, subgroup=sg, interpret=interpret)
    return _per_column(f, x)


def ell_pallas_matvec(vals, cols, x, interpret):
    """ELL (and the ELL part of Hybrid)."""
    return _per_column(lambda v: ell_spmv(vals, cols, v, interpret=interpret), x)


def sellp_pallas_matvec(meta, data, idx, x, interpret):
    """SELL-P with a power-of-two slice size; None (XLA fallback) otherwise."""
    S = meta.slice_size
    if S & (S - 1):
        return None
    col, lengths, sets, _ = idx
    return _per_column(lambda v: sellp_spmv(data, col, lengths, sets, v, num_rows=meta.shape[0],
                                            slice_size=S, interpret=interpret), x)
