"""The dense format behind the same interface (a baseline and a small-matrix fallback)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact

from ._base import AbstractSparseMatrix

_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class DenseMeta:
    shape: tuple[int, int]
    nnz: int


class Dense(AbstractSparseMatrix):
    """A dense ``(m, n)`` matrix in ``data``; the product is an XLA matmul."""

    _index_names = ()
    format_name = "dense"

    def __init__(self, data):
        """Wraps a 2-D array."""
        data = jnp.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"Dense needs a 2-D array, got shape {data.shape}")
        self.meta, self.data = DenseMeta((int(data.shape[0]), int(data.shape[1])), int(data.size)), data

    @classmethod
    def _build(cls, indptr, indices, values, shape):
        import scipy.sparse as sp

        d = sp.csr_matrix((values, indices, indptr), shape=shape).toarray()
        return cls(d)

    @staticmethod
    def _coo_index(meta, idx):
        m, n = meta.shape
        row = jnp.repeat(jnp.arange(m, dtype=np.int32), n)
        col = jnp.tile(jnp.arange(n, dtype=np.int32), m)
        return row, col, jnp.ones((m * n,), bool)

    @staticmethod
    def _matvec_xla(meta, data, idx, x):
        return jnp.matmul(data, x, precision=_HI)

    @classmethod
    def _rmatvec_xla(cls, meta, data, idx, x):
        return jnp.matmul(data.T, x, precision=_HI)

    @classmethod
    def _sampled(cls, meta, data_shape, idx, ct, x, transpose):
        if transpose:
            return jnp.matmul(x, ct.T, precision=_HI)
        return jnp.matmul(ct, x.T, precision=_HI)

    def todense(self) -> Inexact[Array, "m n"]:
        return self.data

    def diagonal(self) -> Inexact[Array, " d"]:
        return jnp.diagonal(self.data)
