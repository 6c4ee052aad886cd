"""Glue from the formats to the Pallas kernels in ``pallas_kernels`` (GPU path of ``spmv``).

The kernels take one right-hand side; ``(n, k)`` inputs run one kernel per column up to
``MAX_KERNEL_COLUMNS`` columns (Krylov use), and the XLA form beyond (e.g. ``vmap`` over many
vectors). A format/option combination without a kernel returns None, and ``spmv`` then uses the
XLA formulation, which always sits behind the same call. Block sizes come from each kernel's table, keyed by
the kind of the device the product is lowered for (``device_kind``).
"""

from __future__ import annotations

import jax.numpy as jnp

from pallas_kernels import csr_balanced_spmv as _balanced
from pallas_kernels import csr_merge_spmv as _merge
from pallas_kernels import csr_vector_spmv as _vector
from pallas_kernels import ell_spmv as _ell
from pallas_kernels import sellp_spmv as _sellp

MAX_KERNEL_COLUMNS = 4


def _per_column(f, x):
    if x.shape[1] > MAX_KERNEL_COLUMNS:
        return None
    return jnp.stack([f(x[:, j]) for j in range(x.shape[1])], axis=1)


def csr_pallas_matvec(meta, data, idx, x, interpret, device_kind=None):
    """CSR: the vector kernel (``classical``), nonzero splitting (``load_balance``) or ``merge_path``."""
    indices, indptr, row_ids = idx
    m = meta.shape[0]
    if meta.strategy == "merge_path":
        bs = _merge.BlockSizes.get_default(device_kind)
        f = lambda v: _merge.csr_merge_spmv(data, indices, indptr, row_ids, v, num_rows=m, block_sizes=bs,
                                            interpret=interpret)
    elif meta.strategy == "load_balance":
        bs = _balanced.BlockSizes.get_default(device_kind)
        f = lambda v: _balanced.csr_balanced_spmv(data, indices, row_ids, v, num_rows=m, block_sizes=bs,
                                                  interpret=interpret)
    else:
        bs = _vector.BlockSizes.get_default(device_kind)
        sg = _vector.subgroup_size(meta.max_row_length)
        f = lambda v: _vector.csr_vector_spmv(data, indices, indptr, v, subgroup=sg, block_sizes=bs,
                                              interpret=interpret)
    return _per_column(f, x)


def ell_pallas_matvec(vals, cols, x, interpret, device_kind=None):
    """ELL (and the ELL part of Hybrid)."""
    bs = _ell.BlockSizes.get_default(device_kind)
    return _per_column(lambda v: _ell.ell_spmv(vals, cols, v, block_sizes=bs, interpret=interpret), x)


def sellp_pallas_matvec(meta, data, idx, x, interpret, device_kind=None):
    """SELL-P with a power-of-two slice size; None (XLA fallback) otherwise."""
    S = meta.slice_size
    if S & (S - 1):
        return None
    col, lengths, sets = idx[:3]
    bs = _sellp.BlockSizes.get_default(device_kind)
    return _per_column(lambda v: _sellp.sellp_spmv(data, col, lengths, sets, v, num_rows=meta.shape[0],
                                                   slice_size=S, block_sizes=bs, interpret=interpret), x)
